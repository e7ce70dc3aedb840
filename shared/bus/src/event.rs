//! Publishing events: facts with a stable id, de-duplicated by JetStream, carrying the trace.

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream;
use bytes::Bytes;
use gradients_telemetry::{HeaderCarrier, TRACEPARENT};

use crate::{BusError, Cause};

/// An event ready to publish. Its `id` becomes `Nats-Msg-Id`, so publishing the same event
/// twice inside the stream's duplicate window stores it once.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// The subject, from [`crate::subjects`].
    pub subject: String,
    /// The event's stable id.
    pub id: String,
    /// The encoded protobuf message.
    pub payload: Bytes,
    /// A W3C `traceparent` captured when the event was decided (an outbox keeps it);
    /// `None` takes the current span's.
    pub traceparent: Option<String>,
}

/// What JetStream said about a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Sequence of the stored message in its stream.
    pub sequence: u64,
    /// True when JetStream recognised the id and did not store it again.
    pub duplicate: bool,
}

/// Publishes `event` and waits for JetStream's acknowledgement.
pub async fn publish_event(js: &jetstream::Context, event: OutgoingEvent) -> Result<Published, BusError> {
    let fail = |source: Cause| BusError::Publish { subject: event.subject.clone(), source };
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event.id.as_str());
    match &event.traceparent {
        Some(traceparent) => headers.insert(TRACEPARENT, traceparent.as_str()),
        None => gradients_telemetry::inject_current(&mut NatsHeaders(&mut headers)),
    }
    let ack = js
        .publish_with_headers(event.subject.clone(), headers, event.payload.clone())
        .await
        .map_err(|e| fail(e.into()))?
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
}

/// Publishes `events` with their ids and trace context, all sent before any acknowledgement
/// is awaited (one round trip for the lot, not one each), and returns one result per event,
/// in order. A failure of one does not stop the others.
pub async fn publish_events(js: &jetstream::Context, events: Vec<OutgoingEvent>) -> Vec<Result<Published, BusError>> {
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let subject = event.subject.clone();
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event.id.as_str());
        match &event.traceparent {
            Some(traceparent) => headers.insert(TRACEPARENT, traceparent.as_str()),
            None => gradients_telemetry::inject_current(&mut NatsHeaders(&mut headers)),
        }
        let sent = js.publish_with_headers(event.subject, headers, event.payload).await;
        pending.push((subject, sent));
    }
    let acks = pending.into_iter().map(|(subject, sent)| async move {
        let fail = |source: Cause| BusError::Publish { subject: subject.clone(), source };
        let ack = sent.map_err(|e| fail(e.into()))?.await.map_err(|e| fail(e.into()))?;
        Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
    });
    futures::future::join_all(acks).await
}

/// The `traceparent` of the current span, to store beside an event that is published later.
pub fn current_traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    gradients_telemetry::inject_current(&mut NatsHeaders(&mut headers));
    headers.get(TRACEPARENT).map(|v| v.to_string())
}

/// Makes the trace a received message carries (its `traceparent`) the parent of `span`; a
/// message without one leaves `span` where it was.
pub fn continue_trace(span: &tracing::Span, headers: Option<&HeaderMap>) {
    gradients_telemetry::set_parent_from(span, &ReceivedHeaders(headers));
}

/// Records in the trace each message carries that it was received, as one short `receive`
/// span per message. A batch mixes traces, so its own span (`batch`) can belong to none of
/// them; a message without a trace gets its `receive` span under `batch`.
pub fn mark_received(batch: &tracing::Span, messages: &[jetstream::Message]) {
    for message in messages {
        let received = tracing::info_span!(parent: batch, "receive", subject = %message.subject);
        continue_trace(&received, message.headers.as_ref());
    }
}

/// Lets the telemetry crate read and write W3C trace headers on a NATS header map.
pub struct NatsHeaders<'a>(pub &'a mut HeaderMap);

impl HeaderCarrier for NatsHeaders<'_> {
    fn get_header(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|v| v.to_string())
    }
    fn set_header(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// Read-only view of a received message's headers for trace extraction.
pub struct ReceivedHeaders<'a>(pub Option<&'a HeaderMap>);

impl HeaderCarrier for ReceivedHeaders<'_> {
    fn get_header(&self, key: &str) -> Option<String> {
        self.0.and_then(|h| h.get(key)).map(|v| v.to_string())
    }
    fn set_header(&mut self, _key: &str, _value: String) {}
}
