//! Carries the W3C trace context (`traceparent`) in message headers, so one trace follows
//! a task from the client through every service. Generic over [`HeaderCarrier`] so this
//! crate does not depend on the bus; the bus implements it for NATS headers.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header name.
pub const TRACEPARENT: &str = "traceparent";

/// Headers a trace context can be read from and written to.
pub trait HeaderCarrier {
    /// The header's value, if present.
    fn get_header(&self, key: &str) -> Option<String>;
    /// Sets the header.
    fn set_header(&mut self, key: &str, value: String);
}

struct InjectInto<'a, C: HeaderCarrier>(&'a mut C);

impl<C: HeaderCarrier> Injector for InjectInto<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set_header(key, value);
    }
}

/// Writes the current span's trace context into `carrier`.
pub fn inject_current(carrier: &mut impl HeaderCarrier) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut InjectInto(carrier))
    });
}

/// Makes the trace context found in `carrier` (if any) the parent of `span`.
pub fn set_parent_from(span: &tracing::Span, carrier: &impl HeaderCarrier) {
    let headers =
        OwnedHeaders { traceparent: carrier.get_header(TRACEPARENT), tracestate: carrier.get_header("tracestate") };
    if headers.traceparent.is_none() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&headers));
    let _ = span.set_parent(parent);
}

/// The two trace headers, copied out of the carrier so the extractor can lend them.
struct OwnedHeaders {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Extractor for OwnedHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[derive(Default)]
    struct Map(HashMap<String, String>);

    impl HeaderCarrier for Map {
        fn get_header(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_header(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
    }

    /// A span's context goes out as a well-formed traceparent and comes back as the
    /// parent of a span on the other side, with the same trace id.
    #[test]
    fn traceparent_round_trips() {
        crate::init_for_tests();
        let sender = tracing::info_span!("send");
        let mut headers = Map::default();
        sender.in_scope(|| inject_current(&mut headers));
        let traceparent = headers.get_header(TRACEPARENT).expect("traceparent written");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!((parts[0].len(), parts[1].len(), parts[2].len(), parts[3].len()), (2, 32, 16, 2));

        let receiver = tracing::info_span!("receive");
        set_parent_from(&receiver, &headers);
        let sent = sender.context().span().span_context().trace_id();
        let received = receiver.context().span().span_context().trace_id();
        assert_eq!(sent, received);
        assert_eq!(received.to_string(), parts[1]);
    }
}
