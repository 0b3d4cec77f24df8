//! Scenario `conversation`: one conversation grown to `--messages` messages through the API (Sends one
//! after another, the provider answering at once with a short reply), then `--samples` loads of its chat page
//! (time in the client, and the server's CPU per load) and a tenth as many Sends on it at the configured
//! cadence, whose Send → first token includes building the prompt from that long history.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::User;
use crate::report::{ConversationReport, Spread};
use crate::{Args, Measured, Watch, provider};

pub async fn run(
    args: &Args,
    chats: &[(User, String)],
    provider: &provider::Control,
    watch: &Watch,
) -> anyhow::Result<(Measured, ConversationReport)> {
    let Some((user, companion)) = chats.first() else {
        bail!("the conversation scenario needs a chat");
    };
    let measured_cadence = provider.cadence();
    provider.set_cadence(provider::Cadence {
        first_token: Duration::ZERO,
        tokens: 3,
        interval: Duration::ZERO,
    });
    let grow_started = Instant::now();
    // A user message and a reply per Send.
    let sends = args.messages.div_ceil(2);
    for turn in 0..sends {
        user.chat_once(companion, &format!("Message {turn} of a long conversation"))
            .await
            .with_context(|| format!("growing the conversation, Send {turn}"))?;
        if turn > 0 && turn % 1000 == 0 {
            eprintln!("conversation: {} messages", turn * 2);
        }
    }
    let grow_seconds = grow_started.elapsed().as_secs_f64();
    provider.set_cadence(measured_cadence);

    let chat_page = format!("/companions/{companion}/chat");
    let samples = args.samples.max(1);
    let pages = watch.phase();
    let mut times = Vec::with_capacity(samples);
    let mut page_bytes = 0;
    for _ in 0..samples {
        let started = Instant::now();
        page_bytes = user.page(&chat_page).await?;
        times.push(started.elapsed().as_micros() as u64);
    }
    let page_cpu_ms = (watch.usage().cpu_ms - pages.before.cpu_ms) / samples as f64;

    let phase = watch.phase();
    let mut replies = Vec::new();
    let mut errors = Vec::new();
    for turn in 0..samples.div_ceil(10) {
        match user
            .chat_once(companion, &format!("Measured message {turn}"))
            .await
        {
            Ok(times) => replies.push(times),
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    let section = ConversationReport {
        messages: sends * 2,
        grow_seconds,
        page: Spread::of(times),
        page_cpu_ms,
        page_bytes,
    };
    Ok((phase.end(replies, errors), section))
}
