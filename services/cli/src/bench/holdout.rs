//! The report split: rows of a task's data set that the market never sees, on which the
//! benchmark measures every miner's model after the market has picked its winner, so the
//! improvement it reports is not flattered by the selection.
//!
//! Rows are ranked by `sha256(seed ‖ line)`, as intake ranks its own splits, and the first
//! `fraction` of them (at least one, and never all) are held out: the split depends on the
//! seed and the rows, not on their order in the file.

use sha2::{Digest, Sha256};

/// A data set's non-empty lines, parted into what the market gets and what the benchmark
/// keeps back. Both keep the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdout {
    pub market: Vec<String>,
    pub report: Vec<String>,
}

/// Holds out `fraction` of the non-empty lines of `jsonl` (at least 1, at most all but one).
pub fn split(jsonl: &str, fraction: f64, seed: u64) -> Holdout {
    let lines: Vec<&str> = jsonl.lines().filter(|l| !l.trim().is_empty()).collect();
    let wanted = ((lines.len() as f64 * fraction).round() as usize).clamp(1, lines.len().saturating_sub(1).max(1));
    let mut ranked: Vec<([u8; 32], usize)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut hash = Sha256::new();
            hash.update(seed.to_be_bytes());
            hash.update(line.as_bytes());
            (hash.finalize().into(), i)
        })
        .collect();
    ranked.sort();
    let mut held = vec![false; lines.len()];
    for &(_, i) in ranked.iter().take(wanted) {
        held[i] = true;
    }
    let (mut market, mut report) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        if held[i] {
            report.push((*line).to_owned())
        } else {
            market.push((*line).to_owned())
        }
    }
    Holdout { market, report }
}

/// Lines back into a JSONL file's bytes.
pub fn jsonl(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> String {
        (0..n).map(|i| format!("{{\"instruction\":\"q{i}\",\"output\":\"a{i}\"}}\n")).collect()
    }

    #[test]
    fn holds_out_the_fraction_disjointly_whatever_the_order() {
        let text = rows(100);
        let parts = split(&text, 0.2, 7);
        assert_eq!((parts.market.len(), parts.report.len()), (80, 20));
        assert!(parts.report.iter().all(|r| !parts.market.contains(r)));
        let reversed: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
        let mut again = split(&reversed, 0.2, 7).report;
        let mut first = parts.report.clone();
        again.sort();
        first.sort();
        assert_eq!(again, first, "the same rows whatever the order");
        assert_ne!(split(&text, 0.2, 8).report, parts.report, "another seed, other rows");
    }

    #[test]
    fn keeps_one_row_each_side_and_skips_blank_lines() {
        assert_eq!(split(&rows(3), 0.0, 1).report.len(), 1);
        assert_eq!(split(&rows(3), 1.0, 1).market.len(), 1);
        let parts = split("{\"a\":1}\n\n  \n{\"a\":2}\n", 0.5, 1);
        assert_eq!(parts.market.len() + parts.report.len(), 2);
        assert_eq!(jsonl(&parts.report), format!("{}\n", parts.report[0]).into_bytes());
    }
}
