//! A run from send to stored reply: streaming, analysis, the prompt, idempotency, one run at a time.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{conversation, send, setup};
use crate::on_both_backends;
use crate::support::Backend;
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::sse::{last, last_token_id, read, read_all, text_of};

async fn a_run_streams_the_reply_updates_the_state_and_stores_it_once(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    // The model waits after its first token until the subscriber below has seen it, so the reply reaches the
    // subscriber token by token however fast the run is (a late subscriber would get the text in one piece).
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Hello"]),
        gate: hold.clone(),
        after: pieces(&[", wörld!"]),
    });
    let response = alice
        .client
        .post(alice.url(&format!("/api/v1/companions/{companion}/messages")))
        .header("x-csrf-token", alice.csrf_token("/settings").await)
        .header("x-correlation-id", "send-trace-0001")
        .json(&json!({"content": "What are you cooking?", "generate_image": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: serde_json::Value = response.json().await.unwrap();
    let stream_url = started["stream_url"].as_str().unwrap().to_owned();
    assert_eq!(
        stream_url,
        format!("/api/chat/stream/{}", started["run_id"].as_str().unwrap())
    );

    let mut events = read(&alice, &stream_url, None, |events| {
        text_of(events) == "Hello"
    })
    .await;
    hold.add_permits(1);
    let seen = last_token_id(&events);
    events.extend(read(&alice, &stream_url, Some(&seen), |_| false).await);
    assert_eq!(text_of(&events), "Hello, wörld!");
    let tokens: Vec<_> = events.iter().filter(|e| e.event == "token").collect();
    assert!(tokens.len() >= 2, "token by token: {events:?}");
    let last_token = tokens.last().unwrap();
    assert_eq!(
        last_token.id,
        "Hello, wörld!".len().to_string(),
        "ids are byte offsets"
    );
    assert!(
        events
            .iter()
            .any(|e| e.event == "progress" && e.data["status"] == "responding")
    );
    let state = last(&events, "state").expect("a state event");
    assert_eq!(state.data["location"], "kitchen");
    let done = last(&events, "done").expect("done");
    assert_eq!(done.data["content"], "Hello, wörld!");

    assert_eq!(
        conversation(&alice, &companion).await,
        vec![
            ("user".to_owned(), "What are you cooking?".to_owned()),
            ("assistant".to_owned(), "Hello, wörld!".to_owned())
        ]
    );
    let (_, companion_json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert_eq!(companion_json["live_state"]["location"], "kitchen");
    assert_eq!(companion_json["live_state"]["action"], "stirring a pot");
    assert_eq!(companion_json["live_state"]["user_present"], true);
    assert_eq!(
        companion_json["live_state"]["outfit"][0]["description"],
        "red apron"
    );

    // What the model was sent.
    let replies = llm.reply_requests();
    assert_eq!(replies.len(), 1);
    let (headers, body) = &replies[0];
    assert_eq!(headers["authorization"], "Bearer sk-fake-key");
    assert_eq!(headers["x-correlation-id"], "send-trace-0001");
    assert_eq!(body["model"], "fake-model");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("You are Mira")
    );
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("You are talking with alice.")
    );
    let mentions = messages
        .iter()
        .filter(|m| m["content"] == "What are you cooking?")
        .count();
    assert_eq!(mentions, 1, "the user message appears exactly once");
    assert_eq!(messages.last().unwrap()["content"], "What are you cooking?");

    // The finished run replays its text and done.
    let replay = read_all(&alice, &stream_url).await;
    assert_eq!(text_of(&replay), "Hello, wörld!");
    assert!(last(&replay, "done").is_some());
    assert!(last(&replay, "state").is_some());

    // Metrics were recorded.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("chat_runs_total{status=\"completed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("llm_time_to_first_token_seconds"));
    assert!(metrics.contains("llm_tokens_streamed_total"));
}

async fn the_second_message_sees_the_first_exchange_as_history(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let (_, first) = send(&alice, &companion, "Hi Mira").await;
    read_all(&alice, first["stream_url"].as_str().unwrap()).await;
    let (_, second) = send(&alice, &companion, "And now?").await;
    read_all(&alice, second["stream_url"].as_str().unwrap()).await;
    let (_, body) = llm.reply_requests().pop().unwrap();
    let contents: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["Hi Mira", "Hello, wörld!", "And now?"]);
}

