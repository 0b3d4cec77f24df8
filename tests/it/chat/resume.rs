//! The reply is never lost: exact resume after a dropped connection, and after a server restart.

use reqwest::Method;

use super::{conversation, send, setup};
use crate::on_both_backends;
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::sse::{last, last_token_id, read, read_all, text_of};
use crate::support::{Backend, TestApp, test_config, wait_until};

async fn a_dropped_connection_resumes_exactly_where_it_stopped(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Über", " die ", "Brücke"]),
        gate: hold.clone(),
        after: pieces(&[" gehen", " wir", "."]),
    });
    let (_, started) = send(&alice, &companion, "Wohin?").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();

    // Read two tokens, then hang up.
    let first = read(&alice, &url, None, |events| {
        events.iter().filter(|e| e.event == "token").count() >= 2
    })
    .await;
    let offset = last_token_id(&first);
    hold.add_permits(1);
    let rest = read(&alice, &url, Some(&offset), |_| false).await;
    assert!(
        rest.iter().all(|e| e.event != "reset"),
        "a valid offset resumes without reset: {rest:?}"
    );
    let joined = format!("{}{}", text_of(&first), text_of(&rest));
    let stored = last(&rest, "done").unwrap().data["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(joined, stored, "byte for byte");
    assert_eq!(stored, "Über die Brücke gehen wir.");

    // Garbage, beyond the end, inside a character: a reset and the whole text, never an error loop.
    // Byte 1 lies inside the two bytes of "Ü".
    for bad in ["garbage", "100000", "1"] {
        let replay = read(&alice, &url, Some(bad), |_| false).await;
        assert_eq!(
            replay
                .iter()
                .find(|e| e.event == "reset" || e.event == "token")
                .unwrap()
                .event,
            "reset",
            "{bad}"
        );
        assert_eq!(text_of(&replay), stored, "{bad}");
        assert!(last(&replay, "done").is_some());
    }
    let query_resume = read(
        &alice,
        &format!("{url}?after={}", "Über".len()),
        None,
        |_| false,
    )
    .await;
    assert_eq!(text_of(&query_resume), " die Brücke gehen wir.");
}

async fn a_run_survives_a_restart_of_the_server(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["half", " a"]),
        gate: hold.clone(),
        after: pieces(&[" reply"]),
    });
    let (_, started) = send(&alice, &companion, "Tell me a story").await;
    let url = started["stream_url"].as_str().unwrap().to_owned();
    // Wait until the partial reply has been persisted, then stop the server mid-reply.
    let first = read(&alice, &url, None, |events| text_of(events) == "half a").await;
    assert_eq!(text_of(&first), "half a");
    let db = app.db.clone();
    let run_id = uuid::Uuid::parse_str(started["run_id"].as_str().unwrap()).unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(5), || async {
            companion_hub::chat::store::find_run(&db, run_id)
                .await
                .unwrap()
                .is_some_and(|run| run.partial_text == "half a")
        })
        .await,
        "the partial reply is persisted while it grows"
    );
    let session = alice.session_cookie().unwrap();
    let (dir, database) = app.stop_keeping_data().await;

    // The new instance answers the whole message again (the fake's next stream is the default reply).
    let env = llm.env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = test_config(dir.path(), &database.url, &vars);
    let restarted = TestApp::serve(dir, database, config).await;
    let again = restarted.visitor();
    again.set_session_cookie(&session);
    let events = read_all(&again, &url).await;
    let done = last(&events, "done").expect("the run completed after the restart");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert_eq!(text_of(&events), "Hello, wörld!");
    let messages = conversation(&again, &companion).await;
    assert_eq!(
        messages.len(),
        2,
        "one user message, one reply: {messages:?}"
    );
    let (_, run_page) = again
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    assert_eq!(run_page["messages"].as_array().unwrap().len(), 2);
    hold.add_permits(1);
}

on_both_backends!(
    a_dropped_connection_resumes_exactly_where_it_stopped,
    a_run_survives_a_restart_of_the_server,
);
