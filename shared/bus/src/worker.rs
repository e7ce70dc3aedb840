//! The pull-consumer worker loop every event handler runs in.
//!
//! One durable pull consumer per (service, purpose) is shared by all replicas of that
//! service: JetStream spreads the messages, so scaling out is starting another process.
//! The loop owns the acknowledgement rules, so handlers only say what happened:
//! - `Ok(`[`Handled::Done`]`)` → ack;
//! - `Ok(`[`Handled::RetryLater`]`)` → nak with the handler's delay: nothing failed, the
//!   message is just early (a task with too few miners yet); counted as `deferred`;
//! - [`HandlerError::Transient`] → nak with back-off;
//! - [`HandlerError::Panicked`] → the handler panicked: recorded as such, the loop goes on,
//!   and the message is retried like a transient failure (a bug may depend on timing);
//! - [`HandlerError::Poison`] → dead-letter at once and term.
//!
//! A message still retried or deferred on its last allowed delivery (`max_deliver`) goes to
//! the dead-letter subject rather than silently expiring.
//! Handlers must be idempotent: a crash between their work and the ack repeats the message.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::{FutureExt, StreamExt};
use gradients_config::NatsSettings;
use gradients_telemetry::{Metrics, Outcome};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::event::ReceivedHeaders;
use crate::{subjects, Bus, BusError, Cause};

/// Messages fetched per pull; small, so that a draining replica hands little back.
const FETCH_BATCH: usize = 16;
/// How long one pull waits for messages before checking for shutdown again.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);

/// Header on a dead letter: why it was given up.
pub const DEAD_LETTER_REASON: &str = "Gradients-Dead-Letter-Reason";
/// Header on a dead letter: the subject it was first published on.
pub const DEAD_LETTER_SUBJECT: &str = "Gradients-Dead-Letter-Subject";
/// Header on a dead letter: its sequence in the original stream.
pub const DEAD_LETTER_SEQUENCE: &str = "Gradients-Dead-Letter-Sequence";

/// What a handler did with a message it could handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done: acknowledge it.
    Done,
    /// Nothing failed, but the message cannot be acted on yet (too few miners have
    /// accepted a task): deliver it again after `after`. Not an error in logs or metrics.
    RetryLater {
        /// How long to wait before the next delivery.
        after: Duration,
        /// Why, for the logs.
        reason: String,
    },
}

/// Why a handler could not finish a message. Each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (database or bus briefly unavailable).
    #[error("transient: {0}")]
    Transient(#[source] Cause),
    /// Will never succeed (undecodable payload, impossible request): do not retry.
    #[error("poison: {0}")]
    Poison(#[source] Cause),
    /// The handler panicked; the message is the panic's.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

impl HandlerError {
    /// A [`HandlerError::Transient`] caused by `cause` (an error, or a sentence).
    pub fn transient(cause: impl Into<Cause>) -> Self {
        Self::Transient(cause.into())
    }

    /// A [`HandlerError::Poison`] caused by `cause` (an error, or a sentence).
    pub fn poison(cause: impl Into<Cause>) -> Self {
        Self::Poison(cause.into())
    }

    /// A blocking or spawned part of the handler that did not finish: its panic, as
    /// [`HandlerError::Panicked`], or its cancellation, as transient.
    pub fn from_join(error: tokio::task::JoinError) -> Self {
        match error.try_into_panic() {
            Ok(payload) => Self::Panicked(panic_message(payload.as_ref())),
            Err(cancelled) => Self::transient(cancelled),
        }
    }
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `work`, turning a panic into [`HandlerError::Panicked`] so one bad message cannot
/// take its worker, and the service, down with it.
pub(crate) async fn unwinding_into_error<T>(
    work: impl Future<Output = Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(HandlerError::Panicked(panic_message(payload.as_ref()))),
    }
}

/// Handles one kind of message.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message. Must be idempotent.
    fn handle(&self, message: &jetstream::Message) -> impl Future<Output = Result<Handled, HandlerError>> + Send;
}

/// Which durable consumer a worker pulls from.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stream, from [`subjects::streams`].
    pub stream: &'static str,
    /// The durable name, from [`subjects::consumers`].
    pub durable: &'static str,
    /// Only messages on these subjects.
    pub filter_subject: String,
}