async fn a_repeated_send_with_the_same_key_is_the_same_run(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Hi"]),
        gate: hold.clone(),
        after: pieces(&["!"]),
    });
    let body = json!({"content": "Hello?", "generate_image": false, "client_request_id": "req-42"});
    let path = format!("/api/v1/companions/{companion}/messages");
    let (first_status, first) = alice.api(Method::POST, &path, Some(body.clone())).await;
    let (second_status, second) = alice.api(Method::POST, &path, Some(body)).await;
    assert_eq!(first_status, StatusCode::ACCEPTED);
    assert_eq!(second_status, StatusCode::ACCEPTED);
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(first["user_message_id"], second["user_message_id"]);
    hold.add_permits(1);
    read_all(&alice, first["stream_url"].as_str().unwrap()).await;
    let users = conversation(&alice, &companion)
        .await
        .into_iter()
        .filter(|(r, _)| r == "user")
        .count();
    assert_eq!(users, 1, "one user message");
}

async fn a_second_send_while_replying_is_refused(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["One"]),
        gate: hold.clone(),
        after: pieces(&[" two"]),
    });
    let (_, first) = send(&alice, &companion, "first").await;
    let (status, body) = send(&alice, &companion, "second").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "run_active");
    hold.add_permits(1);
    let events = read_all(&alice, first["stream_url"].as_str().unwrap()).await;
    assert_eq!(text_of(&events), "One two");
    assert_eq!(
        conversation(&alice, &companion).await.len(),
        2,
        "the refused message was not stored"
    );
    let (status, _) = send(&alice, &companion, "second").await;
    assert_eq!(status, StatusCode::ACCEPTED, "free again after the reply");
}

async fn two_subscribers_see_the_same_text(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["A", "B"]),
        gate: hold.clone(),
        after: pieces(&["C", "D"]),
    });
    let (_, started) = send(&alice, &companion, "go").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    let (a, b) = {
        let first = read_all(&alice, &url);
        let second = read_all(&alice, &url);
        let release = async {
            hold.add_permits(1);
        };
        let (a, b, ()) = tokio::join!(first, second, release);
        (a, b)
    };
    assert_eq!(text_of(&a), "ABCD");
    assert_eq!(text_of(&b), "ABCD");
}

/// Whether `events` show the reply waiting for a slot.
fn waits_its_turn(events: &[crate::support::sse::SseEvent]) -> bool {
    events
        .iter()
        .any(|e| e.event == "progress" && e.data["step"] == "Waiting for its turn…")
}

async fn with_one_reply_slot_the_next_reply_waits_its_turn_and_can_be_stopped_meanwhile(
    backend: Backend,
) {
    let llm = FakeLlm::start().await;
    let (_app, alice, first) = setup(backend, &llm, &[("MAX_ACTIVE_REPLIES", "1")]).await;
    let mut others = Vec::new();
    for name in ["Juno", "Vera"] {
        let companion = alice
            .create_companion(json!({"name": name, "age": 30}))
            .await;
        others.push(companion["id"].as_str().unwrap().to_owned());
    }
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Hold", " on"]),
        gate: hold.clone(),
        after: pieces(&[" tight."]),
    });
    llm.stream(Streamed::Tokens(pieces(&["My", " turn."])));
    let (_, writing) = send(&alice, &first, "first").await;
    let writing = writing["stream_url"].as_str().unwrap().to_owned();
    read(&alice, &writing, None, |events| {
        text_of(events) == "Hold on"
    })
    .await;

    // The one slot is taken: the next reply says it waits, and has not asked the model.
    let (status, next) = send(&alice, &others[0], "second").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let next = next["stream_url"].as_str().unwrap().to_owned();
    let waiting = read(&alice, &next, None, waits_its_turn).await;
    assert!(waits_its_turn(&waiting), "{waiting:?}");
    assert_eq!(text_of(&waiting), "");
    assert_eq!(
        llm.reply_requests().len(),
        1,
        "only the first asked the model"
    );

    // A waiting reply can be stopped: it ends at once, cancelled, without asking the model.
    let (_, stopped) = send(&alice, &others[1], "third").await;
    let (run, url) = (
        stopped["run_id"].as_str().unwrap().to_owned(),
        stopped["stream_url"].as_str().unwrap().to_owned(),
    );
    read(&alice, &url, None, waits_its_turn).await;
    let (status, _) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert!(status.is_success());
    let ended = read_all(&alice, &url).await;
    assert_eq!(
        last(&ended, "error").expect("the end").data["code"],
        "cancelled"
    );

    // When the first reply is done, the waiting one is written.
    hold.add_permits(1);
    let done = read_all(&alice, &writing).await;
    assert_eq!(
        last(&done, "done").unwrap().data["content"],
        "Hold on tight."
    );
    let done = read_all(&alice, &next).await;
    assert_eq!(last(&done, "done").unwrap().data["content"], "My turn.");
    assert_eq!(llm.reply_requests().len(), 2, "the stopped one never asked");
}

