//! Looking at what services left on the bus, without disturbing their consumers.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

/// Every message now stored on `subject` in `stream`, oldest first, read through a
/// throw-away consumer that acknowledges nothing.
pub async fn stream_messages(js: &jetstream::Context, stream: &str, subject: &str) -> Vec<jetstream::Message> {
    let stream = js.get_stream(stream).await.expect("the stream exists");
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("a throw-away consumer");
    let mut found = Vec::new();
    let mut batch =
        consumer.fetch().max_messages(10_000).expires(Duration::from_millis(500)).messages().await.expect("fetch");
    while let Some(message) = batch.next().await {
        found.push(message.expect("message"));
    }
    found
}

/// `Ok` once durable `consumer` of `stream` has handed out and had acknowledged every
/// message (none pending, none awaiting its ack); otherwise what is left. With
/// [`crate::eventually`] this is how a test knows a service has processed all it was sent
/// before it asserts that something did *not* happen (a duplicate, a second entry).
pub async fn consumer_settled(js: &jetstream::Context, stream: &str, consumer: &str) -> Result<(), String> {
    let stream = js.get_stream(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
    let mut consumer: consumer::PullConsumer =
        stream.get_consumer(consumer).await.map_err(|e| format!("consumer {consumer}: {e}"))?;
    let info = consumer.info().await.map_err(|e| e.to_string())?;
    if info.num_pending == 0 && info.num_ack_pending == 0 {
        Ok(())
    } else {
        Err(format!("{}: {} pending, {} awaiting ack", info.name, info.num_pending, info.num_ack_pending))
    }
}
