//! Chat runs on Temporal, with real processes of our binary on one PostgreSQL and a real Temporal dev
//! server: web instances without workers and a separate worker that dies mid-reply, Stop reaching the model's
//! stream through workflow cancellation, a failing step ending the workflow failed with its error shown,
//! readiness while Temporal is away, one workflow per run however often it is started, and the replay of
//! recorded histories against the current workflow code.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use temporalio_client::{WorkflowCountOptions, WorkflowExecutionStatus, WorkflowHistory};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use tokio::sync::Semaphore;

use companion_hub::chat::temporal::workflow::ChatRunWorkflow;
use companion_hub::chat::temporal::{TemporalClient, TemporalEngine};
use companion_hub::config::Config;

use crate::chat::{conversation, send};
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::process::ServerProcess;
use crate::support::sse::{SseEvent, last, read, read_all, text_of};
use crate::support::temporal::{
    DevServer, connect, free_port, history, require_temporal, status, unique_queue,
};
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestDatabase, counter, require_postgres, wait_until};

/// A recorded history of a completed run (respond with a retry after its worker died, analyze, finalize):
/// the workflow code must go on replaying what older workers recorded.
const RECORDED_HISTORY: &[u8] = include_bytes!("../fixtures/temporal_chat_run_history.json");

/// The settings of every process of a test: its database, data folder, model, Temporal and `extra`.
fn vars(
    database_url: &str,
    dir: &Path,
    llm: &FakeLlm,
    temporal: &str,
    queue: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("DATA_DIR".to_owned(), dir.display().to_string()),
        ("WORKFLOW_ENGINE".to_owned(), "temporal".to_owned()),
        ("TEMPORAL_ADDRESS".to_owned(), temporal.to_owned()),
        ("TEMPORAL_TASK_QUEUE".to_owned(), queue.to_owned()),
        ("TEMPORAL_HEARTBEAT_TIMEOUT_SECS".to_owned(), "2".to_owned()),
    ];
    vars.extend(llm.env());
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

async fn alice_with_companion(server: &ServerProcess) -> (Visitor, String) {
    let alice = Visitor::signed_in_at(server.url(""), "alice").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26}))
        .await;
    (alice, companion["id"].as_str().expect("id").to_owned())
}

/// Sends a message whose reply the model holds after "half a" until the gate opens; the run id, the stream
/// URL and the gate.
async fn held_reply(
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
    (
        started["run_id"].as_str().expect("run_id").to_owned(),
        started["stream_url"]
            .as_str()
            .expect("stream_url")
            .to_owned(),
        hold,
    )
}

fn assert_never_told_elsewhere(events: &[SseEvent]) {
    assert!(
        events.iter().all(|e| e.data["code"] != "run_elsewhere"),
        "the client is not sent away: {events:?}"
    );
}

