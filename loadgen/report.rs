//! The harness's results: distributions as percentiles, a table for people and a JSON document for tools.

use serde::Serialize;

use crate::{Args, Measured};

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
    /// Replies (or, in `sign-in`, sign-ins and pages) that failed (the first few reasons are in
    /// `error_samples`).
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
    /// Scenario `subscribers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<SubscribersReport>,
    /// Scenario `conversation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationReport>,
    /// Scenario `sign-in`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignInReport>,
}

/// Many event streams held open while their replies wait, then all fed at once.
#[derive(Debug, Serialize)]
pub struct SubscribersReport {
    /// Streams asked for.
    pub subscribers: usize,
    /// Streams the server answered (and held).
    pub connected: usize,
    /// From the first request to the last stream answered.
    pub connect_seconds: f64,
    /// The server's memory before the streams, and while all were held.
    pub rss_before_mib: f64,
    /// While all were held.
    pub rss_held_mib: f64,
    /// (held − before) / connected.
    pub kib_per_subscriber: f64,
    /// The server's CPU time while the streams were held and idle.
    pub idle_cpu_ms: f64,
    /// How long they were held.
    pub held_seconds: f64,
}

/// One long conversation: the chat page and a Send on it.
#[derive(Debug, Serialize)]
pub struct ConversationReport {
    /// Messages in the conversation when measured.
    pub messages: usize,
    /// How long growing it took (Sends one after another, through the API).
    pub grow_seconds: f64,
    /// Chat page loads: time to the whole page in the client.
    pub page: Spread,
    /// The server's CPU time per page load.
    pub page_cpu_ms: f64,
    /// The page's size.
    pub page_bytes: usize,
}

/// Sign-ins (each one Argon2 verification) and signed-in pages, measured apart.
#[derive(Debug, Serialize)]
pub struct SignInReport {
    /// Clients at once.
    pub clients: usize,
    /// Sign-ins completed, their rate and their time (form page + POST).
    pub sign_ins: usize,
    /// Per second.
    pub sign_ins_per_second: f64,
    /// Time per sign-in.
    pub sign_in: Spread,
    /// The server's CPU per sign-in.
    pub sign_in_cpu_ms: f64,
    /// The server's peak memory during the sign-ins, and after them.
    pub sign_in_peak_rss_mib: f64,
    /// After the sign-ins, once they were done.
    pub rss_after_sign_ins_mib: f64,
    /// Signed-in pages loaded (the companions list and a chat page, in turn), their rate and time.
    pub pages: usize,
    /// Per second.
    pub pages_per_second: f64,
    /// Time per page.
    pub page: Spread,
    /// The server's CPU per page.
    pub page_cpu_ms: f64,
}

impl Report {
    /// An empty report of `args`' scenario on `database`.
    pub fn new(args: &Args, database: &str) -> Self {
        Self {
            scenario: clap::ValueEnum::to_possible_value(&args.scenario)
                .map_or_else(String::new, |v| v.get_name().to_owned()),
            database: database.to_owned(),
            chats: args.chats,
            tokens_per_reply: args.tokens,
            tokens_per_second: args.tokens_per_second,
            provider_first_token_ms: args.first_token_ms as f64,
            seconds: 0.0,
            replies: 0,
            errors: 0,
            error_samples: Vec::new(),
            tokens_per_second_total: 0.0,
            first_token_overhead: Spread::default(),
            relay_overhead: Spread::default(),
            start_to_ready_ms: None,
            server_ready_rss_mib: 0.0,
            server_idle_rss_mib: 0.0,
            server_peak_rss_mib: 0.0,
            server_kib_per_active_chat: 0.0,
            server_cpu_ms: 0.0,
            server_cpu_ms_per_reply: 0.0,
            harness_cpu_ms: 0.0,
            subscribers: None,
            conversation: None,
            sign_in: None,
        }
    }

    /// Fills in the common part from the measured phase (`provider_first_token_ms` is taken off each first
    /// token; memory per active chat is counted over `chats`).
    pub fn add(&mut self, measured: Measured, provider_first_token_ms: u64, chats: usize) {
        let provider_ttft_us = provider_first_token_ms * 1000;
        let results = &measured.replies;
        let tokens: u64 = results.iter().map(|r| u64::from(r.tokens)).sum();
        self.seconds = measured.seconds;
        self.replies = results.len();
        self.errors = measured.errors.len();
        self.error_samples = measured.errors.iter().take(5).cloned().collect();
        self.tokens_per_second_total = tokens as f64 / measured.seconds.max(1e-9);
        self.first_token_overhead = Spread::of(
            results
                .iter()
                .filter_map(|r| r.first_token_us)
                .map(|us| us.saturating_sub(provider_ttft_us))
                .collect(),
        );
        self.relay_overhead = Spread::of(
            results
                .iter()
                .flat_map(|r| r.relay_us.iter().copied())
                .collect(),
        );
        self.server_peak_rss_mib = measured.peak_rss_kib as f64 / 1024.0;
        self.server_kib_per_active_chat = measured
            .peak_rss_kib
            .saturating_sub(measured.before.rss_kib)
            as f64
            / chats.max(1) as f64;
        self.server_cpu_ms = measured.after.cpu_ms - measured.before.cpu_ms;
        self.server_cpu_ms_per_reply = if self.replies > 0 {
            self.server_cpu_ms / self.replies as f64
        } else {
            0.0
        };
        self.harness_cpu_ms = measured.harness_cpu_ms;
    }

    /// Whether the scenario completed anything at all (for `--strict`).
    pub fn measured_something(&self) -> bool {
        match &self.sign_in {
            Some(s) => s.sign_ins > 0 && s.pages > 0,
            None => self.replies > 0,
        }
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let spread = |name: &str, s: &Spread| {
            if s.count == 0 {
                return String::new();
            }
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
        if let Some(c) = &self.conversation {
            out += &spread("chat page (client)", &c.page);
        }
        if let Some(s) = &self.sign_in {
            out += &spread("sign-in (form + POST)", &s.sign_in);
            out += &spread("signed-in page", &s.page);
        }
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
        if let Some(s) = &self.subscribers {
            out += &format!(
                "subscribers: {} of {} held for {:.1} s (connected in {:.1} s); server {:.1} → {:.1} MiB = {:.1} KiB per subscriber; idle CPU {:.0} ms\n",
                s.connected,
                s.subscribers,
                s.held_seconds,
                s.connect_seconds,
                s.rss_before_mib,
                s.rss_held_mib,
                s.kib_per_subscriber,
                s.idle_cpu_ms
            );
        }
        if let Some(c) = &self.conversation {
            out += &format!(
                "conversation: {} messages (grown in {:.1} s); chat page {} bytes, server CPU {:.2} ms per page\n",
                c.messages, c.grow_seconds, c.page_bytes, c.page_cpu_ms
            );
        }
        if let Some(s) = &self.sign_in {
            out += &format!(
                "sign-in: {} clients; {} sign-ins = {:.1}/s, server CPU {:.1} ms each, peak {:.1} MiB, after {:.1} MiB; {} pages = {:.0}/s, server CPU {:.2} ms each\n",
                s.clients,
                s.sign_ins,
                s.sign_ins_per_second,
                s.sign_in_cpu_ms,
                s.sign_in_peak_rss_mib,
                s.rss_after_sign_ins_mib,
                s.pages,
                s.pages_per_second,
                s.page_cpu_ms
            );
        }
        for sample in &self.error_samples {
            out += &format!("error: {sample}\n");
        }
        out
    }
}
