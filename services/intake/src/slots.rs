//! Submit slots: how many submits run at once, in all and per customer.
//!
//! A submit reads an upload, which can be slow (a large data set) or, from a hostile
//! client, as slow as the read deadline allows. Submits therefore get fewer slots than the
//! micro service has (`intake.max_concurrent_submits` < `intake.max_concurrent_requests`),
//! so `get`, `list` and `cancel` are always answered, and one customer holds at most
//! `intake.max_submits_per_customer` of them, so it cannot shut others out. A submit that
//! finds no slot is refused at once (RATE_LIMITED, retry later) instead of waiting while
//! holding one of the service's slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RequestError;

/// The submit slots of one intake process.
pub struct SubmitSlots {
    total: Arc<Semaphore>,
    per_customer: Arc<Mutex<HashMap<String, usize>>>,
    max_per_customer: usize,
}

/// A slot, given back when dropped.
pub struct SubmitSlot {
    _permit: OwnedSemaphorePermit,
    customer_id: String,
    per_customer: Arc<Mutex<HashMap<String, usize>>>,
}

impl SubmitSlots {
    /// `total` slots, at most `max_per_customer` for one customer.
    pub fn new(total: usize, max_per_customer: usize) -> Self {
        Self { total: Arc::new(Semaphore::new(total)), per_customer: Arc::default(), max_per_customer }
    }

    /// A slot for `customer_id`, or why there is none now.
    pub fn try_take(&self, customer_id: &str) -> Result<SubmitSlot, RequestError> {
        let mut counts = self.per_customer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = counts.get(customer_id).copied().unwrap_or(0);
        if held >= self.max_per_customer {
            return Err(RequestError::Busy(format!(
                "you already have {held} submits in progress here (the most allowed); retry when one is answered"
            )));
        }
        let permit = self.total.clone().try_acquire_owned().map_err(|_| {
            RequestError::Busy("intake is handling as many submits as it takes at once; retry shortly".to_owned())
        })?;
        counts.insert(customer_id.to_owned(), held + 1);
        Ok(SubmitSlot { _permit: permit, customer_id: customer_id.to_owned(), per_customer: self.per_customer.clone() })
    }
}

impl Drop for SubmitSlot {
    fn drop(&mut self) {
        let mut counts = self.per_customer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = counts.get_mut(&self.customer_id) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.customer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_per_customer_and_come_back() {
        let slots = SubmitSlots::new(3, 2);
        let a1 = slots.try_take("a").expect("first");
        let _a2 = slots.try_take("a").expect("second");
        assert!(matches!(slots.try_take("a"), Err(RequestError::Busy(_))), "a third for one customer");
        let _b1 = slots.try_take("b").expect("another customer");
        assert!(matches!(slots.try_take("c"), Err(RequestError::Busy(_))), "all taken");
        drop(a1);
        let _c1 = slots.try_take("c").expect("a slot came back");
    }
}
