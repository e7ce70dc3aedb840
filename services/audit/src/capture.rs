//! Capture: one durable pull consumer per audited stream, shared by every replica. A
//! batch is appended in one transaction ([`crate::log::append`]) and acknowledged after it
//! commits; messages that arrived ahead of their predecessor are handed back with a short
//! delay. It never dead-letters and never gives up: the consumer delivers without limit,
//! because a message the audit let go would be a hole in the record.

use std::sync::Arc;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use gradients_bus::worker::{DEAD_LETTER_REASON, DEAD_LETTER_SEQUENCE, DEAD_LETTER_SUBJECT};
use gradients_bus::BusError;
use gradients_proto::v1::Timestamp;
use gradients_telemetry::Outcome;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::log::{self, Incoming, Placement, StreamProbe};
use crate::{decode, Context};

/// How long one pull waits for messages before checking for shutdown again.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// How long a batch waits for more messages after its first one.
const GATHER: Duration = Duration::from_millis(5);
/// How many absent sequences one append probes one by one before recording what it found.
const MAX_PROBES: u64 = 1000;
/// How long to wait after the store failed before trying the batch again.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Which stream a capture loop reads, and its durable consumer.
#[derive(Debug, Clone, Copy)]
pub struct Audited {
    /// The stream name.
    pub stream: &'static str,
    /// Every subject of the stream.
    pub subjects: &'static str,
    /// The audit's durable consumer on it.
    pub durable: &'static str,
}

/// Captures `audited` until `stop`.
pub async fn run(ctx: Arc<Context>, audited: Audited, stop: CancellationToken) -> Result<(), BusError> {
    let fail = |source: gradients_bus::Cause| BusError::Consume { consumer: audited.durable.to_owned(), source };
    let stream = ctx.bus.jetstream.get_stream(audited.stream).await.map_err(|e| fail(e.into()))?;
    let consumer = stream
        .get_or_create_consumer(
            audited.durable,
            pull::Config {
                durable_name: Some(audited.durable.to_owned()),
                filter_subject: audited.subjects.to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ctx.settings.nats.ack_wait(),
                // Never give up on a message: the audit must hold every one.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail(e.into()))?;
    let probe = Probe { stream };
    let batch_size = ctx.settings.audit.batch_size;
    // A continuous pull: the next batch is on its way while this one is appended.
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch_size)
        .expires(FETCH_EXPIRES)
        .messages()
        .await
        .map_err(|e| fail(e.into()))?;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            next = messages.next() => next,
        };
        let mut batch = Vec::with_capacity(batch_size);
        match first {
            None => return Err(fail("the consumer's message stream ended".into())),
            Some(Err(e)) => {
                tracing::warn!(consumer = audited.durable, error = %e, "pull failed; retrying");
                continue;
            }
            Some(Ok(message)) => batch.push(message),
        }
        // What arrives within a moment joins this transaction: fewer, larger commits.
        let gather_until = tokio::time::Instant::now() + GATHER;
        while batch.len() < batch_size {
            match tokio::time::timeout_at(gather_until, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(e))) => {
                    tracing::warn!(consumer = audited.durable, error = %e, "pull failed; retrying");
                    break;
                }
                _ => break,
            }
        }
        let span = tracing::info_span!("capture_batch", stream = audited.stream, messages = batch.len());
        gradients_bus::event::mark_received(&span, &batch);
        capture_batch(&ctx, audited, &probe, batch).instrument(span).await;
    }
    Ok(())
}

