//! Provider trouble: retries with backoff, failures with Retry, broken streams, Stop, bad analyses, deadlines.

use reqwest::{Method, StatusCode};

use super::{conversation, send, setup};
use crate::on_both_backends;
use crate::support::Backend;
use crate::support::fake_llm::{Analysed, FakeLlm, Streamed, gate, pieces};
use crate::support::sse::{last, last_token_id, read, read_all, text_of};

async fn a_rate_limited_provider_is_retried_and_the_reply_completes(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::Status(429, Some(0)));
    llm.stream(Streamed::Status(503, Some(0)));
    let (_, started) = send(&alice, &companion, "hi").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    assert_eq!(llm.reply_requests().len(), 3, "two failures, then success");
}

async fn a_failing_provider_fails_the_run_and_retry_reuses_the_message(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    for _ in 0..3 {
        llm.stream(Streamed::Status(500, Some(0)));
    }
    let (_, started) = send(&alice, &companion, "anyone there?").await;
    let run = started["run_id"].as_str().unwrap().to_owned();
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let error = last(&events, "error").expect("an error event");
    assert_eq!(error.data["code"], "llm_unavailable");
    assert_eq!(error.data["retryable"], true);
    assert!(error.data["correlation_id"].as_str().unwrap().len() >= 8);
    let page = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(
        page.contains("id=\"run-error\"") && page.contains("Retry"),
        "the page offers Retry"
    );

    let (status, retried) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_ne!(retried["run_id"], started["run_id"]);
    assert_eq!(retried["user_message_id"], started["user_message_id"]);
    let events = read_all(&alice, retried["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    assert_eq!(
        conversation(&alice, &companion).await,
        vec![
            ("user".to_owned(), "anyone there?".to_owned()),
            ("assistant".to_owned(), "Hello, wörld!".to_owned())
        ],
        "no duplicate user message"
    );
    let (status, _) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an old run cannot be retried again"
    );
    assert!(
        app.metrics()
            .await
            .contains("chat_runs_total{status=\"failed\"}")
    );
}

async fn a_stream_cut_midway_starts_the_reply_again(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::CutAfter(pieces(&["Once", " upon"])));
    let (_, started) = send(&alice, &companion, "story?").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(text_of(&events), "Hello, wörld!");
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    assert_eq!(conversation(&alice, &companion).await.len(), 2);
}

async fn an_offset_from_before_a_restarted_reply_gets_the_new_text_whole(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::PausedThenCut {
        before: pieces(&["Once", " upon"]),
        gate: hold.clone(),
    });
    let (_, started) = send(&alice, &companion, "story?").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    let first = read(&alice, &url, None, |events| text_of(events) == "Once upon").await;
    let offset = last_token_id(&first);
    assert_eq!(offset, "9");
    hold.add_permits(1);
    // Reconnecting with the old offset: the text was restarted, so it comes whole after a reset.
    let rest = read(&alice, &url, Some(&offset), |_| false).await;
    let first_text_event = rest
        .iter()
        .find(|e| e.event == "reset" || e.event == "token")
        .unwrap();
    assert_eq!(first_text_event.event, "reset", "{rest:?}");
    assert_eq!(text_of(&rest), "Hello, wörld!");
    let done = last(&rest, "done").unwrap();
    assert_eq!(done.data["content"], "Hello, wörld!");
    let later_ids: Vec<&str> = rest
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.id.as_str())
        .collect();
    assert!(
        later_ids.iter().all(|id| id.contains('@')),
        "new version: {later_ids:?}"
    );
}