/// How many workflows Temporal knows with the run's id (its visibility store catches up a moment late).
async fn workflows_of(temporal: &str, run: &str) -> usize {
    let client = connect(temporal).await.expect("Temporal answers");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted = client
            .count_workflows(
                format!("WorkflowId = '{run}'"),
                WorkflowCountOptions::default(),
            )
            .await;
        match counted {
            Ok(found) if found.count() > 0 => return found.count(),
            _ if Instant::now() > deadline => return 0,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether the workflow of `run` reaches `expected` within 10 s (a run's last step ends it a moment after
/// the run is recorded as ended).
async fn ends_as(
    client: &temporalio_client::Client,
    run: &str,
    expected: WorkflowExecutionStatus,
) -> bool {
    wait_until(Duration::from_secs(10), || async {
        status(client, run).await == expected
    })
    .await
}

/// How many Stops `server` ended itself because no worker heard them in time.
async fn unheard_stops(server: &ServerProcess) -> f64 {
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    counter(&metrics, "temporal_stops_unheard_total")
}

/// Replays `history` against the current workflow code.
async fn replay(history: WorkflowHistory) {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<ChatRunWorkflow>()
        .expect("the workflow registers")
        .build();
    WorkflowReplayer::new(options)
        .expect("a replayer")
        .replay_workflow(history)
        .await
        .expect("the recorded history replays against this workflow code");
}

#[tokio::test]
async fn a_worker_killed_mid_reply_is_replaced_and_the_client_on_another_instance_gets_the_whole_reply()
 {
    require_postgres();
    let temporal = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let queue = unique_queue();
    let on = |name: &str| {
        vars(
            &database.url,
            dir.path(),
            &llm,
            &temporal,
            &queue,
            &[("INSTANCE_NAME", name), ("WORKER_IN_PROCESS", "false")],
        )
    };
    let a = ServerProcess::start(dir.path(), &on("web-a"));
    let b = ServerProcess::start(dir.path(), &on("web-b"));
    let mut worker = ServerProcess::start_worker(dir.path(), &on("worker-1"));
    let (alice, companion) = alice_with_companion(&a).await;

    // Sent on a, streamed on b, written by the worker.
    let (run, url, _hold) = held_reply(&llm, &alice, &companion).await;
    let on_b = alice.on(b.url(""));
    let shown = read(&on_b, &url, None, |events| text_of(events) == "half a").await;
    assert_never_told_elsewhere(&shown);
    assert_eq!(text_of(&shown), "half a", "b shows what the worker wrote");

    let killed = Instant::now();
    worker.kill_hard();
    // The replacement serves its own health and metrics.
    let worker_address = format!("127.0.0.1:{}", free_port());
    let mut replacement_vars = on("worker-2");
    replacement_vars.push(("WORKER_LISTEN_ADDR".to_owned(), worker_address.clone()));
    let _replacement = ServerProcess::start_worker(dir.path(), &replacement_vars);
    // The client goes on reading on b: the reply is taken back and written again by the new worker.
    let events = read_all(&on_b, &url).await;
    let recovered = killed.elapsed();
    assert_never_told_elsewhere(&events);
    assert!(
        events.iter().any(|e| e.event == "reset"),
        "the reply is written again: {events:?}"
    );
    let done = last(&events, "done").expect("the reply ends");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert_eq!(
        text_of(&events),
        "Hello, wörld!",
        "what the client shows is what was stored"
    );
    eprintln!(
        "after kill -9 of the worker, the client had the whole retried reply in {recovered:?} \
         (TEMPORAL_HEARTBEAT_TIMEOUT_SECS=2, a new worker started at once)"
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

    let client = connect(&temporal).await.expect("Temporal answers");
    assert!(ends_as(&client, &run, WorkflowExecutionStatus::Completed).await);
    assert_eq!(workflows_of(&temporal, &run).await, 1, "one workflow");

    // Started again (a retried send, a reconnecting client, the sweeper): no second workflow, no second reply.
    let config = Config::from_vars(on("starter")).unwrap_or_else(|problems| panic!("{problems}"));
    let settings = config.workflow_engine.temporal().expect("temporal");
    let engine = TemporalEngine::new(
        TemporalClient::new(settings, "test-starter"),
        settings,
        config.run_deadline,
    );
    let run_id = uuid::Uuid::parse_str(&run).expect("a run id");
    engine
        .start_workflow(run_id)
        .await
        .expect("a repeated start is accepted");
    assert_eq!(workflows_of(&temporal, &run).await, 1, "still one workflow");
    assert_eq!(conversation(&on_b, &companion).await.len(), 2);

    // Its history (with the retried step) replays against the workflow code.
    let recorded = history(&client, &run).to_json().await.expect("history");
    if let Ok(path) = std::env::var("RECORD_TEMPORAL_HISTORY") {
        std::fs::write(path, &recorded).expect("write the history");
    }
    replay(WorkflowHistory::from_json(&recorded).expect("a history")).await;
}

#[tokio::test]
async fn a_history_recorded_by_an_earlier_worker_replays_against_the_current_workflow() {
    replay(WorkflowHistory::from_json(RECORDED_HISTORY).expect("the fixture is a history")).await;
}

#[tokio::test]
async fn stop_during_the_reply_cancels_the_workflow_and_ends_the_model_request() {
    require_postgres();
    let temporal = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let queue = unique_queue();
    let vars = vars(&database.url, dir.path(), &llm, &temporal, &queue, &[]);
    // One instance with its worker in-process (the default).
    let web = ServerProcess::start(dir.path(), &vars);
    let (alice, companion) = alice_with_companion(&web).await;
    let (run, url, _hold) = held_reply(&llm, &alice, &companion).await;
    read(&alice, &url, None, |events| text_of(events) == "half a").await;

    let (status_code, stopped) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert!(status_code.is_success(), "{status_code}: {stopped}");
    let events = read_all(&alice, &url).await;
    let end = events.last().expect("the stream ends");
    assert!(end.is_terminal(), "{events:?}");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            llm.abandoned_streams() == 1
        })
        .await,
        "the model's stream was dropped"
    );
    let client = connect(&temporal).await.expect("Temporal answers");
    assert!(
        ends_as(&client, &run, WorkflowExecutionStatus::Canceled).await,
        "the workflow is cancelled"
    );
    assert_eq!(
        unheard_stops(&web).await,
        0.0,
        "the worker heard the Stop (the instance did not have to end the run itself)"
    );
    let messages = conversation(&alice, &companion).await;
    assert_eq!(
        messages,
        [
            ("user".to_owned(), "Tell me a story".to_owned()),
            ("assistant".to_owned(), "half a".to_owned()),
        ],
        "what was written before Stop is kept"
    );
}

#[tokio::test]
async fn a_step_that_keeps_failing_ends_the_run_and_the_workflow_failed_with_its_error() {
    require_postgres();
    let temporal = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let queue = unique_queue();
    let vars = vars(&database.url, dir.path(), &llm, &temporal, &queue, &[]);
    let web = ServerProcess::start(dir.path(), &vars);
    let (alice, companion) = alice_with_companion(&web).await;
    // Every call fails: the step's own retries, then Temporal's attempts of a step that failed for good.
    for _ in 0..30 {
        llm.stream(Streamed::Status(503, None));
    }
    let (status_code, started) = send(&alice, &companion, "Hello?").await;
    assert!(status_code.is_success(), "{status_code}: {started}");
    let run = started["run_id"].as_str().expect("run_id").to_owned();
    let events = read_all(&alice, started["stream_url"].as_str().expect("url")).await;
    let error = last(&events, "error").expect("the run fails");
    assert_eq!(error.data["code"], "llm_unavailable", "{events:?}");
    assert_eq!(error.data["retryable"], true);
    let client = connect(&temporal).await.expect("Temporal answers");
    assert!(
        ends_as(&client, &run, WorkflowExecutionStatus::Failed).await,
        "the workflow ends failed"
    );
    // The stream said it; a later visitor sees the same ending, read back from the run.
    let again = read_all(&alice, started["stream_url"].as_str().expect("url")).await;
    assert_eq!(
        last(&again, "error").expect("the ending is kept").data["code"],
        "llm_unavailable"
    );
}

#[tokio::test]
async fn while_temporal_is_away_readiness_says_so_and_a_run_ends_with_retry_by_its_deadline() {
    require_postgres();
    let _ = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let port = free_port();
    let temporal = format!("http://127.0.0.1:{port}");
    let vars = vars(
        &database.url,
        dir.path(),
        &llm,
        &temporal,
        &unique_queue(),
        &[("RUN_DEADLINE_SECS", "10")],
    );
    // Nothing listens on Temporal's port yet.
    let web = ServerProcess::start(dir.path(), &vars);
    let ready = reqwest::get(web.url("/api/ready")).await.expect("ready");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["check"], "workflow_engine", "{body}");
    assert_eq!(body["reason"], "workflow_engine_unreachable", "{body}");

    // A message sent meanwhile waits for Temporal; when it does not come back in time, the run ends with
    // Retry by its deadline (never "writing" forever).
    let (alice, companion) = alice_with_companion(&web).await;
    let (status_code, started) = send(&alice, &companion, "Are you there?").await;
    assert!(status_code.is_success(), "{status_code}: {started}");
    let events = read_all(&alice, started["stream_url"].as_str().expect("url")).await;
    let error = last(&events, "error").expect("the run ends");
    assert_eq!(error.data["code"], "deadline_exceeded", "{events:?}");
    assert_eq!(error.data["retryable"], true);

    // Temporal comes back: ready again, and Retry writes the reply.
    let _server = DevServer::start(port).await;
    web.ready().await;
    let run = started["run_id"].as_str().expect("run_id");
    let (status_code, retried) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
        .await;
    assert!(status_code.is_success(), "{status_code}: {retried}");
    let events = read_all(&alice, retried["stream_url"].as_str().expect("url")).await;
    assert_eq!(
        last(&events, "done").expect("the retried reply ends").data["content"],
        "Hello, wörld!"
    );
    let health: serde_json::Value = reqwest::get(web.url("/api/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["checks"]["workflow_engine"]["status"], "healthy",
        "{health}"
    );
    let pollers = health["checks"]["workflow_engine"]["detail"]
        .as_str()
        .and_then(|detail| detail.split(' ').next())
        .and_then(|count| count.parse::<usize>().ok());
    assert!(pollers.is_some_and(|count| count >= 1), "{health}");
}

#[tokio::test]
async fn when_temporal_goes_away_mid_reply_the_run_still_ends_with_retry_by_its_deadline() {
    require_postgres();
    let _ = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let port = free_port();
    let server = DevServer::start(port).await;
    let temporal = format!("http://127.0.0.1:{port}");
    let vars = vars(
        &database.url,
        dir.path(),
        &llm,
        &temporal,
        &unique_queue(),
        &[("RUN_DEADLINE_SECS", "10"), ("RUN_LEASE_SECS", "3")],
    );
    let web = ServerProcess::start(dir.path(), &vars);
    web.ready().await;
    let (alice, companion) = alice_with_companion(&web).await;
    let (_, url, hold) = held_reply(&llm, &alice, &companion).await;
    read(&alice, &url, None, |events| text_of(events) == "half a").await;

    drop(server);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            reqwest::get(web.url("/api/ready"))
                .await
                .is_ok_and(|response| response.status() == 503)
        })
        .await,
        "readiness says Temporal is away"
    );
    // The step in progress finishes its reply, but nothing can take the run further: it ends by its deadline
    // with Retry, the text kept as unfinished.
    hold.add_permits(1);
    let events = read_all(&alice, &url).await;
    assert_never_told_elsewhere(&events);
    let error = last(&events, "error").expect("the run ends");
    assert_eq!(error.data["code"], "deadline_exceeded", "{events:?}");
    assert_eq!(error.data["retryable"], true);
    assert_eq!(text_of(&events), "half a reply");
    let messages = conversation(&alice, &companion).await;
    assert_eq!(
        messages,
        [("user".to_owned(), "Tell me a story".to_owned())],
        "no reply is stored"
    );
}