/// A model slow to give its first token keeps its run: the lease is renewed while nothing streams, so for
/// three lease lengths (`RUN_LEASE_SECS=3`) another instance trying all the time never claims the run, and
/// the reply is asked for and stored once.
async fn a_run_waiting_for_a_slow_model_keeps_its_lease(backend: Backend) {
    use companion_hub::chat::store;
    use companion_hub::db::Timestamp;
    use std::time::Duration;
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[("RUN_LEASE_SECS", "3")]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: Vec::new(),
        gate: hold.clone(),
        after: pieces(&["At last."]),
    });
    let (_, started) = send(&alice, &companion, "take your time").await;
    let run: uuid::Uuid = started["run_id"].as_str().unwrap().parse().unwrap();
    assert!(
        crate::support::wait_until(Duration::from_secs(10), || async {
            llm.reply_requests().len() == 1
        })
        .await,
        "the model was asked"
    );
    let watched_until = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < watched_until {
        let now = Timestamp::now();
        let taken = store::claim(
            &app.db,
            run,
            "intruder",
            now + Duration::from_secs(30),
            now,
            now - Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(
            taken.is_none(),
            "the lease lapsed while the model was silent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hold.add_permits(1);
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(last(&events, "done").unwrap().data["content"], "At last.");
    assert_eq!(llm.reply_requests().len(), 1, "asked once");
    assert_eq!(conversation(&alice, &companion).await.len(), 2);
}

/// An execution that lost its run stops at once. Another live instance claims the run in the middle of the
/// reply (as after a pause of this one longer than its lease): within a renewal interval this one hangs up on
/// the model, and it stores nothing and moves nothing; the run stays the other's.
async fn an_execution_that_lost_its_run_stops_at_once(backend: Backend) {
    use companion_hub::db::Timestamp;
    use companion_hub::db_dispatch;
    use std::time::Duration;
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[("RUN_LEASE_SECS", "3")]).await;
    let never = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["half"]),
        gate: never.clone(),
        after: pieces(&[" and more"]),
    });
    let (_, started) = send(&alice, &companion, "go on").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    read(&alice, &url, None, |events| text_of(events) == "half").await;
    let run: uuid::Uuid = started["run_id"].as_str().unwrap().parse().unwrap();

    let now = Timestamp::now();
    let later = now + Duration::from_secs(3600);
    db_dispatch!(&app.db, pool => async {
        sqlx::query(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at) \
             VALUES ('thief', 'thief', 'elsewhere', 1, $1, $2)",
        )
        .bind(now)
        .bind(later)
        .execute(pool)
        .await?;
        sqlx::query(
            "UPDATE chat_runs SET lease_owner = 'thief', attempts = attempts + 1, lease_until = $1 \
             WHERE id = $2",
        )
        .bind(later)
        .bind(run)
        .execute(pool)
        .await
        .map(|_| ())
    }
    .await)
    .unwrap();

    assert!(
        crate::support::wait_until(Duration::from_secs(10), || async {
            llm.abandoned_streams() == 1
        })
        .await,
        "the execution that lost the run hung up on the model"
    );
    let row = companion_hub::chat::store::find_run(&app.db, run)
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.is_active(),
        "nobody ended the other's run: {:?}",
        row.status
    );
    assert!(
        row.partial_text.len() <= "half".len(),
        "{:?}",
        row.partial_text
    );
    assert_eq!(
        conversation(&alice, &companion).await.len(),
        1,
        "no reply stored by the execution that lost the run"
    );
    assert_eq!(llm.reply_requests().len(), 1);
}

on_both_backends!(
    a_run_streams_the_reply_updates_the_state_and_stores_it_once,
    the_second_message_sees_the_first_exchange_as_history,
    a_repeated_send_with_the_same_key_is_the_same_run,
    a_second_send_while_replying_is_refused,
    two_subscribers_see_the_same_text,
    with_one_reply_slot_the_next_reply_waits_its_turn_and_can_be_stopped_meanwhile,
    a_run_waiting_for_a_slow_model_keeps_its_lease,
    an_execution_that_lost_its_run_stops_at_once,
);
