//! The worker loop's rules on a real nats-server: a panicking handler is recorded as a panic
//! and the loop goes on; a handler that asks for a message later gets it back after its
//! delay without an error being counted; what is never done ends as a dead letter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use gradients_bus::subjects::{self, streams};
use gradients_bus::worker::{run_worker, ConsumerSpec, Handled, Handler, HandlerError, DEAD_LETTER_REASON};
use gradients_bus::{topology, Bus};
use gradients_config::NatsSettings;
use gradients_telemetry::Metrics;
use gradients_testkit::{eventually, stream_messages, NatsServer};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A server, a connection with the system's topology, and a stream of our own for the test.
async fn bus_with_stream(stream_name: &str, subject: &str) -> (NatsServer, Bus, NatsSettings) {
    let server = NatsServer::start().expect("nats-server");
    // Two deliveries, quick back-off: the whole life of a message in well under a second.
    let settings = NatsSettings {
        url: vec![server.url()],
        max_deliver: 2,
        retry_backoff_ms: 50,
        retry_backoff_max_ms: 50,
        ..NatsSettings::default()
    };
    let bus = Bus::connect(&settings, "worker-test").await.expect("connect");
    topology::declare(&bus, &settings).await.expect("topology");
    bus.jetstream
        .create_stream(stream::Config {
            name: stream_name.to_owned(),
            subjects: vec![format!("{subject}.>")],
            ..Default::default()
        })
        .await
        .expect("stream");
    (server, bus, settings)
}

async fn publish(bus: &Bus, subject: String, payload: &'static str) {
    bus.jetstream.publish(subject, payload.into()).await.expect("publish").await.expect("stored");
}

/// How many messages `durable` handled with `outcome`, as the metrics say.
fn handled(metrics: &Metrics, durable: &str, outcome: &str) -> u64 {
    let prefix = format!(
        "gradients_messages_handled_total{{service=\"worker-test\",handler=\"{durable}\",outcome=\"{outcome}\"}} "
    );
    metrics.encode().lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |n| n.trim().parse().unwrap())
}

/// The dead letters `durable` parked, with their reasons.
async fn dead_letters(bus: &Bus, durable: &str) -> Vec<(String, String)> {
    stream_messages(&bus.jetstream, streams::DEAD_LETTERS, &subjects::dead_letter(durable))
        .await
        .into_iter()
        .map(|m| {
            let reason = m.headers.as_ref().and_then(|h| h.get(DEAD_LETTER_REASON)).map(|v| v.to_string());
            (String::from_utf8_lossy(&m.payload).into_owned(), reason.unwrap_or_default())
        })
        .collect()
}

/// Panics on `panic`, records everything else.
struct Panicky(Arc<Mutex<Vec<String>>>);

impl Handler for Panicky {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        if text == "panic" {
            panic!("a bug met {text}");
        }
        self.0.lock().unwrap().push(text);
        Ok(Handled::Done)
    }
}

/// A handler that panics is recorded as `panicked`, the message after it is handled by the
/// same worker, and the panicking one ends as a dead letter naming the panic.
#[tokio::test]
async fn a_panicking_handler_is_recorded_and_the_worker_keeps_serving() {
    let (_server, bus, settings) = bus_with_stream("WORKER_PANIC", "worker-panic").await;
    let durable = "worker-panic";
    let spec = ConsumerSpec { stream: "WORKER_PANIC", durable, filter_subject: "worker-panic.>".to_owned() };
    let (metrics, stop, seen) = (Metrics::new("worker-test"), CancellationToken::new(), Arc::default());
    let worker = tokio::spawn({
        let (bus, metrics, stop, handler) = (bus.clone(), metrics.clone(), stop.clone(), Panicky(Arc::clone(&seen)));
        async move { run_worker(&bus, spec, &settings, metrics, stop, handler).await }
    });

    publish(&bus, "worker-panic.a".into(), "panic").await;
    publish(&bus, "worker-panic.b".into(), "fine").await;
    eventually(WAIT, "the message after the panic handled", || async {
        seen.lock().unwrap().contains(&"fine".to_owned())
    })
    .await;
    let parked = eventually(WAIT, "the panicking message dead-lettered", || async {
        let letters = dead_letters(&bus, durable).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, "panic");
    assert!(parked[0].1.contains("panicked: a bug met panic"), "{parked:?}");
    assert!(handled(&metrics, durable, "panicked") >= 1, "{}", metrics.encode());
    assert_eq!(handled(&metrics, durable, "ack"), 1);
    assert!(!worker.is_finished(), "the worker stopped after a panic");

    stop.cancel();
    worker.await.expect("the worker task did not panic").expect("the worker ended cleanly");
}

/// Defers `later` once, `never` every time; acknowledges the rest. Remembers when each
/// delivery came.
struct NotYet(Arc<Mutex<Vec<(String, Instant)>>>);

const LATER: Duration = Duration::from_millis(700);

impl Handler for NotYet {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let mut seen = self.0.lock().unwrap();
        let earlier = seen.iter().filter(|(t, _)| *t == text).count();
        seen.push((text.clone(), Instant::now()));
        match (text.as_str(), earlier) {
            ("later", 0) | ("never", _) => Ok(Handled::RetryLater { after: LATER, reason: format!("{text}: not yet") }),
            _ => Ok(Handled::Done),
        }
    }
}

/// Asking for a message later is not a failure: it comes back after the handler's delay
/// (not the error back-off), counts as `deferred` (never `retry`), and is then done; one
/// still deferred on its last delivery is parked as a dead letter, not silently dropped.
#[tokio::test]
async fn a_deferred_message_comes_back_after_its_delay_without_an_error() {
    let (_server, bus, settings) = bus_with_stream("WORKER_LATER", "worker-later").await;
    let durable = "worker-later";
    let spec = ConsumerSpec { stream: "WORKER_LATER", durable, filter_subject: "worker-later.>".to_owned() };
    let (metrics, stop, seen) = (Metrics::new("worker-test"), CancellationToken::new(), Arc::default());
    let worker = tokio::spawn({
        let (bus, metrics, stop, handler) = (bus.clone(), metrics.clone(), stop.clone(), NotYet(Arc::clone(&seen)));
        async move { run_worker(&bus, spec, &settings, metrics, stop, handler).await }
    });

    publish(&bus, "worker-later.a".into(), "later").await;
    publish(&bus, "worker-later.b".into(), "never").await;
    eventually(WAIT, "the deferred message done", || async { handled(&metrics, durable, "ack") == 1 }).await;
    let parked = eventually(WAIT, "the never-ready message dead-lettered", || async {
        let letters = dead_letters(&bus, durable).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;

    let deliveries: Vec<Instant> =
        seen.lock().unwrap().iter().filter(|(t, _)| t == "later").map(|(_, at)| *at).collect();
    assert_eq!(deliveries.len(), 2, "delivered once, deferred, delivered again");
    let waited = deliveries[1] - deliveries[0];
    assert!(waited >= LATER - Duration::from_millis(50), "came back after {waited:?}, before its delay");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, "never");
    assert!(parked[0].1.contains("still waiting after 2 deliveries: never: not yet"), "{parked:?}");
    assert_eq!(handled(&metrics, durable, "deferred"), 2, "{}", metrics.encode());
    assert_eq!(handled(&metrics, durable, "retry"), 0, "a deferral counted as a failure");
    assert_eq!(handled(&metrics, durable, "dead_lettered"), 1);

    stop.cancel();
    worker.await.expect("join").expect("the worker ended cleanly");
}
