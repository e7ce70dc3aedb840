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
