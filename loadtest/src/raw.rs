//! The ceiling: how many messages per second JetStream itself stores and acknowledges on
//! the same server, in the same run, with the same payload sizes the pipeline's events had
//! (cycled in their order), on a file-backed stream like the market's, with a message id
//! on each as every service sets. Measured two ways: one publisher awaiting each ack
//! before the next (how a service publishes an event), and a window of acks in flight
//! (JetStream's own limit).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde::Serialize;

/// The throw-away stream the ceiling is measured on.
const STREAM: &str = "GRADIENTS_LOADTEST_RAW";
const SUBJECT: &str = "gradients.loadtest.raw";
/// Acks in flight for the windowed measure.
const WINDOW: usize = 256;

/// Both ceilings, in messages per second.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// One publish awaiting its ack at a time.
    pub sequential_messages_per_second: f64,
    /// Up to [`WINDOW`] acks in flight.
    pub windowed_messages_per_second: f64,
    pub mean_payload_bytes: f64,
}

/// Measures both ceilings for `seconds` each with payloads of `sizes` bytes.
pub async fn measure(js: &jetstream::Context, sizes: &[usize], seconds: f64) -> anyhow::Result<Ceiling> {
    let sizes = if sizes.is_empty() { vec![256] } else { sizes.to_vec() };
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let limit = Duration::from_secs_f64(seconds.max(0.5));
    let payloads: Vec<bytes::Bytes> = sizes.iter().map(|n| bytes::Bytes::from(vec![b'x'; *n])).collect();
    let mut id = 0u64;
    let mut next = move || {
        id += 1;
        let payload = payloads[id as usize % payloads.len()].clone();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("raw-{id}").as_str());
        (headers, payload)
    };

    let started = Instant::now();
    let mut sequential = 0u64;
    while started.elapsed() < limit {
        let (headers, payload) = next();
        js.publish_with_headers(SUBJECT, headers, payload).await?.await?;
        sequential += 1;
    }
    let sequential_rate = sequential as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut windowed = 0u64;
    let mut in_flight = VecDeque::new();
    while started.elapsed() < limit {
        let (headers, payload) = next();
        in_flight.push_back(js.publish_with_headers(SUBJECT, headers, payload).await?);
        if in_flight.len() >= WINDOW {
            in_flight.pop_front().expect("a pending ack").await?;
            windowed += 1;
        }
    }
    while let Some(ack) = in_flight.pop_front() {
        ack.await?;
        windowed += 1;
    }
    let windowed_rate = windowed as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(STREAM).await;
    Ok(Ceiling {
        sequential_messages_per_second: sequential_rate,
        windowed_messages_per_second: windowed_rate,
        mean_payload_bytes: sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
    })
}
