//! Granted splits recently served, held in memory so that a split read in chunks is read
//! from JetStream (and hashed) once per replica, not once per chunk: without it, fetching
//! an N-chunk split reads it N times (a 200 MiB split in 512 KiB chunks: 80 GB), which any
//! assigned miner could trigger at will. Entries are keyed by bucket, name and sha256 (what
//! was verified) and the oldest go first once the byte budget is spent.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

/// At most this many bytes of splits are kept.
pub const BUDGET_BYTES: usize = 512 * 1024 * 1024;

/// The cache: (key, bytes), oldest first.
#[derive(Default)]
pub struct DataCache {
    entries: Mutex<VecDeque<(String, Bytes)>>,
}

impl DataCache {
    /// The cache key of a verified object.
    pub fn key(bucket: &str, name: &str, sha256: &str) -> String {
        format!("{bucket}\n{name}\n{}", sha256.to_ascii_lowercase())
    }

    /// The bytes kept under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries.iter().find(|(k, _)| k == key).map(|(_, data)| data.clone())
    }

    /// Keeps `data` under `key` within `budget` bytes, dropping the oldest entries; an
    /// object larger than the budget is not kept.
    pub fn put(&self, key: String, data: Bytes, budget: usize) {
        if data.len() > budget {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.iter().any(|(k, _)| *k == key) {
            return;
        }
        let mut held: usize = entries.iter().map(|(_, d)| d.len()).sum();
        while held + data.len() > budget {
            match entries.pop_front() {
                Some((_, dropped)) => held -= dropped.len(),
                None => break,
            }
        }
        entries.push_back((key, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries are found by their exact key and the oldest go first past the budget.
    #[test]
    fn keeps_the_newest_within_the_budget() {
        let cache = DataCache::default();
        cache.put(DataCache::key("b", "one", "AA"), Bytes::from(vec![1; 40]), 100);
        cache.put(DataCache::key("b", "two", "bb"), Bytes::from(vec![2; 40]), 100);
        assert_eq!(cache.get(&DataCache::key("b", "one", "aa")).unwrap().len(), 40);
        assert!(cache.get(&DataCache::key("b", "one", "cc")).is_none(), "another sha256 is another object");
        cache.put(DataCache::key("b", "three", "cc"), Bytes::from(vec![3; 40]), 100);
        assert!(cache.get(&DataCache::key("b", "one", "aa")).is_none(), "the oldest went first");
        assert!(cache.get(&DataCache::key("b", "two", "bb")).is_some());
        cache.put(DataCache::key("b", "huge", "dd"), Bytes::from(vec![4; 101]), 100);
        assert!(cache.get(&DataCache::key("b", "huge", "dd")).is_none(), "larger than the budget: not kept");
    }
}
