//! The harness's results: distributions as percentiles, a table for people and a JSON document for tools.

use serde::Serialize;

/// A distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Spread {
    /// The spread of `samples` (microseconds).
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index] as f64 / 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1] as f64 / 1000.0,
        }
    }
}

/// Everything one run of the harness measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The scenario (`steady`, `burst`).
    pub scenario: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Concurrent chats.
    pub chats: usize,
    /// Tokens per reply and their rate.
    pub tokens_per_reply: u32,
    /// Tokens per second of each reply.
    pub tokens_per_second: f64,
    /// The provider's time to first token.
    pub provider_first_token_ms: f64,
    /// The measured phase's length.
    pub seconds: f64,
    /// Replies completed.
    pub replies: usize,
    /// Replies that failed (the first few reasons are in `error_samples`).
    pub errors: usize,
    /// Some of the failures.
    pub error_samples: Vec<String>,
    /// Tokens received per second, all chats together.
    pub tokens_per_second_total: f64,
    /// Send → first token in the client, minus the provider's time to first token.
    pub first_token_overhead: Spread,
    /// Per token: received in the client − sent by the provider.
    pub relay_overhead: Spread,
    /// From starting the server's process to its first ready answer (when the harness started it).
    pub start_to_ready_ms: Option<f64>,
    /// The server's memory when it first answered ready (before any user existed).
    pub server_ready_rss_mib: f64,
    /// The server's memory after set-up (sign-ups, companions), before the load.
    pub server_idle_rss_mib: f64,
    /// The server's highest memory during the load.
    pub server_peak_rss_mib: f64,
    /// (peak − idle) / concurrent chats.
    pub server_kib_per_active_chat: f64,
    /// The server's CPU time during the load.
    pub server_cpu_ms: f64,
    /// That per completed reply (its analysis call included).
    pub server_cpu_ms_per_reply: f64,
    /// The harness's own CPU time during the load (client and fake provider): it must stay well below the
    /// server's, or the harness is what was measured.
    pub harness_cpu_ms: f64,
}

impl Report {
    /// The report as a table.
    pub fn table(&self) -> String {
        let spread = |name: &str, s: &Spread| {
            format!(
                "{name:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
            )
        };
        let mut out = format!(
            "scenario {} on {}: {} chats, {} tokens at {}/s, provider first token {} ms, {:.1} s\n\n",
            self.scenario,
            self.database,
            self.chats,
            self.tokens_per_reply,
            self.tokens_per_second,
            self.provider_first_token_ms,
            self.seconds
        );
        out += &format!(
            "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            "overhead (ms)", "samples", "p50", "p90", "p99", "max"
        );
        out += &spread("send → first token", &self.first_token_overhead);
        out += &spread("relay per token", &self.relay_overhead);
        out += &format!(
            "\nreplies {} · errors {} · {:.0} tokens/s\n",
            self.replies, self.errors, self.tokens_per_second_total
        );
        if let Some(ready) = self.start_to_ready_ms {
            out += &format!("start → ready {ready:.1} ms\n");
        }
        out += &format!(
            "server: ready {:.1} MiB, idle after set-up {:.1} MiB, peak {:.1} MiB ({:.0} KiB per active chat); CPU {:.0} ms = {:.2} ms per reply\n",
            self.server_ready_rss_mib,
            self.server_idle_rss_mib,
            self.server_peak_rss_mib,
            self.server_kib_per_active_chat,
            self.server_cpu_ms,
            self.server_cpu_ms_per_reply
        );
        out += &format!("harness CPU {:.0} ms\n", self.harness_cpu_ms);
        for sample in &self.error_samples {
            out += &format!("error: {sample}\n");
        }
        out
    }
}
