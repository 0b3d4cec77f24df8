//! Every log line of a request carries its correlation id, method, route, status and latency.

use std::io::Write;
use std::sync::{Arc, Mutex};

use companion_hub::config::LogFormat;
use companion_hub::ops::logging;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::support::{Backend, TestApp};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }
}

// A current-thread runtime runs the server on this thread, so the thread-local subscriber sees it all.
#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_request_carries_its_correlation_id() {
    let captured = Captured::default();
    let subscriber = logging::subscriber(
        LogFormat::Json,
        EnvFilter::new("debug,sqlx=warn,hyper=warn,reqwest=warn,h2=warn"),
        captured.clone(),
        false,
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/no-such-page"))
        .header("x-correlation-id", "trace-me-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let lines = captured.lines();
    let request_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["name"] == "request"))
        })
        .collect();
    assert!(!request_lines.is_empty(), "the request logged: {lines:?}");
    for line in &request_lines {
        let span = line["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "request")
            .unwrap();
        assert_eq!(span["correlation_id"], "trace-me-0001", "{line}");
    }
    let completed = request_lines
        .iter()
        .find(|line| line["message"] == "request completed")
        .expect("an access line");
    let span = &completed["spans"][0];
    assert_eq!(span["method"], "GET");
    assert_eq!(span["route"], "unmatched");
    assert_eq!(span["status"], 404);
    assert!(span["latency_ms"].is_u64());
    assert_eq!(span["path"], "/no-such-page");
}

#[test]
fn the_pretty_format_is_one_readable_line_per_event() {
    let captured = Captured::default();
    let subscriber = logging::subscriber(
        LogFormat::Pretty,
        EnvFilter::new("info"),
        captured.clone(),
        false,
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", correlation_id = "pretty-0001");
        span.in_scope(|| tracing::info!("hello"));
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("correlation_id=") && text.contains("pretty-0001") && text.contains("hello"),
        "{text}"
    );
}
