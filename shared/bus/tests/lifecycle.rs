//! The lifecycle every service shares, on a real nats-server: shut down mid-work, a service
//! finishes the message in hand and stops within its drain limit; a loop that ignores the
//! stop is abandoned at the limit; a panicking loop stops the service with its own error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use gradients_bus::lifecycle::{Lifecycle, LoopPanicked};
use gradients_bus::worker::{ConsumerSpec, Handled, Handler, HandlerError};
use gradients_bus::BusError;
use gradients_config::NatsSettings;
use gradients_telemetry::TelemetryError;
use gradients_testkit::{eventually, NatsServer};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum TestServiceError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Panicked(#[from] LoopPanicked),
}

fn nats(server: &NatsServer) -> NatsSettings {
    NatsSettings { url: vec![server.url()], ..NatsSettings::default() }
}

/// Takes `WORK` per message, counting the messages it started and finished.
#[derive(Clone, Default)]
struct Slow {
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
}

const WORK: Duration = Duration::from_millis(800);

impl Handler for Slow {
    async fn handle(&self, _: &jetstream::Message) -> Result<Handled, HandlerError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(WORK).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(Handled::Done)
    }
}

/// Shut down while a message is being handled: the service stops taking messages, finishes
/// (and acknowledges) the one in hand, reports not ready and returns, all within its drain
/// limit; nothing is left unacknowledged.
#[tokio::test]
async fn a_service_shut_down_mid_work_finishes_in_hand_and_stops_within_its_limit() {
    let server = NatsServer::start().expect("nats-server");
    let settings = nats(&server);
    let drain_limit = Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let mut running = Lifecycle::new("lifecycle-test", &settings)
        .drain_limit(drain_limit)
        .start::<TestServiceError>(&shutdown)
        .await
        .expect("started")
        .expect("connected");
    let bus = running.bus.clone();
    bus.jetstream
        .create_stream(stream::Config {
            name: "LIFECYCLE".into(),
            subjects: vec!["lifecycle.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let slow = Slow::default();
    let spec = ConsumerSpec { stream: "LIFECYCLE", durable: "lifecycle-slow", filter_subject: "lifecycle.>".into() };
    running.spawn_worker(spec, &settings, slow.clone());
    running.ready();
    let readiness = running.readiness();
    assert!(readiness.is_ready());
    let service = tokio::spawn(running.run());

    bus.jetstream.publish("lifecycle.a", "work".into()).await.expect("publish").await.expect("stored");
    eventually(Duration::from_secs(20), "the message in hand", || async { slow.started.load(Ordering::SeqCst) == 1 })
        .await;
    let asked = Instant::now();
    shutdown.cancel();
    let outcome = tokio::time::timeout(drain_limit + Duration::from_secs(5), service).await;
    let stopped_after = asked.elapsed();
    outcome.expect("stopped within the drain limit").expect("join").expect("a clean stop");
    assert!(stopped_after < drain_limit, "took {stopped_after:?}");
    assert_eq!(slow.finished.load(Ordering::SeqCst), 1, "the message in hand was finished");
    assert!(!readiness.is_ready(), "still reported ready after stopping");
    let mut consumer = bus
        .jetstream
        .get_stream("LIFECYCLE")
        .await
        .expect("stream")
        .get_consumer::<jetstream::consumer::pull::Config>("lifecycle-slow")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "left unacknowledged: {info:?}");
}

/// A loop that ignores the stop is abandoned at the drain limit: the service still stops.
#[tokio::test]
async fn a_loop_that_ignores_the_stop_is_abandoned_at_the_drain_limit() {
    let server = NatsServer::start().expect("nats-server");
    let drain_limit = Duration::from_millis(500);
    let shutdown = CancellationToken::new();
    let mut running = Lifecycle::new("lifecycle-test", &nats(&server))
        .drain_limit(drain_limit)
        .start::<TestServiceError>(&shutdown)
        .await
        .expect("started")
        .expect("connected");
    running.spawn(async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let service = tokio::spawn(running.run());
    let asked = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("stopped despite the stuck loop")
        .expect("join")
        .expect("a clean stop");
    assert!(asked.elapsed() >= drain_limit, "did not wait for the loop at all");
}

/// A panicking loop stops the service with the panic as its error, and the other loops with it.
#[tokio::test]
async fn a_panicking_loop_stops_the_service_with_its_own_error() {
    let server = NatsServer::start().expect("nats-server");
    let shutdown = CancellationToken::new();
    let mut running = Lifecycle::new("lifecycle-test", &nats(&server))
        .start::<TestServiceError>(&shutdown)
        .await
        .expect("started")
        .expect("connected");
    let other_stopped = Arc::new(AtomicUsize::new(0));
    {
        let other_stopped = other_stopped.clone();
        running.spawn_until_stopped(|stop| async move {
            stop.cancelled().await;
            other_stopped.fetch_add(1, Ordering::SeqCst);
        });
    }
    running.spawn(async { panic!("a bug in a loop") });
    let outcome = tokio::time::timeout(Duration::from_secs(10), running.run()).await.expect("stopped");
    match outcome {
        Err(TestServiceError::Panicked(LoopPanicked { service, message })) => {
            assert_eq!(service, "lifecycle-test");
            assert!(message.contains("a bug in a loop"), "{message}");
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    assert_eq!(other_stopped.load(Ordering::SeqCst), 1);
}

/// Shutdown while NATS is out of reach is a clean stop with nothing started.
#[tokio::test]
async fn shutdown_before_nats_answers_starts_nothing() {
    let mut server = NatsServer::start().expect("nats-server");
    let settings = NatsSettings { connect_timeout_ms: 300, ..nats(&server) };
    server.kill();
    let shutdown = CancellationToken::new();
    let starting = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            Lifecycle::new("lifecycle-test", &settings).start::<TestServiceError>(&shutdown).await.map(|r| r.is_some())
        })
    };
    shutdown.cancel();
    let started = tokio::time::timeout(Duration::from_secs(10), starting).await.expect("gave up").expect("join");
    assert!(matches!(started, Ok(false)), "{started:?}");
}