#[tokio::test]
async fn on_sqlite_one_process_serves_and_works_and_the_scene_follows_the_reply() {
    let temporal = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Sqlite, dir.path()).await;
    let queue = unique_queue();
    let web = ServerProcess::start(
        dir.path(),
        &vars(&database.url, dir.path(), &llm, &temporal, &queue, &[]),
    );
    web.ready().await;
    let (alice, companion) = alice_with_companion(&web).await;
    let (status_code, started) = send(&alice, &companion, "Hello there").await;
    assert!(status_code.is_success(), "{status_code}: {started}");
    let events = read_all(&alice, started["stream_url"].as_str().expect("url")).await;
    let done = last(&events, "done").expect("the reply ends");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert_eq!(text_of(&events), "Hello, wörld!");
    assert!(
        events.iter().any(|e| e.event == "state"),
        "the analysis step ran and its scene reached the client: {events:?}"
    );
    let run = started["run_id"].as_str().expect("run_id");
    let client = connect(&temporal).await.expect("Temporal answers");
    // The reply is stored (and announced) by the last step, a moment before the workflow completes.
    assert!(ends_as(&client, run, WorkflowExecutionStatus::Completed).await);
    assert_eq!(conversation(&alice, &companion).await.len(), 2);
}

#[tokio::test]
async fn stop_ends_a_run_that_no_worker_took_without_waiting_for_its_deadline() {
    require_postgres();
    let temporal = require_temporal();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    // No worker polls this queue: the run waits in Temporal.
    let web = ServerProcess::start(
        dir.path(),
        &vars(
            &database.url,
            dir.path(),
            &llm,
            &temporal,
            &unique_queue(),
            &[("WORKER_IN_PROCESS", "false")],
        ),
    );
    let (alice, companion) = alice_with_companion(&web).await;
    let (status_code, started) = send(&alice, &companion, "Anyone?").await;
    assert!(status_code.is_success(), "{status_code}: {started}");
    let run = started["run_id"].as_str().expect("run_id");
    let health: serde_json::Value = reqwest::get(web.url("/api/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["checks"]["workflow_engine"]["status"], "unhealthy",
        "no worker: {health}"
    );

    let stopped_at = Instant::now();
    let (status_code, stopped) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert!(status_code.is_success(), "{status_code}: {stopped}");
    let events = read_all(&alice, started["stream_url"].as_str().expect("url")).await;
    let error = last(&events, "error").expect("the run ends");
    assert_eq!(error.data["code"], "cancelled", "{events:?}");
    eprintln!(
        "a Stop nobody heard ended the run after {:?} (TEMPORAL_HEARTBEAT_TIMEOUT_SECS=2)",
        stopped_at.elapsed()
    );
    assert!(llm.reply_requests().is_empty(), "the model was never asked");
    assert_eq!(unheard_stops(&web).await, 1.0);
}
