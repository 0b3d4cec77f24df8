//! Instances as real processes of our binary: a crashed instance's reply is taken over at once (by its own
//! restart on SQLite, by another instance on PostgreSQL), one process serves a SQLite file, and two instances
//! sending for one companion at once start one run, sessions, locks and limits are the same on every
//! instance, and a reply streams on an instance other than the one writing it (its tokens by PostgreSQL or
//! by Redis Streams).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use crate::chat::{conversation, send};
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::process::ServerProcess;
use crate::support::redis::{kill_readers, require_redis, unique_prefix};
use crate::support::sse::{SseEvent, last, last_token_id, read, read_all, text_of};
use crate::support::visitor::{PASSWORD, Visitor};
use crate::support::{Backend, TestDatabase, counter, require_postgres, wait_until};

/// `chat_relay_token_notices_total` of `server` for one direction (sent, received) and bus.
async fn token_notices(server: &ServerProcess, direction: &str, bus: &str) -> f64 {
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    counter(
        &metrics,
        &format!("chat_relay_token_notices_total{{direction=\"{direction}\",bus=\"{bus}\"}}"),
    )
}

/// What every process of a test needs: its database, the shared data folder, the fake model, `extra`.
fn vars(
    database_url: &str,
    dir: &Path,
    llm: &FakeLlm,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("DATA_DIR".to_owned(), dir.display().to_string()),
    ];
    vars.extend(llm.env());
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

/// Alice with one companion on `server`; the companion's id.
async fn alice_with_companion(server: &ServerProcess) -> (Visitor, String) {
    let alice = Visitor::signed_in_at(server.url(""), "alice").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26}))
        .await;
    (alice, companion["id"].as_str().expect("id").to_owned())
}

/// Sends a message while the model holds its reply after "half a"; reads until the client saw that much.
/// The stream URL, the id of the last event the client saw (what a browser reconnects with) and the gate
/// that would let the model go on.
async fn reply_in_progress(
    llm: &FakeLlm,
    alice: &Visitor,
    companion: &str,
) -> (String, String, Arc<Semaphore>) {
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["half", " a"]),
        gate: hold.clone(),
        after: pieces(&[" reply"]),
    });
    let (status, started) = send(alice, companion, "Tell me a story").await;
    assert!(status.is_success(), "{status}: {started}");
    let url = started["stream_url"]
        .as_str()
        .expect("stream_url")
        .to_owned();
    let shown = read(alice, &url, None, |events| text_of(events) == "half a").await;
    assert_eq!(text_of(&shown), "half a");
    let seen = shown.last().expect("events").id.clone();
    // The gate stays shut: the process holding the reply dies first.
    (url, seen, hold)
}

fn assert_never_told_elsewhere(events: &[SseEvent]) {
    assert!(
        events.iter().all(|e| e.data["code"] != "run_elsewhere"),
        "the client is not sent away: {events:?}"
    );
}

#[tokio::test]
async fn after_kill_9_the_restarted_instance_resumes_the_reply_at_once_and_accepts_messages() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Sqlite, dir.path()).await;
    let vars = vars(&database.url, dir.path(), &llm, &[]);
    let mut first = ServerProcess::start(dir.path(), &vars);
    let (alice, companion) = alice_with_companion(&first).await;
    let (url, seen, _hold) = reply_in_progress(&llm, &alice, &companion).await;
    first.kill_hard();

    let second = ServerProcess::start(dir.path(), &vars);
    let ready = second.ready().await;
    let again = alice.on(second.url(""));
    // The browser reconnects with the id it saw last: the text it shows is taken back and written anew.
    let events = read(&again, &url, Some(&seen), |_| false).await;
    let resumed = ready.elapsed();
    assert_never_told_elsewhere(&events);
    assert!(
        events.iter().any(|e| e.event == "reset"),
        "the reply is written again: {events:?}"
    );
    let done = last(&events, "done").expect("the interrupted reply ends");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert_eq!(
        text_of(&events),
        "Hello, wörld!",
        "what the client shows is what was stored"
    );
    eprintln!(
        "the interrupted reply was complete {resumed:?} after /api/ready (target: within 2 s)"
    );

    // The companion takes the next message at once (no 409 while a dead process's lease lapses).
    let (status, next) = send(&again, &companion, "And then?").await;
    assert!(status.is_success(), "{status}: {next}");
    let next_events = read_all(&again, next["stream_url"].as_str().unwrap()).await;
    assert!(last(&next_events, "done").is_some(), "{next_events:?}");
    let messages = conversation(&again, &companion).await;
    assert_eq!(
        messages
            .iter()
            .filter(|(role, _)| role == "assistant")
            .count(),
        2,
        "one reply per message, the interrupted one stored once: {messages:?}"
    );

    // One process per SQLite database: a second one refuses to start, saying why.
    let (status, stderr) = ServerProcess::refused(dir.path(), &vars);
    assert!(!status.success());
    assert!(
        stderr.contains("another companion-hub process is serving"),
        "{stderr}"
    );
}

