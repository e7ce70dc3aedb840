//! `init` in a process of its own (it installs the global subscriber): bad settings are
//! refused, the OTLP/gRPC pipeline starts, a second call is harmless, and spans carry a
//! sampled `traceparent`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gradients_config::TelemetrySettings;
use gradients_telemetry::{init, inject_current, HeaderCarrier, TelemetryError, TRACEPARENT};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_installs_once_and_exports_over_grpc() {
    let bad_filter = TelemetrySettings { log_filter: "gradients=loudly".to_owned(), ..TelemetrySettings::default() };
    let error = init("svc", &bad_filter).expect_err("bad filter refused");
    assert!(matches!(&error, TelemetryError::Filter { filter, .. } if filter == "gradients=loudly"), "{error}");
    assert!(error.to_string().contains("gradients=loudly"), "{error}");

    let bad_endpoint =
        TelemetrySettings { otlp_endpoint: Some("not a uri".to_owned()), ..TelemetrySettings::default() };
    let error = init("svc", &bad_endpoint).expect_err("bad endpoint refused");
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error}");

    // Nothing listens there: spans fail to export, which must not fail or hang the service.
    let settings = TelemetrySettings {
        log_filter: "warn".to_owned(),
        otlp_endpoint: Some("http://127.0.0.1:9".to_owned()),
        ..TelemetrySettings::default()
    };
    let first = init("svc", &settings).expect("first init");
    assert!(first.is_exporting());
    let second = init("svc", &settings).expect("second init is harmless");
    assert!(!second.is_exporting());

    let mut headers = Map::default();
    tracing::info_span!("send").in_scope(|| inject_current(&mut headers));
    let traceparent = headers.get_header(TRACEPARENT).expect("traceparent written");
    assert!(traceparent.starts_with("00-") && traceparent.ends_with("-01"), "{traceparent}");

    drop(second);
    let started = Instant::now();
    drop(first);
    assert!(started.elapsed() < Duration::from_secs(40), "shutdown took {:?}", started.elapsed());
}