/// Declares the durable consumer (idempotently) and handles its messages until `shutdown`.
/// On shutdown it stops pulling, finishes the message in hand and naks the rest of its
/// batch so another replica takes them at once.
pub async fn run_worker<H: Handler>(
    bus: &Bus,
    spec: ConsumerSpec,
    settings: &NatsSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), BusError> {
    let consumer = declare_consumer(bus, &spec, settings).await?;
    let batch_size = FETCH_BATCH.max(settings.worker_concurrency * 2);
    while !shutdown.is_cancelled() {
        // Up to `worker_concurrency` messages of the batch at once; after shutdown the rest
        // is handed back.
        pull(&consumer, spec.durable, batch_size)
            .await?
            .for_each_concurrent(settings.worker_concurrency, |message| {
                let (spec, metrics, handler, shutdown) = (&spec, &metrics, &handler, &shutdown);
                async move {
                    if shutdown.is_cancelled() {
                        // Hand it straight back: another replica (or our restart) takes it.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        return;
                    }
                    handle_one(bus, spec, settings, metrics, handler, &message).await;
                }
            })
            .await;
    }
    Ok(())
}

/// One pull of up to `max` messages, as they arrive. A pull error ends it (logged; the
/// next pull retries), so a caller only ever sees messages.
pub(crate) async fn pull(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    durable: &'static str,
    max: usize,
) -> Result<impl futures::Stream<Item = jetstream::Message>, BusError> {
    let batch = consumer
        .fetch()
        .max_messages(max)
        .expires(FETCH_EXPIRES)
        .messages()
        .await
        .map_err(|e| BusError::Consume { consumer: durable.to_owned(), source: e.into() })?;
    Ok(batch
        .take_while(move |message| {
            if let Err(e) = message {
                tracing::warn!(consumer = durable, error = %e, "pull failed; retrying");
            }
            std::future::ready(message.is_ok())
        })
        .filter_map(|message| std::future::ready(message.ok())))
}

pub(crate) async fn declare_consumer(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &NatsSettings,
) -> Result<jetstream::consumer::Consumer<pull::Config>, BusError> {
    let fail = |source: Cause| BusError::Declare { what: format!("consumer {}", spec.durable), source };
    let stream = bus.jetstream.get_stream(spec.stream).await.map_err(|e| fail(e.into()))?;
    stream
        .get_or_create_consumer(
            spec.durable,
            pull::Config {
                durable_name: Some(spec.durable.to_owned()),
                filter_subject: spec.filter_subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait(),
                max_deliver: settings.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail(e.into()))
}

async fn handle_one<H: Handler>(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &NatsSettings,
    metrics: &Metrics,
    handler: &H,
    message: &jetstream::Message,
) {
    let (delivered, sequence, pending) = match message.info() {
        Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence, info.pending),
        Err(_) => (1, 0, 0),
    };
    metrics.set_consumer_pending(spec.durable, pending);
    let span = tracing::info_span!("handle", consumer = spec.durable, subject = %message.subject, sequence, delivered);
    gradients_telemetry::set_parent_from(&span, &ReceivedHeaders(message.headers.as_ref()));

    let started = Instant::now();
    let result = unwinding_into_error(handler.handle(message)).instrument(span.clone()).await;
    // Settling runs in the span too, as an instrumented future: an entered-span guard must
    // never be held across an await on a multi-threaded runtime.
    let outcome = settle(bus, spec, settings, message, result, delivered, sequence).instrument(span).await;
    metrics.handled(spec.durable, outcome, started.elapsed());
}