async fn the_analysis_updates_the_state_as_it_is_now_not_as_it_was(backend: Backend) {
    use companion_hub::db_dispatch;
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Wait"]),
        gate: hold.clone(),
        after: pieces(&["."]),
    });
    llm.analyse(Analysed::Content(r#"{"action": "waving"}"#.into()));
    let (_, started) = send(&alice, &companion, "hi").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    read(&alice, &url, None, |events| text_of(events) == "Wait").await;
    // Meanwhile the companion moved (another path changed the state after the message was sent).
    let moved = serde_json::json!({"outfit": [], "location": "garden", "action": "sitting"});
    db_dispatch!(&app.db, pool => sqlx::query("UPDATE companions SET live_state = $1")
        .bind(sqlx::types::Json(&moved))
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
    hold.add_permits(1);
    let events = read_all(&alice, &url).await;
    assert_eq!(last(&events, "state").unwrap().data["location"], "garden");
    let (_, json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert_eq!(
        json["live_state"]["location"], "garden",
        "the move is not lost"
    );
    assert_eq!(json["live_state"]["action"], "waving");
}

async fn stop_keeps_what_was_written(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["I was", " saying"]),
        gate: hold,
        after: pieces(&[" more"]),
    });
    let (_, started) = send(&alice, &companion, "talk").await;
    let run = started["run_id"].as_str().unwrap().to_owned();
    let url = started["stream_url"].as_str().unwrap().to_owned();
    let first = read(&alice, &url, None, |events| {
        text_of(events) == "I was saying"
    })
    .await;
    assert_eq!(text_of(&first), "I was saying");
    let (status, _) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert!(status.is_success());
    let events = read_all(&alice, &url).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "I was saying"
    );
    assert_eq!(conversation(&alice, &companion).await[1].1, "I was saying");
    let (status, body) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "cancelling twice is harmless");
    assert_eq!(body["status"], "cancelled");
    let (status, _) = send(&alice, &companion, "next").await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

async fn an_unusable_analysis_keeps_the_state(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.analyse(Analysed::Content(
        "I think she is happy? No JSON for you.".into(),
    ));
    let (_, started) = send(&alice, &companion, "hi").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "the run still completes");
    assert!(last(&events, "state").is_none());
    let (_, json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert_eq!(json["live_state"]["location"], "living room");

    llm.analyse(Analysed::Status(500));
    llm.analyse(Analysed::Status(500));
    llm.analyse(Analysed::Status(500));
    let (_, started) = send(&alice, &companion, "again").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some());
    let (_, json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert_eq!(json["live_state"]["location"], "living room");
}

async fn a_run_that_hangs_ends_at_its_deadline(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(
        backend,
        &llm,
        &[("RUN_DEADLINE_SECS", "10"), ("LLM_TIMEOUT_SECS", "60")],
    )
    .await;
    llm.stream(Streamed::Hang);
    let (_, started) = send(&alice, &companion, "hello?").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let error = last(&events, "error").expect("the run ended");
    assert_eq!(error.data["code"], "deadline_exceeded");
    assert_eq!(error.data["retryable"], true);
}

async fn without_a_model_sending_answers_503(backend: Backend) {
    let app = crate::support::TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let companion = alice
        .create_companion(serde_json::json!({"name": "Mira", "age": 26}))
        .await;
    let (status, body) = send(&alice, companion["id"].as_str().unwrap(), "hi").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "llm_not_configured");
}

/// PostgreSQL's server drops every connection of ours while a reply is being written (a restart, a
/// failover): the reply ends anyway — completed, or failed with Retry, which then works — and never hangs.
async fn the_database_dropping_its_connections_mid_reply_loses_nothing() {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(Backend::Postgres, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["half", " a"]),
        gate: hold.clone(),
        after: pieces(&[" reply"]),
    });
    let (_, started) = send(&alice, &companion, "go on").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    let shown = read(&alice, &url, None, |events| text_of(events) == "half a").await;
    let seen = shown.last().unwrap().id.clone();

    let admin = sqlx::PgPool::connect(&app.database.url).await.unwrap();
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!dropped.is_empty(), "the app's connections were dropped");
    hold.add_permits(1);

    let rest = read(&alice, &url, Some(&seen), |_| false).await;
    let ending = rest.last().expect("an ending");
    match ending.event.as_str() {
        "done" => assert_eq!(
            format!("{}{}", text_of(&shown), text_of(&rest)),
            ending.data["content"].as_str().unwrap(),
            "{rest:?}"
        ),
        "error" => {
            assert_eq!(ending.data["retryable"], true, "{rest:?}");
            let run = started["run_id"].as_str().unwrap();
            let (status, retried) = alice
                .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
            let events = read_all(&alice, retried["stream_url"].as_str().unwrap()).await;
            assert!(last(&events, "done").is_some(), "{events:?}");
        }
        other => panic!("the stream ended without an end ({other}): {rest:?}"),
    }
    let messages = conversation(&alice, &companion).await;
    assert_eq!(messages.len(), 2, "one question, one reply: {messages:?}");
}