async fn capture_batch(ctx: &Context, audited: Audited, probe: &Probe, messages: Vec<jetstream::Message>) {
    let started = std::time::Instant::now();
    let incoming: Vec<Incoming> = messages.iter().map(|m| incoming(audited.stream, m)).collect();
    if let Some(pending) = messages.last().and_then(|m| m.info().ok()).map(|i| i.pending) {
        ctx.metrics.set_consumer_pending(audited.durable, pending);
    }
    let appended = log::append(&ctx.db, audited.stream, &incoming, probe, Timestamp::now().unix_ms).await;
    let appended = match appended {
        Ok(appended) => appended,
        Err(e) => {
            tracing::warn!(stream = audited.stream, error = %e, "append failed; the batch will be redelivered");
            for message in &messages {
                let _ = message.ack_with(AckKind::Nak(Some(STORE_RETRY))).await;
            }
            ctx.metrics.handled(audited.durable, Outcome::Retry, started.elapsed());
            return;
        }
    };
    for _ in 0..appended.gaps {
        tracing::error!(stream = audited.stream, "ALARM: the stream lost messages before the audit saw them");
        ctx.metrics.rejected("AUDIT_ALARM_GAP");
    }
    for _ in 0..appended.undecodable {
        tracing::error!(stream = audited.stream, "ALARM: an undecodable message was recorded");
        ctx.metrics.rejected("AUDIT_ALARM_UNDECODABLE");
    }
    let reorder = ctx.settings.audit.reorder_delay();
    for (message, placement) in messages.iter().zip(&appended.placements) {
        let outcome = match placement {
            Placement::Appended(_) | Placement::AlreadyCaptured => {
                // Committed: a lost ack only causes a redelivery, which is skipped.
                let _ = message.ack().await;
                Outcome::Ack
            }
            Placement::Wait => {
                let _ = message.ack_with(AckKind::Nak(Some(reorder))).await;
                Outcome::Retry
            }
        };
        ctx.metrics.handled(audited.durable, outcome, started.elapsed());
    }
}

/// A delivered message as the log needs it.
fn incoming(stream: &str, message: &jetstream::Message) -> Incoming {
    let (sequence, published_at_ms) = match message.info() {
        Ok(info) => (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => (0, 0),
    };
    as_incoming(stream, sequence, &message.subject, message.headers.as_ref(), &message.payload, published_at_ms)
}

/// A message, delivered or read from the stream, as the log needs it.
fn as_incoming(
    stream: &str,
    sequence: u64,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &bytes::Bytes,
    published_at_ms: i64,
) -> Incoming {
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.to_string()).unwrap_or_default();
    // A dead letter's reason and origin travel in headers; the record keeps them.
    let note = if stream == gradients_bus::subjects::streams::DEAD_LETTERS {
        [DEAD_LETTER_REASON, DEAD_LETTER_SUBJECT, DEAD_LETTER_SEQUENCE]
            .iter()
            .filter_map(|name| headers.and_then(|h| h.get(*name)).map(|v| format!("{name}: {v}")))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        String::new()
    };
    Incoming {
        sequence,
        subject: subject.to_owned(),
        msg_id: header(NATS_MESSAGE_ID.as_ref()),
        traceparent: header(gradients_telemetry::TRACEPARENT),
        published_at_ms,
        payload: payload.clone(),
        decoded: decode::check(stream, subject, payload),
        note,
    }
}

/// Asks the stream itself which sequences it still holds.
struct Probe {
    stream: jetstream::stream::Stream,
}

impl StreamProbe for Probe {
    async fn fetch(&self, sequence: u64) -> Result<Option<Incoming>, String> {
        use jetstream::stream::RawMessageErrorKind;
        match self.stream.get_raw_message(sequence).await {
            Ok(stored) => {
                let published_at_ms = (stored.time.unix_timestamp_nanos() / 1_000_000) as i64;
                let name = self.stream.cached_info().config.name.clone();
                let headers = Some(&stored.headers);
                Ok(Some(as_incoming(&name, sequence, &stored.subject, headers, &stored.payload, published_at_ms)))
            }
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn first_present(&self, from: u64, before: u64) -> Result<u64, String> {
        use jetstream::stream::RawMessageErrorKind;
        let info = self.stream.get_info().await.map_err(|e| e.to_string())?;
        // Everything below the stream's first sequence is gone (limits, purges).
        let mut sequence = from.max(info.state.first_sequence).min(before);
        let mut probes = 0;
        while sequence < before && probes < MAX_PROBES {
            match self.stream.get_raw_message(sequence).await {
                Ok(_) => return Ok(sequence),
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => sequence += 1,
                Err(e) => return Err(e.to_string()),
            }
            probes += 1;
        }
        Ok(sequence)
    }
}
