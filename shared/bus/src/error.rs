//! The bus crate's error type.
//!
//! Every variant keeps the error that caused it as its [`std::error::Error::source`], so a
//! caller can still tell a timeout from a refusal (by downcasting) and a log shows the whole
//! chain. The cause's text is also part of the message, because most logs print one line.

/// What caused a bus failure: the client library's own error, or a sentence of ours.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect, or a credentials/TLS file could not be read.
    #[error("connecting to NATS at {urls}: {source}")]
    Connect {
        urls: String,
        #[source]
        source: Cause,
    },
    /// A stream, consumer or bucket could not be declared.
    #[error("declaring {what}: {source}")]
    Declare {
        what: String,
        #[source]
        source: Cause,
    },
    /// A publish was not acknowledged by JetStream.
    #[error("publishing to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: Cause,
    },
    /// Pulling from a consumer failed.
    #[error("consuming {consumer}: {source}")]
    Consume {
        consumer: String,
        #[source]
        source: Cause,
    },
    /// A request/reply API could not be served.
    #[error("service {service}: {source}")]
    Service {
        service: String,
        #[source]
        source: Cause,
    },
    /// An object store operation failed for a reason other than the object itself.
    #[error("object store {bucket}: {source}")]
    Object {
        bucket: String,
        #[source]
        source: Cause,
    },
}

/// A cause with what we were doing when it happened (`put model.onnx: timed out`).
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub(crate) struct During {
    action: String,
    #[source]
    source: Cause,
}

impl During {
    pub(crate) fn new(action: String, source: impl Into<Cause>) -> Self {
        Self { action, source: source.into() }
    }
}

/// `error` and each of its causes, joined by `: `, skipping a cause whose text its parent
/// already quotes (ours do): one log line that says everything once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let line = e.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_cause_and_says_it_once() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
        let error = BusError::Publish { subject: "gradients.x".into(), source: io.into() };
        let source = std::error::Error::source(&error).expect("a source");
        let io = source.downcast_ref::<std::io::Error>().expect("the io error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(error_chain(&error), "publishing to gradients.x: no answer");
    }
}