/// Acknowledges, defers, retries or dead-letters a handled message, as its result says.
pub(crate) async fn settle(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &NatsSettings,
    message: &jetstream::Message,
    result: Result<Handled, HandlerError>,
    delivered: u64,
    sequence: u64,
) -> Outcome {
    // On its last allowed delivery a message that is not done must be parked, not nak'ed:
    // JetStream would never deliver it again.
    let last_delivery = (delivered as i64) >= settings.max_deliver;
    let (error, retried_as) = match result {
        Ok(Handled::Done) => {
            return match message.double_ack().await {
                Ok(()) => Outcome::Ack,
                // The work is done and idempotent: a redelivery repeats nothing visible.
                Err(e) => {
                    tracing::warn!(error = %e, "ack not confirmed; the message may be redelivered");
                    Outcome::Ack
                }
            };
        }
        Ok(Handled::RetryLater { after, reason }) if !last_delivery => {
            tracing::info!(%reason, ?after, "not yet; will be delivered again");
            let _ = message.ack_with(AckKind::Nak(Some(after))).await;
            return Outcome::Deferred;
        }
        Ok(Handled::RetryLater { reason, .. }) => {
            let reason = format!("still waiting after {delivered} deliveries: {reason}");
            return park(bus, spec, settings, message, delivered, sequence, &reason, Outcome::DeadLettered).await;
        }
        Err(error @ HandlerError::Panicked(_)) => (error, Outcome::Panicked),
        Err(error @ HandlerError::Transient(_)) => (error, Outcome::Retry),
        Err(error @ HandlerError::Poison(_)) => {
            let reason = crate::error_chain(&error);
            tracing::error!(%reason, "poison message; sending it to the dead-letter subject");
            return park(bus, spec, settings, message, delivered, sequence, &reason, Outcome::Poison).await;
        }
    };
    let reason = crate::error_chain(&error);
    if last_delivery {
        tracing::error!(%reason, delivered, "giving up on message; sending it to the dead-letter subject");
        return park(bus, spec, settings, message, delivered, sequence, &reason, Outcome::DeadLettered).await;
    }
    let delay = settings.retry_backoff(delivered);
    if retried_as == Outcome::Panicked {
        tracing::error!(%reason, ?delay, "handler panicked; will retry");
    } else {
        tracing::warn!(%reason, ?delay, "transient failure; will retry");
    }
    let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
    retried_as
}

/// Sends `message` to the dead-letter subject with `reason` and terminates it; `parked` is
/// the outcome to record. A dead letter that cannot be published leaves the message for
/// redelivery: never drop a message we could not park.
#[allow(clippy::too_many_arguments)]
async fn park(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &NatsSettings,
    message: &jetstream::Message,
    delivered: u64,
    sequence: u64,
    reason: &str,
    parked: Outcome,
) -> Outcome {
    match dead_letter(bus, spec.durable, message, sequence, reason).await {
        Ok(()) => {
            let _ = message.ack_with(AckKind::Term).await;
            parked
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter publish failed; leaving message for redelivery");
            let _ = message.ack_with(AckKind::Nak(Some(settings.retry_backoff(delivered)))).await;
            Outcome::Retry
        }
    }
}

async fn dead_letter(
    bus: &Bus,
    consumer: &str,
    message: &jetstream::Message,
    sequence: u64,
    reason: &str,
) -> Result<(), BusError> {
    let subject = subjects::dead_letter(consumer);
    let mut headers = message.headers.clone().unwrap_or_default();
    // One dead letter per original message, however often this is retried.
    headers.insert(NATS_MESSAGE_ID, format!("dlq:{consumer}:{sequence}").as_str());
    // A header value holds no line break (async-nats panics on one); causes may have some.
    headers.insert(DEAD_LETTER_REASON, reason.replace(['\r', '\n'], " ").as_str());
    headers.insert(DEAD_LETTER_SUBJECT, message.subject.as_str());
    headers.insert(DEAD_LETTER_SEQUENCE, sequence.to_string().as_str());
    publish_raw(bus, subject, headers, message.payload.clone()).await
}

async fn publish_raw(bus: &Bus, subject: String, headers: HeaderMap, payload: bytes::Bytes) -> Result<(), BusError> {
    let fail = |source: Cause| BusError::Publish { subject: subject.clone(), source };
    bus.jetstream
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|e| fail(e.into()))?
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(())
}
