//! The pull-consumer worker loop for handlers that do their work a fetched batch at a time.
//!
//! Same consumer, same acknowledgement rules as [`crate::worker`], but the handler sees the
//! whole batch, so it can write it in one transaction and answer for each message. Acks go
//! out after the handler returns (its commits are done) as plain acks, not awaited round
//! trips: the handler is idempotent, so a lost ack only repeats a message that changes
//! nothing. Other results follow the single-message rules (deferral, nak with back-off, dead
//! letter); a panic of the handler fails the whole batch's messages as [`HandlerError::Panicked`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use gradients_config::NatsSettings;
use gradients_telemetry::{Metrics, Outcome};
use tokio_util::sync::CancellationToken;

use crate::worker::{declare_consumer, panic_message, pull, settle, ConsumerSpec, Handled, HandlerError};
use crate::{Bus, BusError};

/// Most messages one fetch hands to a batch handler.
pub const MAX_BATCH: usize = 256;

/// Handles a fetched batch of one kind of message.
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `messages` (in stream order) and returns one result per message, in the same
    /// order. Must be idempotent: a crash before the acks repeats the whole batch.
    fn handle_batch(
        &self,
        messages: &[jetstream::Message],
    ) -> impl Future<Output = Vec<Result<Handled, HandlerError>>> + Send;
}

/// Declares the durable consumer (idempotently) and hands its messages to `handler` a batch
/// at a time until `shutdown`; on shutdown, the batch in hand is finished and nothing more
/// is fetched.
pub async fn run_batch_worker<H: BatchHandler>(
    bus: &Bus,
    spec: ConsumerSpec,
    settings: &NatsSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), BusError> {
    let consumer = declare_consumer(bus, &spec, settings).await?;
    while !shutdown.is_cancelled() {
        let messages: Vec<jetstream::Message> = pull(&consumer, spec.durable, MAX_BATCH).await?.collect().await;
        let Some(last) = messages.last() else { continue };
        if let Ok(info) = last.info() {
            metrics.set_consumer_pending(spec.durable, info.pending);
        }

        let started = Instant::now();
        let span = tracing::info_span!("handle_batch", consumer = spec.durable, messages = messages.len());
        crate::event::mark_received(&span, &messages);
        // A panic fails every message of the batch (each is retried), not the worker.
        let handled = AssertUnwindSafe(handler.handle_batch(&messages)).catch_unwind();
        let results = match tracing::Instrument::instrument(handled, span).await {
            Ok(results) => results,
            Err(payload) => {
                let text = panic_message(payload.as_ref());
                messages.iter().map(|_| Err(HandlerError::Panicked(text.clone()))).collect()
            }
        };
        let elapsed_each = started.elapsed() / messages.len() as u32;
        if results.len() != messages.len() {
            // A handler bug; retrying the batch is the only safe answer.
            tracing::error!(
                consumer = spec.durable,
                "batch handler answered for {} of {}",
                results.len(),
                messages.len()
            );
        }
        let mut results = results.into_iter();
        let settled = messages.iter().map(|message| {
            let result = results
                .next()
                .unwrap_or_else(|| Err(HandlerError::transient("the batch handler gave no result for this message")));
            let (spec, metrics) = (&spec, &metrics);
            async move {
                let outcome = match result {
                    Ok(Handled::Done) => {
                        if let Err(e) = message.ack().await {
                            tracing::warn!(error = %e, "ack not sent; the message may be redelivered");
                        }
                        Outcome::Ack
                    }
                    not_done => {
                        let (delivered, sequence) = match message.info() {
                            Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence),
                            Err(_) => (1, 0),
                        };
                        settle(bus, spec, settings, message, not_done, delivered, sequence).await
                    }
                };
                metrics.handled(spec.durable, outcome, elapsed_each);
            }
        });
        futures::future::join_all(settled).await;
        if shutdown.is_cancelled() {
            break;
        }
    }
    Ok(())
}
