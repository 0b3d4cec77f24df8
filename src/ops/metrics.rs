//! Prometheus metrics: the recorder, metric descriptions, and per-app counters (`/metrics` is `ops::routes`).
//!
//! Policy: names are snake_case with unit suffixes; labels come from small fixed sets (never user or
//! companion ids). The `metrics` facade has one recorder per process, so it is installed once and
//! every `App` in the process shares it; `/metrics` can be protected by a bearer token.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Histogram buckets for durations in seconds: from 5 ms (static files) to 2 min (a long model reply).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle. Apps built at the same time
/// in one process (tests) wait for the first installation and share it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .map_err(|err| err.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is already installed".to_owned())?;
            describe();
            metrics::gauge!(
                "companion_hub_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
            )
            .set(1.0);
            Ok(handle)
        })
        .clone()
        .map_err(|message| anyhow::anyhow!(message))
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from receiving a request to sending its response headers"
    );
    metrics::describe_gauge!(
        "companion_hub_build_info",
        "Always 1; the labels say which version is running"
    );
    metrics::describe_counter!(
        "periodic_job_runs_total",
        "Periodic job runs on this instance, by job and outcome"
    );
    metrics::describe_counter!("chat_runs_total", "Chat runs ended, by final status");
    metrics::describe_histogram!(
        "chat_step_duration_seconds",
        metrics::Unit::Seconds,
        "Time of each chat run step (respond, analyze, finalize)"
    );
    metrics::describe_histogram!(
        "llm_time_to_first_token_seconds",
        metrics::Unit::Seconds,
        "From sending a reply request to the model until its first token"
    );
    metrics::describe_counter!(
        "llm_tokens_streamed_total",
        "Pieces of reply text received from the model"
    );
    metrics::describe_gauge!(
        "chat_active_streams",
        "Open chat event streams on this instance"
    );
    metrics::describe_gauge!(
        "chat_replies_waiting",
        "Replies waiting for a slot (MAX_ACTIVE_REPLIES) on this instance"
    );
    metrics::describe_histogram!(
        "chat_reply_slot_wait_seconds",
        metrics::Unit::Seconds,
        "How long a reply waited for a slot (MAX_ACTIVE_REPLIES), for those that waited"
    );
    metrics::describe_counter!(
        "llm_request_failures_total",
        "Failed calls to the language model, by kind"
    );
    metrics::describe_counter!(
        "images_generated_total",
        "Picture generations, by outcome (ok or an error code)"
    );
    metrics::describe_histogram!(
        "image_generation_duration_seconds",
        "Time to generate, check and store one picture"
    );
    metrics::describe_counter!(
        "image_request_failures_total",
        "Failed calls to the image backend, by kind"
    );
    metrics::describe_counter!(
        "images_orphans_deleted_total",
        "Stored image files deleted by the orphan cleanup"
    );
    metrics::describe_counter!(
        "images_orphan_bytes_freed_total",
        "Bytes freed by the orphan cleanup"
    );
}

/// Counters of one application (not of the process, like the recorder): what tests need to see per app
/// even when many apps share a process, beside the process-wide metric of the same name.
#[derive(Debug, Default)]
pub struct AppCounters {
    password_verifications: std::sync::atomic::AtomicU64,
}

impl AppCounters {
    /// An Argon2 verification ran (also counts `password_verifications_total`).
    pub fn record_password_verification(&self) {
        self.password_verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("password_verifications_total").increment(1);
    }

    /// Argon2 verifications this app ran.
    pub fn password_verifications(&self) -> u64 {
        self.password_verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