/// Several instances: these need PostgreSQL (`…::postgres::…`, left out of the plain test run).
mod postgres {
    use super::*;

    #[tokio::test]
    async fn when_the_instance_writing_a_reply_is_killed_another_takes_it_over_once() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let timeout = 3;
        let on = |name: &str| {
            vars(
                &database.url,
                dir.path(),
                &llm,
                &[("INSTANCE_NAME", name), ("INSTANCE_TIMEOUT_SECS", "3")],
            )
        };
        let mut a = ServerProcess::start(dir.path(), &on("web-a"));
        let b = ServerProcess::start(dir.path(), &on("web-b"));
        let (alice, companion) = alice_with_companion(&a).await;
        let (url, _, _hold) = reply_in_progress(&llm, &alice, &companion).await;
        // b follows the reply before a dies.
        let on_b = alice.on(b.url(""));
        let following = read(&on_b, &url, None, |events| text_of(events) == "half a").await;
        assert_eq!(text_of(&following), "half a", "b shows what a wrote so far");
        let killed = Instant::now();
        a.kill_hard();

        // A client on b follows the reply; when a's heartbeat is stale, b takes it over and writes it again: one
        // stream, never "another server".
        let events = read_all(&on_b, &url).await;
        assert_never_told_elsewhere(&events);
        assert!(events.iter().any(|e| e.event == "reset"), "{events:?}");
        let taken_over = killed.elapsed();
        let done = last(&events, "done").unwrap();
        assert_eq!(done.data["content"], "Hello, wörld!");
        assert_eq!(text_of(&events), "Hello, wörld!");
        eprintln!(
            "b completed the reply {taken_over:?} after a was killed (INSTANCE_TIMEOUT_SECS={timeout}, target: + 2 s)"
        );
        let messages = conversation(&on_b, &companion).await;
        assert_eq!(
            messages,
            [
                ("user".to_owned(), "Tell me a story".to_owned()),
                ("assistant".to_owned(), "Hello, wörld!".to_owned()),
            ],
            "exactly one reply"
        );
    }

    #[tokio::test]
    async fn two_instances_sending_for_one_companion_at_once_start_one_run() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let a = ServerProcess::start(
            dir.path(),
            &vars(
                &database.url,
                dir.path(),
                &llm,
                &[("INSTANCE_NAME", "web-a")],
            ),
        );
        let b = ServerProcess::start(
            dir.path(),
            &vars(
                &database.url,
                dir.path(),
                &llm,
                &[("INSTANCE_NAME", "web-b")],
            ),
        );
        let (alice, companion) = alice_with_companion(&a).await;
        let on_b = alice.on(b.url(""));
        // The reply is held, so whichever send came first still runs when the other arrives.
        let hold = gate();
        llm.stream(Streamed::Paused {
            before: pieces(&["One"]),
            gate: hold.clone(),
            after: pieces(&[" reply."]),
        });
        let (first, second) = tokio::join!(
            send(&alice, &companion, "From a"),
            send(&on_b, &companion, "From b"),
        );
        let mut statuses = [first.0.as_u16(), second.0.as_u16()];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [202, 409],
            "one run, one refusal: {first:?} {second:?}"
        );
        hold.add_permits(1);
        let started = if first.0.as_u16() == 202 {
            first.1
        } else {
            second.1
        };
        let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
        assert_eq!(last(&events, "done").unwrap().data["content"], "One reply.");
        assert_eq!(
            conversation(&on_b, &companion).await.len(),
            2,
            "one message, one reply"
        );
    }

    #[tokio::test]
    async fn sessions_locks_and_limits_hold_across_instances() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let on = |name: &str| {
            vars(
                &database.url,
                dir.path(),
                &llm,
                &[
                    ("INSTANCE_NAME", name),
                    ("LOCKOUT_THRESHOLD", "3"),
                    ("RATE_LIMIT_LOGIN", "off"),
                    ("RATE_LIMIT_LOGIN_IP", "off"),
                    ("RATE_LIMIT_REGISTER", "3/24h"),
                ],
            )
        };
        let a = ServerProcess::start(dir.path(), &on("web-a"));
        let b = ServerProcess::start(dir.path(), &on("web-b"));

        // A session signed out on a is dead on b.
        let alice = Visitor::signed_in_at(a.url(""), "alice").await;
        let alice_on_b = alice.on(b.url(""));
        assert!(alice_on_b.page("/settings").await.contains("@alice"));
        let signed_out = alice.submit("/settings", "/logout", &[]).await;
        assert_eq!(signed_out.status(), 303);
        let after = alice_on_b.get("/settings").await;
        let location = after
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        assert!(
            after.status().is_redirection()
                && location.as_deref().is_some_and(|l| l.starts_with("/login")),
            "b no longer knows the session: {} {location:?}",
            after.status()
        );

        // A lock set through a holds on b, even for the right password from a new browser.
        let stranger = Visitor::at(a.url(""));
        for _ in 0..3 {
            stranger.login("alice", "Wrong-Password-1").await;
        }
        let elsewhere = Visitor::at(b.url("")).login("alice", PASSWORD).await;
        assert_eq!(elsewhere.status(), 423, "locked on b too");

        // Registrations from one address count once across instances: 3 a day (alice was the first).
        let registered = |server: &ServerProcess, name: &str| {
            let visitor = Visitor::at(server.url(""));
            let name = name.to_owned();
            async move {
                visitor
                    .register(&name, &format!("{name}@example.com"), &name, PASSWORD)
                    .await
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(registered(&b, "bob").await, 303);
        assert_eq!(registered(&a, "carol").await, 303);
        assert_eq!(
            registered(&b, "dave").await,
            429,
            "the fourth of the day is refused, though b saw only two"
        );
    }

    #[tokio::test]
    async fn a_reply_written_on_one_instance_streams_on_the_other_and_resumes_exactly_there() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let (a, b, alice, companion) = two_instances(&llm, dir.path(), &database, &[]).await;
        // Sent on a, read on b: b pushes what a writes (no polling), then the client hangs up.
        let (url, offset, hold) = sent_on_a_shown_on_b(&llm, &alice, &companion, &b).await;
        let cut_at = Instant::now();
        // The listening connections drop (a restarted PostgreSQL, a proxy's idle cut): b listens again and
        // catches up from the database, nothing lost or repeated.
        cut_listeners(&database).await;
        hold.add_permits(1);
        // It reconnects to b with its last id: the rest, byte for byte, no reset.
        let stored = rest_on_b(&alice, &b, &url, &offset).await;
        eprintln!(
            "the rest reached b {:?} after its listener was cut",
            cut_at.elapsed()
        );
        // And a finished run replays the same on either instance.
        assert_eq!(text_of(&read_all(&alice, &url).await), stored);
        assert_eq!(text_of(&read_all(&alice.on(b.url("")), &url).await), stored);
        // a pushed the tokens to b as they came (not only the text flushed every 250 ms).
        assert!(
            token_notices(&a, "sent", "postgres").await >= 1.0,
            "a sent tokens"
        );
        assert!(
            token_notices(&b, "received", "postgres").await >= 1.0,
            "b received them"
        );
    }

    /// Reads `url` on b from the start to the end on one connection; `shown` is notified once the client
    /// shows `first` (b follows the run by then).
    fn live_reader_on_b(
        alice: &Visitor,
        b: &ServerProcess,
        url: &str,
        first: &'static str,
    ) -> (
        tokio::task::JoinHandle<Vec<SseEvent>>,
        Arc<tokio::sync::Notify>,
    ) {
        let shown = Arc::new(tokio::sync::Notify::new());
        let (on_b, url, told) = (alice.on(b.url("")), url.to_owned(), shown.clone());
        let reader = tokio::spawn(async move {
            read(&on_b, &url, None, |events| {
                if text_of(events) == first {
                    told.notify_one();
                }
                false
            })
            .await
        });
        (reader, shown)
    }

    #[tokio::test]
    async fn a_stream_on_the_other_instance_stays_exact_while_its_listener_is_cut() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let (_a, b, alice, companion) = two_instances(&llm, dir.path(), &database, &[]).await;
        let (url, hold) = held_reply_sent(&llm, &alice, &companion).await;
        let (reader, shown) = live_reader_on_b(&alice, &b, &url, "Über die");
        shown.notified().await;
        // The listening connections drop while the client stays connected to b.
        cut_listeners(&database).await;
        hold.add_permits(1);
        let events = reader.await.expect("reader");
        assert_never_told_elsewhere(&events);
        let stored = last(&events, "done").expect("the end reaches b").data["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(stored, "Über die Brücke gehen wir.");
        // Nothing lost or repeated on the open stream: its tokens (after a reset, if one came) are the reply.
        let after_reset = events
            .iter()
            .rposition(|e| e.event == "reset")
            .map_or(&events[..], |at| &events[at + 1..]);
        assert_eq!(text_of(after_reset), stored, "{events:?}");
    }

    #[tokio::test]
    async fn a_piece_too_long_for_one_notification_reaches_the_other_instance_whole() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let (a, b, alice, companion) = two_instances(&llm, dir.path(), &database, &[]).await;
        // 6,000 bytes in one piece: more than one notification may carry (it goes without its text, and
        // b reads the run for it).
        let long = "Brücke ".repeat(750);
        let hold = gate();
        llm.stream(Streamed::Paused {
            before: pieces(&["Über", " die "]),
            gate: hold.clone(),
            after: vec![long.clone(), "Ende.".to_owned()],
        });
        let (status, started) = send(&alice, &companion, "Wohin?").await;
        assert!(status.is_success(), "{status}: {started}");
        let url = started["stream_url"].as_str().unwrap().to_owned();
        let (reader, shown) = live_reader_on_b(&alice, &b, &url, "Über die");
        shown.notified().await;
        hold.add_permits(1);
        let events = reader.await.expect("reader");
        assert_never_told_elsewhere(&events);
        let expected = format!("Über die {long}Ende.");
        assert_eq!(
            last(&events, "done").expect("the end reaches b").data["content"],
            expected.as_str()
        );
        assert!(events.iter().all(|e| e.event != "reset"), "no reset needed");
        assert_eq!(
            text_of(&events),
            expected,
            "token by token, nothing lost or repeated"
        );
        assert!(
            token_notices(&a, "sent", "postgres").await >= 1.0,
            "a sent tokens"
        );
    }

    /// Two instances on one PostgreSQL database with `extra` settings, and Alice with a companion on a.
    async fn two_instances(
        llm: &FakeLlm,
        dir: &Path,
        database: &TestDatabase,
        extra: &[(&str, &str)],
    ) -> (ServerProcess, ServerProcess, Visitor, String) {
        let start = |name: &str| {
            let mut settings = extra.to_vec();
            settings.push(("INSTANCE_NAME", name));
            ServerProcess::start(dir, &vars(&database.url, dir, llm, &settings))
        };
        let (a, b) = (start("web-a"), start("web-b"));
        let (alice, companion) = alice_with_companion(&a).await;
        (a, b, alice, companion)
    }

    /// Sends a message (on whichever instance `alice` talks to) whose reply the model holds after "Über die"
    /// until the gate opens; the stream URL and the gate.
    async fn held_reply_sent(
        llm: &FakeLlm,
        alice: &Visitor,
        companion: &str,
    ) -> (String, Arc<Semaphore>) {
        let hold = gate();
        llm.stream(Streamed::Paused {
            // A trailing space is held back until more text follows (the exact-text rule), so the client
            // shows "Über die" while the model waits.
            before: pieces(&["Über", " die "]),
            gate: hold.clone(),
            after: pieces(&["Brücke", " gehen", " wir."]),
        });
        let (status, started) = send(alice, companion, "Wohin?").await;
        assert!(status.is_success(), "{status}: {started}");
        (started["stream_url"].as_str().unwrap().to_owned(), hold)
    }

    /// Drops every listening connection of the test's database (a restarted PostgreSQL, a proxy's idle cut).
    async fn cut_listeners(database: &TestDatabase) {
        let admin = sqlx::PgPool::connect(&database.url).await.expect("connect");
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_all(&admin)
        .await
        .expect("terminate");
        assert!(!cut.is_empty(), "the instances listen");
    }

    /// Sends on a while the model holds its reply after "Über die"; reads on b until the client shows it.
    /// The stream URL, the id of the last event seen, and the gate.
    async fn sent_on_a_shown_on_b(
        llm: &FakeLlm,
        alice: &Visitor,
        companion: &str,
        b: &ServerProcess,
    ) -> (String, String, Arc<Semaphore>) {
        let (url, hold) = held_reply_sent(llm, alice, companion).await;
        let first = read(&alice.on(b.url("")), &url, None, |events| {
            text_of(events) == "Über die"
        })
        .await;
        assert_never_told_elsewhere(&first);
        assert_eq!(text_of(&first), "Über die");
        (url, last_token_id(&first), hold)
    }

    /// The rest of the reply on b from `offset`: byte for byte, no reset; the stored reply.
    async fn rest_on_b(alice: &Visitor, b: &ServerProcess, url: &str, offset: &str) -> String {
        let rest = read(&alice.on(b.url("")), url, Some(offset), |_| false).await;
        assert_never_told_elsewhere(&rest);
        assert!(rest.iter().all(|e| e.event != "reset"), "{rest:?}");
        let stored = last(&rest, "done").expect("the end reaches b").data["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(stored, "Über die Brücke gehen wir.");
        assert_eq!(format!("Über die{}", text_of(&rest)), stored);
        stored
    }

    #[tokio::test]
    async fn a_change_in_progress_says_what_changed_and_the_end_names_only_the_run() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let a = ServerProcess::start(dir.path(), &vars(&database.url, dir.path(), &llm, &[]));
        let (alice, companion) = alice_with_companion(&a).await;
        let mut listener = sqlx::postgres::PgListener::connect(&database.url)
            .await
            .expect("listen");
        listener.listen("chat_run_changed").await.expect("LISTEN");
        let (first, second) = (gate(), gate());
        llm.stream(Streamed::Staged {
            stages: vec![
                pieces(&["half", " a"]),
                pieces(&[" longer"]),
                pieces(&[" reply"]),
            ],
            gates: vec![first.clone(), second.clone()],
        });
        let (status, started) = send(&alice, &companion, "Tell me a story").await;
        assert!(status.is_success(), "{status}: {started}");
        let url = started["stream_url"]
            .as_str()
            .expect("stream_url")
            .to_owned();
        let run = url
            .rsplit('/')
            .next()
            .expect("the run id in the stream URL");
        let mut heard: Vec<String> = Vec::new();
        let mut hear_until = async |wanted: &dyn Fn(&str) -> bool, what: &str| {
            loop {
                let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
                    .await
                    .unwrap_or_else(|_| panic!("never heard {what}; heard {heard:?}"))
                    .expect("a notification");
                heard.push(notification.payload().to_owned());
                if wanted(notification.payload()) {
                    break;
                }
            }
        };
        let in_progress = |payload: &str, text: &str| {
            serde_json::from_str::<serde_json::Value>(payload).is_ok_and(|notice| {
                notice["run"] == run
                    && notice["text_bytes"] == text.len()
                    && notice["status"] == "responding"
                    && notice["step"].is_string()
                    && notice["progress"].is_number()
            })
        };
        // Each flush of the text says how long it is, with the status, step and progress: a follower
        // whose tokens brought that much needs no read.
        hear_until(&|payload| in_progress(payload, "half a"), "the first flush").await;
        first.add_permits(1);
        hear_until(
            &|payload| in_progress(payload, "half a longer"),
            "the second flush",
        )
        .await;
        second.add_permits(1);
        let done = read(&alice, &url, None, |_| false).await;
        assert_eq!(
            last(&done, "done").expect("the end").data["content"],
            "half a longer reply"
        );
        // The end names the run alone: a follower reads it.
        hear_until(&|payload| payload == run, "the end").await;
    }

    #[tokio::test]
    async fn with_redis_the_tokens_go_by_redis_streams_and_a_dropped_reader_loses_nothing() {
        require_postgres();
        let redis_url = require_redis();
        let prefix = unique_prefix();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let bus = [
            ("REDIS_URL", redis_url.as_str()),
            ("REDIS_KEY_PREFIX", &prefix),
        ];
        let (a, b, alice, companion) = two_instances(&llm, dir.path(), &database, &bus).await;
        let (url, offset, hold) = sent_on_a_shown_on_b(&llm, &alice, &companion, &b).await;
        let health: serde_json::Value = reqwest::get(b.url("/api/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["checks"]["relay_bus"]["status"], "healthy");
        assert_eq!(health["checks"]["relay_bus"]["kind"], "redis");

        // Both instances' readers lose their connections (a restarted Redis, an idle cut) mid-reply.
        assert_eq!(
            kill_readers(&redis_url, &prefix).await,
            2,
            "a's and b's readers"
        );
        hold.add_permits(1);
        let stored = rest_on_b(&alice, &b, &url, &offset).await;
        assert_eq!(text_of(&read_all(&alice, &url).await), stored);
        assert!(
            token_notices(&a, "sent", "redis").await >= 1.0,
            "a sent tokens by Redis"
        );
        assert!(
            token_notices(&b, "received", "redis").await >= 1.0,
            "b received them"
        );
        assert_eq!(
            token_notices(&a, "sent", "postgres").await,
            0.0,
            "nothing went by PostgreSQL's notifications"
        );
    }

    #[tokio::test]
    async fn with_redis_down_replies_still_reach_the_other_instance_and_health_says_why() {
        require_postgres();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let nobody = format!(
            "redis://127.0.0.1:{}",
            crate::support::nginx::Nginx::free_port()
        );
        let bus = [("REDIS_URL", nobody.as_str())];
        let (_a, b, alice, companion) = two_instances(&llm, dir.path(), &database, &bus).await;
        let (url, offset, hold) = sent_on_a_shown_on_b(&llm, &alice, &companion, &b).await;
        hold.add_permits(1);
        // The run's state (its text flushed every 250 ms, its end) comes by PostgreSQL.
        rest_on_b(&alice, &b, &url, &offset).await;
        let answer = reqwest::get(b.url("/api/health")).await.unwrap();
        assert_eq!(answer.status(), 503);
        let health: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(health["checks"]["relay_bus"]["status"], "unhealthy");
        let ready = reqwest::get(b.url("/api/ready")).await.unwrap();
        assert_eq!(
            ready.status(),
            200,
            "a slower relay is no reason to take b out"
        );
    }

    #[tokio::test]
    async fn the_periodic_sweep_runs_on_one_instance_at_a_time_over_a_shared_bucket() {
        require_postgres();
        let faketime = crate::support::process::faketime_library();
        let llm = FakeLlm::start().await;
        let bucket = crate::support::s3::create_bucket().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        // An orphan (a picture file of ours that no row names) and a file that is not ours. The bucket's
        // clock stamps them now; the instances' clocks run two hours ahead, so for them the orphan is past
        // the grace period (an hour) and goes.
        let object = |key: &str| format!("{}/{bucket}/media/{key}", crate::support::s3::endpoint());
        let orphan = format!("{}/{}.jpg", uuid::Uuid::now_v7(), "e".repeat(64));
        let client = reqwest::Client::new();
        for (key, body) in [
            (orphan.as_str(), vec![1_u8; 700]),
            ("notes/README.txt", b"not ours".to_vec()),
        ] {
            let put = client
                .put(object(key))
                .body(body)
                .send()
                .await
                .expect("put");
            assert!(put.status().is_success(), "put {key}: {}", put.status());
        }
        let on = |name: &str| {
            let mut vars = vars(
                &database.url,
                dir.path(),
                &llm,
                &[
                    ("INSTANCE_NAME", name),
                    ("CLEANUP_INTERVAL_MINUTES", "60"),
                    ("LD_PRELOAD", faketime),
                    ("FAKETIME", "+2h"),
                ],
            );
            vars.extend(crate::support::s3::vars_for(&bucket));
            vars
        };
        // Both tick at start; the lease lets one sweep the bucket and the other skip it.
        let a = ServerProcess::start(dir.path(), &on("web-a"));
        let b = ServerProcess::start(dir.path(), &on("web-b"));
        let client = reqwest::Client::new();
        let counts = || async {
            let mut runs = 0.0;
            let mut skips = 0.0;
            for server in [&a, &b] {
                let metrics = client
                    .get(server.url("/metrics"))
                    .send()
                    .await
                    .expect("metrics")
                    .text()
                    .await
                    .expect("text");
                runs += counter(
                    &metrics,
                    r#"periodic_job_runs_total{job="cleanup-images",outcome="success"}"#,
                );
                skips += counter(
                    &metrics,
                    r#"periodic_job_skips_total{job="cleanup-images"}"#,
                );
            }
            (runs, skips)
        };
        let both_ticked = wait_until(std::time::Duration::from_secs(20), || async {
            let (runs, skips) = counts().await;
            runs + skips >= 2.0
        })
        .await;
        assert!(both_ticked, "both instances ticked: {:?}", counts().await);
        assert_eq!(
            counts().await,
            (1.0, 1.0),
            "one sweep of the bucket succeeded, the other instance skipped it"
        );
        // Anonymous reads of objects are refused by the server; its listing is not.
        let listing = client
            .get(format!(
                "{}/{bucket}?list-type=2&prefix=media/",
                crate::support::s3::endpoint()
            ))
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("listing");
        let listed = |key: &str| listing.contains(&format!("<Key>media/{key}</Key>"));
        assert!(!listed(&orphan), "the orphan was deleted: {listing}");
        assert!(
            listed("notes/README.txt"),
            "what is not ours stays: {listing}"
        );
    }

    #[tokio::test]
    async fn a_host_whose_clock_runs_hours_ahead_takes_nothing_over_early_and_keeps_the_deadline() {
        require_postgres();
        let faketime = crate::support::process::faketime_library();
        let llm = FakeLlm::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
        let on = |name: &str, extra: &[(&str, &str)]| {
            let mut settings = vec![("INSTANCE_NAME", name), ("INSTANCE_TIMEOUT_SECS", "3")];
            settings.extend_from_slice(extra);
            vars(&database.url, dir.path(), &llm, &settings)
        };
        let mut a = ServerProcess::start(dir.path(), &on("web-a", &[]));
        let (alice, companion) = alice_with_companion(&a).await;
        let (url, _, _hold) = reply_in_progress(&llm, &alice, &companion).await;

        // b's host clock is two hours ahead (an NTP step, a resumed VM): by that clock a's lease and
        // heartbeat lapsed long ago, and the run's deadline (five minutes) has passed.
        let b = ServerProcess::start(
            dir.path(),
            &on(
                "web-b",
                &[
                    ("LD_PRELOAD", faketime),
                    ("FAKETIME", "+2h"),
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                ],
            ),
        );
        b.ready().await;
        let date_of = |server: &ServerProcess| {
            let url = server.url("/api/live");
            async move {
                let response = reqwest::get(url).await.expect("live");
                let date = response.headers()["date"].to_str().unwrap().to_owned();
                let format = time::macros::format_description!(
                    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
                );
                time::PrimitiveDateTime::parse(&date, format).expect("an HTTP date")
            }
        };
        let ahead = date_of(&b).await - date_of(&a).await;
        assert!(
            ahead > time::Duration::hours(1),
            "the preload moved b's clock: {ahead}"
        );

        // b sweeps for runs to take over every second; wait (by the database's clock) until it has been
        // alive for longer than INSTANCE_TIMEOUT_SECS + 2 s.
        let admin = sqlx::PgPool::connect(&database.url).await.expect("connect");
        let b_has_swept = wait_until(std::time::Duration::from_secs(20), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT clock_timestamp() - started_at > interval '5 seconds' FROM instances \
                 WHERE name = 'web-b'",
            )
            .fetch_optional(&admin)
            .await
            .expect("query")
            .unwrap_or(false)
        })
        .await;
        assert!(b_has_swept, "b registered and lived through several sweeps");
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT i.name FROM chat_runs r JOIN instances i ON i.id = r.lease_owner \
             WHERE r.status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .fetch_optional(&admin)
        .await
        .expect("query");
        assert_eq!(holder.as_deref(), Some("web-a"), "a still holds the reply");
        assert_eq!(llm.reply_requests().len(), 1, "b never started it");

        // When a dies, b takes the reply over and finishes it: the deadline is the database's too.
        a.kill_hard();
        let on_b = alice.on(b.url(""));
        let events = read_all(&on_b, &url).await;
        assert_never_told_elsewhere(&events);
        let done = last(&events, "done").unwrap_or_else(|| panic!("finished on b: {events:?}"));
        assert_eq!(done.data["content"], "Hello, wörld!");
        let messages = conversation(&on_b, &companion).await;
        assert_eq!(messages.len(), 2, "exactly one reply: {messages:?}");
    }
}