mod the_database_dropping_its_connections_mid_reply_loses_nothing {
    #[tokio::test]
    async fn postgres() {
        crate::support::require_postgres();
        super::the_database_dropping_its_connections_mid_reply_loses_nothing().await;
    }
}

/// PostgreSQL refuses every connection of ours from the middle of a reply on: the run fails (at its next
/// write, or at its deadline at the latest) and the stream ends with Retry although the failure cannot be
/// written; once the database is back the ending is recorded, so Retry works at once, not a lease later.
async fn the_database_away_mid_reply_ends_the_stream_with_retry_which_works_once_it_is_back() {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(
        Backend::Postgres,
        &llm,
        &[("RUN_DEADLINE_SECS", "10"), ("LLM_TIMEOUT_SECS", "60")],
    )
    .await;
    // The model writes a little, then never goes on.
    let never = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["half"]),
        gate: never.clone(),
        after: pieces(&[" more"]),
    });
    let (_, started) = send(&alice, &companion, "go on").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    let first_token = std::sync::Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (alice, url, first_token) = (alice.clone(), url.clone(), first_token.clone());
        tokio::spawn(async move {
            read(&alice, &url, None, |events| {
                if text_of(events) == "half" {
                    first_token.notify_one();
                }
                false
            })
            .await
        })
    };
    first_token.notified().await;

    // Away: no new connection is accepted, and the open ones are dropped.
    let name = url::Url::parse(&app.database.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();

    // The stream ends by itself (`read` gives up after 30 s: a hang fails the test).
    let events = reader.await.unwrap();
    let ending = last(&events, "error").unwrap_or_else(|| panic!("an error ending: {events:?}"));
    assert_eq!(ending.data["retryable"], true, "{events:?}");

    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    // Back: the run's ending is written within seconds (the retries back off to 4 s), then Retry starts.
    let run = started["run_id"].as_str().unwrap();
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let retried = loop {
        assert!(
            tokio::time::Instant::now() < give_up,
            "Retry still refused 20 s after the database returned"
        );
        let (status, body) = alice
            .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
            .await;
        match status {
            StatusCode::ACCEPTED => break body,
            StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("retry answered {other}: {body}"),
        }
    };
    let events = read_all(&alice, retried["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    let messages = conversation(&alice, &companion).await;
    assert_eq!(messages.len(), 2, "one question, one reply: {messages:?}");
}

mod the_database_away_mid_reply_ends_the_stream_with_retry_which_works_once_it_is_back {
    #[tokio::test]
    async fn postgres() {
        crate::support::require_postgres();
        super::the_database_away_mid_reply_ends_the_stream_with_retry_which_works_once_it_is_back()
            .await;
    }
}

on_both_backends!(
    a_rate_limited_provider_is_retried_and_the_reply_completes,
    a_failing_provider_fails_the_run_and_retry_reuses_the_message,
    a_stream_cut_midway_starts_the_reply_again,
    an_offset_from_before_a_restarted_reply_gets_the_new_text_whole,
    the_analysis_updates_the_state_as_it_is_now_not_as_it_was,
    stop_keeps_what_was_written,
    an_unusable_analysis_keeps_the_state,
    a_run_that_hangs_ends_at_its_deadline,
    without_a_model_sending_answers_503,
);
