//! Scenario `subscribers`: many event streams held open at once. Every chat sends one message whose reply the
//! fake provider holds before its first token; `--subscribers` streams are opened over those replies (a user
//! with many tabs open, spread over the chats) and held for `--seconds`, measuring the server's memory per
//! held stream and its CPU while they idle; then the provider lets go and every stream gets its reply, so the
//! relay figures show the fan-out of one token to many subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Mutex, Semaphore};

use crate::client::{ReplyTimes, User};
use crate::report::SubscribersReport;
use crate::{Args, Measured, Watch, clock, mib, provider};

/// Streams being opened at once (so the server's listen backlog is not overrun).
const OPENING_AT_ONCE: usize = 256;

pub async fn run(
    args: &Args,
    chats: &[(User, String)],
    provider: &provider::Control,
    watch: &Watch,
) -> anyhow::Result<(Measured, SubscribersReport)> {
    if args.subscribers == 0 {
        bail!("--subscribers must be positive");
    }
    provider.hold();
    let mut streams = Vec::with_capacity(chats.len());
    let sent_at = clock::micros();
    for (user, companion) in chats {
        streams.push((user.clone(), user.send(companion, "Wait for it").await?));
    }
    // Every held reply has reached the provider: the runs are waiting, nothing else is moving.
    let wait_started = Instant::now();
    while provider.replies() < chats.len() as u64 {
        if wait_started.elapsed() > Duration::from_secs(30) {
            bail!("the server did not ask the provider for every reply within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let phase = watch.phase();
    let connected = Arc::new(AtomicUsize::new(0));
    let all_connected = Arc::new(tokio::sync::Notify::new());
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let results: Arc<Mutex<Vec<ReplyTimes>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let total = args.subscribers;
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let (user, stream_url) = streams[i % streams.len()].clone();
            let (connected, all_connected, opening) =
                (connected.clone(), all_connected.clone(), opening.clone());
            let (results, errors) = (results.clone(), errors.clone());
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await;
                let on_connect = all_connected.clone();
                let outcome = user
                    .read_stream(&stream_url, sent_at, move || {
                        drop(permit);
                        if connected.fetch_add(1, Ordering::SeqCst) + 1 == total {
                            on_connect.notify_one();
                        }
                    })
                    .await;
                match outcome {
                    // Send → first token is not this scenario's measure (the provider held it on purpose).
                    Ok(times) => results.lock().await.push(ReplyTimes {
                        first_token_us: None,
                        ..times
                    }),
                    Err(err) => {
                        errors.lock().await.push(format!("{err:#}"));
                        // A stream that never connected still counts, so the wait below ends.
                        all_connected.notify_one();
                    }
                }
            })
        })
        .collect();
    // Wait until every stream is answered (or the failed ones have reported).
    loop {
        let done = connected.load(Ordering::SeqCst) + errors.lock().await.len();
        if done >= total {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), all_connected.notified()).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let held = watch.usage();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let after_hold = watch.usage();
    provider.release();
    for task in tasks {
        task.await?;
    }
    let results = std::mem::take(&mut *results.lock().await);
    let errors = std::mem::take(&mut *errors.lock().await);
    let connected = connected.load(Ordering::SeqCst);
    let before = phase.before;
    let section = SubscribersReport {
        subscribers: total,
        connected,
        connect_seconds,
        rss_before_mib: mib(before.rss_kib),
        rss_held_mib: mib(held.rss_kib),
        kib_per_subscriber: held.rss_kib.saturating_sub(before.rss_kib) as f64
            / connected.max(1) as f64,
        idle_cpu_ms: after_hold.cpu_ms - held.cpu_ms,
        held_seconds: args.seconds,
    };
    Ok((phase.end(results, errors), section))
}
