//! Scenario `sign-in`: `--chats` clients at once sign in through the form (each sign-in is one Argon2
//! verification) for half of `--seconds`, then load signed-in pages (the companions list and a chat page in
//! turn) for the other half. The two are measured apart, so the cost of Argon2 is not mixed into the pages'.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::client::{self, User};
use crate::report::{SignInReport, Spread};
use crate::{Args, Measured, Watch, mib};

/// What one client did in a phase: each operation's time, and its failures.
#[derive(Default)]
struct Tally {
    times_us: Vec<u64>,
    errors: Vec<String>,
}

/// Runs `operation` from `clients` clients at once, each again as soon as it is done, until `seconds` passed.
async fn for_a_while<F, Fut>(clients: usize, seconds: f64, operation: F) -> Tally
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let operation = &operation;
    let per_client = join_all((0..clients).map(|client| async move {
        let mut tally = Tally::default();
        let mut turn = 0;
        while Instant::now() < until {
            let started = Instant::now();
            match operation(client, turn).await {
                Ok(()) => tally.times_us.push(started.elapsed().as_micros() as u64),
                Err(err) => tally.errors.push(format!("{err:#}")),
            }
            turn += 1;
        }
        tally
    }))
    .await;
    per_client
        .into_iter()
        .fold(Tally::default(), |mut all, one| {
            all.times_us.extend(one.times_us);
            all.errors.extend(one.errors);
            all
        })
}

pub async fn run(
    args: &Args,
    base: &str,
    usernames: &[String],
    chats: &[(User, String)],
    watch: &Watch,
) -> anyhow::Result<(Measured, SignInReport)> {
    let clients = args.chats;
    let half = args.seconds / 2.0;
    let http = client::http_client()?;

    let sign_ins = watch.phase();
    let signed_in = for_a_while(clients, half, |client, _| {
        client::sign_in(&http, base, &usernames[client % usernames.len()])
    })
    .await;
    let sign_in_phase = sign_ins.end(Vec::new(), Vec::new());
    // Memory a moment after the last sign-in: what Argon2's buffers left behind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after_sign_ins = watch.usage().rss_kib;

    let pages = watch.phase();
    let loaded = for_a_while(clients, half, |client, turn| {
        let (user, companion) = &chats[client % chats.len()];
        let path = if turn % 2 == 0 {
            "/companions".to_owned()
        } else {
            format!("/companions/{companion}/chat")
        };
        async move { user.page(&path).await.map(|_| ()) }
    })
    .await;
    let mut errors = signed_in.errors;
    errors.extend(loaded.errors);
    let measured = pages.end(Vec::new(), errors);

    let per = |cpu_ms: f64, count: usize| cpu_ms / count.max(1) as f64;
    let section = SignInReport {
        clients,
        sign_ins: signed_in.times_us.len(),
        sign_ins_per_second: signed_in.times_us.len() as f64 / sign_in_phase.seconds,
        sign_in_cpu_ms: per(
            sign_in_phase.after.cpu_ms - sign_in_phase.before.cpu_ms,
            signed_in.times_us.len(),
        ),
        sign_in_peak_rss_mib: mib(sign_in_phase.peak_rss_kib),
        rss_after_sign_ins_mib: mib(rss_after_sign_ins),
        sign_in: Spread::of(signed_in.times_us),
        pages: loaded.times_us.len(),
        pages_per_second: loaded.times_us.len() as f64 / measured.seconds,
        page_cpu_ms: per(
            measured.after.cpu_ms - measured.before.cpu_ms,
            loaded.times_us.len(),
        ),
        page: Spread::of(loaded.times_us),
    };
    Ok((measured, section))
}
