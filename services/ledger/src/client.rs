//! A typed client of the ledger's queries, for the CLI, tests and auditors' tools.

use std::time::Duration;

use gradients_bus::api::{call, CallError};
use gradients_bus::subjects::api;
use gradients_bus::Bus;
use gradients_proto::v1::{
    LedgerEntriesRequest, LedgerEntriesResponse, LedgerTaskRequest, LedgerTaskResponse, LedgerWeightsRequest,
    LedgerWeightsResponse,
};

/// Queries the ledger over a [`Bus`].
#[derive(Clone)]
pub struct LedgerClient {
    bus: Bus,
    timeout: Duration,
}

impl LedgerClient {
    /// A client whose requests give up after `timeout`.
    pub fn new(bus: Bus, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    /// A finalized task's result and entries.
    pub async fn task(&self, task_id: &str) -> Result<LedgerTaskResponse, CallError> {
        let request = LedgerTaskRequest { task_id: task_id.to_owned() };
        call(&self.bus.client, api::ledger(api::LEDGER_TASK), &request, self.timeout).await
    }

    /// One page of entries (one miner's, or all when `miner_id` is empty).
    pub async fn entries(&self, request: &LedgerEntriesRequest) -> Result<LedgerEntriesResponse, CallError> {
        call(&self.bus.client, api::ledger(api::LEDGER_ENTRIES), request, self.timeout).await
    }

    /// Every entry matching `request`, page after page.
    pub async fn all_entries(
        &self,
        request: &LedgerEntriesRequest,
    ) -> Result<Vec<gradients_proto::v1::LedgerEntry>, CallError> {
        let mut request = request.clone();
        let mut all = Vec::new();
        loop {
            let page = self.entries(&request).await?;
            all.extend(page.entries);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// Miner weights at `at_ms` (0: now).
    pub async fn weights(&self, at_ms: i64) -> Result<LedgerWeightsResponse, CallError> {
        call(&self.bus.client, api::ledger(api::LEDGER_WEIGHTS), &LedgerWeightsRequest { at_ms }, self.timeout).await
    }
}
