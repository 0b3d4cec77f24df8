//! The executor's steps against a real SQLite database, without a model: what a resumed run does not do
//! again, that a reply is stored once, how each ending is recorded and announced, and what the user is told
//! for each kind of model trouble. The streaming itself (cut streams, context refusals) is exercised against
//! a fake model server in `tests/it/chat`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::*;
use crate::chat::store::{MessageRow, NewRun};
use crate::config::StorageConfig;
use crate::db::Timestamp;
use crate::media::MediaStorage;
use crate::providers::llm::{ContextSizes, Finish, LlmError};

struct Fixture {
    db: Db,
    _dir: tempfile::TempDir,
    user: Uuid,
    companion: Uuid,
    hub: Arc<StreamHub>,
    executor: ChatExecutor,
}

async fn fixture() -> Fixture {
    let (db, dir, user, _) = crate::db::test_database().await;
    // A companion with a real profile (the bare test row's empty one cannot be read as a profile).
    let companion = crate::companions::store::create(
        &db,
        user,
        &crate::companions::profile::Profile::template(),
    )
    .await
    .expect("companion")
    .id;
    let media = MediaStorage::open(&StorageConfig::Local(dir.path().join("media"))).expect("media");
    let settings = crate::Config::from_vars(Vec::<(String, String)>::new())
        .expect("defaults")
        .images;
    let imaging = Imaging::new(db.clone(), media, None, settings);
    let hub = Arc::new(StreamHub::new());
    let executor = ChatExecutor::new(
        db.clone(),
        None,
        imaging,
        hub.clone(),
        crate::engine::Instance::unregistered("unit-instance", std::time::Duration::from_secs(10)),
    );
    Fixture {
        db,
        _dir: dir,
        user,
        companion,
        hub,
        executor,
    }
}

impl Fixture {
    /// `run` as an instance that then crashed claimed it: its writes before the crash use this claim, and
    /// the executor under test (whose instance is another) takes the run over.
    async fn claimed_before_a_crash(&self, run: &RunRow) -> (RunRow, store::Lease<'static>) {
        let now = crate::db::Timestamp::now();
        let run = store::claim(
            &self.db,
            run.id,
            "crashed-instance",
            now + Duration::from_secs(30),
            now,
            now,
        )
        .await
        .expect("claim")
        .expect("a free run");
        let lease = store::Lease {
            owner: "crashed-instance",
            token: run.attempts,
        };
        (run, lease)
    }

    /// `run` claimed by the executor under test, as its engine would before the steps.
    async fn claimed_here(&self, run: &RunRow) -> RunRow {
        let now = crate::db::Timestamp::now();
        store::claim(
            &self.db,
            run.id,
            "unit-instance",
            now + Duration::from_secs(30),
            now,
            now,
        )
        .await
        .expect("claim")
        .expect("a free run")
    }

    async fn run(&self, deadline: Duration) -> RunRow {
        store::start_run(
            &self.db,
            &NewRun {
                companion: self.companion,
                user: self.user,
                new_message: Some("How was your day?"),
                existing_message: None,
                replaces: None,
                client_request_id: None,
                generate_image: false,
                correlation_id: "unit-correlation",
                deadline: Timestamp::now() + deadline,
                previous_attempts: 0,
            },
        )
        .await
        .expect("the run starts")
    }

    async fn reload(&self, run: &RunRow) -> RunRow {
        store::find_run(&self.db, run.id)
            .await
            .expect("query")
            .expect("the run exists")
    }

    async fn messages(&self) -> Vec<MessageRow> {
        store::messages(&self.db, self.companion, None, 10)
            .await
            .expect("query")
    }

    /// The events published on the run's channel from now on.
    fn listen(&self, run: &RunRow) -> broadcast::Receiver<RunEvent> {
        self.hub.open(run.id).subscribe().1
    }
}

fn received(receiver: &mut broadcast::Receiver<RunEvent>) -> Vec<RunEvent> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

fn error_code(event: &RunEvent) -> Option<&str> {
    match event {
        RunEvent::Error { code, .. } => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn without_a_model_a_run_fails_retryably_stores_no_reply_and_says_so() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let mut events = fixture.listen(&run);
    fixture
        .executor
        .execute(run.id, CancellationToken::new())
        .await;

    let ended = fixture.reload(&run).await;
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.error_code.as_deref(), Some("llm_not_configured"));
    assert!(ended.retryable, "configuring a model and retrying helps");
    assert_eq!(fixture.messages().await.len(), 1, "only the user's message");
    let events = received(&mut events);
    assert_eq!(
        events.last().and_then(error_code),
        Some("llm_not_configured"),
        "subscribers learn why: {events:?}"
    );
    assert!(
        fixture.hub.get(run.id).is_none(),
        "the channel is closed after the run"
    );
}

#[tokio::test]
async fn a_run_past_its_deadline_fails_with_deadline_exceeded() {
    // A model that accepts the connection and never answers: only the deadline can end the run.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = silent.local_addr().expect("address");
    let config = crate::Config::from_vars([
        ("LLM_BASE_URL", format!("http://{address}/v1")),
        ("LLM_MODEL", "silent".to_owned()),
    ])
    .expect("config");
    let llm = LlmClient::new(
        reqwest::Client::new(),
        config.llm.as_ref().expect("a model is configured"),
    );
    let mut fixture = fixture().await;
    fixture.executor.llm = Some(llm);
    let run = fixture.run(Duration::from_secs(1)).await;
    fixture
        .executor
        .execute(run.id, CancellationToken::new())
        .await;
    let ended = fixture.reload(&run).await;
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.error_code.as_deref(), Some("deadline_exceeded"));
    assert!(ended.retryable);
    drop(silent);
}

#[tokio::test]
async fn a_run_that_already_ended_is_not_executed_again_and_a_waiting_subscriber_gets_its_end() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let (run, lease) = fixture.claimed_before_a_crash(&run).await;
    store::fail(
        &fixture.db,
        &run,
        lease,
        "",
        "llm_rejected",
        "Refused.",
        false,
    )
    .await
    .expect("the run fails");
    let mut events = fixture.listen(&run);
    fixture
        .executor
        .execute(run.id, CancellationToken::new())
        .await;
    let events = received(&mut events);
    assert_eq!(
        events.iter().filter_map(error_code).collect::<Vec<_>>(),
        ["llm_rejected"],
        "the stored ending is replayed, nothing else happens: {events:?}"
    );
    assert_eq!(fixture.reload(&run).await.status, RunStatus::Failed);
}

#[tokio::test]
async fn a_subscriber_whose_channel_opened_as_the_run_ended_gets_the_whole_reply_then_the_end() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let run = fixture.claimed_here(&run).await;
    let reply = Reply {
        text: "ABCD".into(),
        finish: Some(Finish::Stop),
    };
    fixture
        .executor
        .finalize_step(&run, &reply, None)
        .await
        .expect("finalize")
        .expect("the reply is stored");
    // The executing channel is gone; a subscriber that read the run as active a moment before opens a fresh
    // one and starts the engine, which finds the run finished.
    fixture.hub.close(run.id);
    let mut events = fixture.listen(&run);
    fixture
        .executor
        .execute(run.id, CancellationToken::new())
        .await;
    let events = received(&mut events);
    let text: String = events
        .iter()
        .filter_map(|event| match event {
            RunEvent::Token { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "ABCD", "the reply comes before the end: {events:?}");
    assert!(
        matches!(events.last(), Some(RunEvent::Done { content, .. }) if content == "ABCD"),
        "then the end: {events:?}"
    );
    assert!(fixture.hub.get(run.id).is_none(), "and the channel closes");
}

/// The stream's side of the same window: a subscriber that had the first 5 bytes read the run as unfinished
/// (its whole reply saved, being analysed), then the run ended and its channel closed before the subscriber
/// looked for it. It resumes at its offset, without starting over (a CI run saw the reset and the whole
/// reply again when the fresh channel was opened empty).
#[tokio::test]
async fn a_subscriber_resuming_on_a_fresh_channel_as_the_run_ended_continues_exactly() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let run = fixture.claimed_here(&run).await;
    let analyzing = store::Progress {
        status: RunStatus::Analyzing,
        step: "Noticing…",
        percent: 80,
    };
    let lease = fixture.executor.lease(&run);
    assert!(
        store::save_reply(
            &fixture.db,
            run.id,
            lease,
            "Über den Fluss",
            "stop",
            analyzing
        )
        .await
        .expect("save")
    );
    let as_read = fixture.reload(&run).await;
    let reply = Reply {
        text: "Über den Fluss".into(),
        finish: Some(Finish::Stop),
    };
    fixture
        .executor
        .finalize_step(&run, &reply, None)
        .await
        .expect("finalize")
        .expect("the reply is stored");
    fixture.hub.close(run.id);

    let channel = crate::chat::stream::open_seeded(&fixture.hub, &as_read);
    let (snapshot, mut receiver) = channel.subscribe();
    let (start_over, piece) =
        crate::chat::stream::catch_up_plan(&snapshot.text, &snapshot.epoch, Some("5"));
    assert!(!start_over, "the offset lies within the text as read");
    assert_eq!(piece, " den Fluss");
    fixture
        .executor
        .execute(run.id, CancellationToken::new())
        .await;
    let events = received(&mut receiver);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, RunEvent::Token { .. } | RunEvent::Reset { .. })),
        "nothing is sent twice: {events:?}"
    );
    assert!(
        matches!(events.last(), Some(RunEvent::Done { content, .. }) if content == "Über den Fluss"),
        "the end follows: {events:?}"
    );
}

#[tokio::test]
async fn a_reply_complete_before_a_crash_is_taken_as_it_was_without_a_model() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let analyzing = store::Progress {
        status: RunStatus::Analyzing,
        step: "Noticing…",
        percent: 80,
    };
    let (run, lease) = fixture.claimed_before_a_crash(&run).await;
    let saved = store::save_reply(
        &fixture.db,
        run.id,
        lease,
        "It was *long*.",
        "length",
        analyzing,
    )
    .await
    .expect("save");
    assert!(saved);
    let run = fixture.reload(&run).await;
    assert_eq!(run.status, RunStatus::Analyzing, "recorded with the reply");
    let turn = fixture.executor.turn(&run).await.expect("the turn");

    let reply = fixture
        .executor
        .respond_step(&run, &turn, &CancellationToken::new())
        .await
        .expect("no model is needed to resume");
    assert_eq!(
        reply,
        Reply {
            text: "It was *long*.".into(),
            finish: Some(Finish::Length),
        }
    );
    assert_eq!(
        fixture.hub.open(run.id).text(),
        "It was *long*.",
        "late subscribers catch up from the stored text"
    );
}

#[tokio::test]
async fn an_analysis_already_applied_is_not_applied_twice() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let state = serde_json::json!({"location": "the harbour"});
    let (run, lease) = fixture.claimed_before_a_crash(&run).await;
    store::save_state_after(&fixture.db, run.id, lease, &state)
        .await
        .expect("save");
    store::set_progress(
        &fixture.db,
        run.id,
        lease,
        RunStatus::Imaging,
        "Picturing…",
        85,
    )
    .await
    .expect("progress");
    let run = fixture.reload(&run).await;
    let turn = fixture.executor.turn(&run).await.expect("the turn");
    let after = fixture
        .executor
        .analyze_step(&run, &turn, "We walked to the harbour.")
        .await
        .expect("the step completes");
    assert_eq!(after, Some(state), "the recorded state, not a new analysis");
}

#[tokio::test]
async fn finalize_stores_the_reply_exactly_once_and_announces_it() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let run = fixture.claimed_here(&run).await;
    let mut events = fixture.listen(&run);
    let reply = Reply {
        text: "A **good** one.".into(),
        finish: Some(Finish::Stop),
    };
    let scene = serde_json::json!({"location": "the harbour"});
    let stored = fixture
        .executor
        .finalize_step(&run, &reply, Some(&scene))
        .await
        .expect("finalize")
        .expect("the reply is stored");
    let again = fixture
        .executor
        .finalize_step(&run, &reply, None)
        .await
        .expect("finalize again");
    assert_eq!(again, None, "a second finalize stores nothing");

    let messages = fixture.messages().await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].id, stored);
    assert_eq!(messages[0].content, "A **good** one.");
    assert_eq!(messages[0].finish_reason.as_deref(), Some("stop"));
    let ended = fixture.reload(&run).await;
    assert_eq!(ended.status, RunStatus::Completed);
    assert_eq!(ended.assistant_message_id, Some(stored));
    assert_eq!(ended.state_after.map(|state| state.0), Some(scene));

    let dones: Vec<RunEvent> = received(&mut events)
        .into_iter()
        .filter(|event| matches!(event, RunEvent::Done { .. }))
        .collect();
    assert_eq!(dones.len(), 2, "the second finalize replays the stored end");
    assert_eq!(
        dones[0], dones[1],
        "the announced end (built from the reply) is the one replayed from the database"
    );
    let RunEvent::Done {
        message_id,
        html,
        finish_reason,
        ..
    } = &dones[0]
    else {
        unreachable!("filtered above")
    };
    assert_eq!(*message_id, stored);
    assert_eq!(finish_reason.as_deref(), Some("stop"));
    assert!(
        html.contains("<strong>good</strong>"),
        "the done event carries the rendered reply: {html}"
    );
}

#[tokio::test]
async fn stop_keeps_what_was_written_as_the_reply_and_without_text_says_stopped() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let run = fixture.claimed_here(&run).await;
    let channel = fixture.hub.open(run.id);
    channel.push_text("I was about to");
    let mut events = fixture.listen(&run);
    fixture.executor.end_cancelled(&run, &channel).await;
    let ended = fixture.reload(&run).await;
    assert_eq!(ended.status, RunStatus::Cancelled);
    let kept = ended.assistant_message_id.expect("the text is kept");
    assert_eq!(fixture.messages().await[0].content, "I was about to");
    assert!(matches!(
        received(&mut events).last(),
        Some(RunEvent::Done { message_id, .. }) if *message_id == kept
    ));

    // A second run stopped before it wrote anything.
    let empty = fixture.run(Duration::from_secs(60)).await;
    let empty = fixture.claimed_here(&empty).await;
    let channel = fixture.hub.open(empty.id);
    let mut events = fixture.listen(&empty);
    fixture.executor.end_cancelled(&empty, &channel).await;
    let ended = fixture.reload(&empty).await;
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(ended.assistant_message_id, None);
    assert_eq!(
        received(&mut events).last().and_then(error_code),
        Some("cancelled")
    );
    assert_eq!(
        terminal_event(&ended, &fixture.db)
            .await
            .as_ref()
            .and_then(error_code),
        Some("cancelled"),
        "a late subscriber gets the same end"
    );
}

#[tokio::test]
async fn a_failure_keeps_the_shown_text_as_unfinished_not_as_a_reply() {
    let fixture = fixture().await;
    let run = fixture.run(Duration::from_secs(60)).await;
    let run = fixture.claimed_here(&run).await;
    let channel = fixture.hub.open(run.id);
    channel.push_text("Half a rep");
    fixture
        .executor
        .end_failed(&run, &channel, "llm_stream_broken", "Cut.", true)
        .await;
    let ended = fixture.reload(&run).await;
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.partial_text, "Half a rep");
    assert_eq!(ended.assistant_message_id, None);
    assert_eq!(fixture.messages().await.len(), 1, "no reply was stored");
    match terminal_event(&ended, &fixture.db).await {
        Some(RunEvent::Error {
            code,
            message,
            retryable,
            correlation_id,
        }) => {
            assert_eq!(
                (code.as_str(), message.as_str(), retryable),
                ("llm_stream_broken", "Cut.", true)
            );
            assert_eq!(correlation_id, "unit-correlation");
        }
        other => panic!("a failed run replays its error: {other:?}"),
    }
    assert!(
        terminal_event(&fixture.run_after(&run).await, &fixture.db)
            .await
            .is_none(),
        "an unfinished run has no end to replay"
    );
}

impl Fixture {
    /// A new, unfinished run after `previous` ended.
    async fn run_after(&self, previous: &RunRow) -> RunRow {
        assert!(!self.reload(previous).await.is_active());
        self.run(Duration::from_secs(60)).await
    }
}

#[test]
fn model_trouble_is_told_with_whether_retry_helps() {
    let cases = [
        (
            LlmError::ContextTooLong {
                sizes: ContextSizes::default(),
                detail: String::new(),
            },
            "llm_context_exceeded",
            false,
        ),
        (
            LlmError::Rejected {
                status: 401,
                detail: "bad key sk-secret".into(),
            },
            "llm_rejected",
            false,
        ),
        (
            LlmError::Unavailable {
                attempts: 3,
                last: "connection refused".into(),
            },
            "llm_unavailable",
            true,
        ),
        (
            LlmError::Malformed("not json".into()),
            "llm_malformed",
            true,
        ),
    ];
    for (error, expected_code, expected_retryable) in cases {
        match StepError::from(error) {
            StepError::Failed {
                code,
                message,
                retryable,
            } => {
                assert_eq!((code, retryable), (expected_code, expected_retryable));
                assert!(
                    !message.contains("sk-secret") && !message.contains("connection refused"),
                    "the provider's words stay in the log: {message}"
                );
            }
            StepError::Cancelled => panic!("a model error is not a stop"),
            StepError::NotHeld => panic!("a model error does not lose the run"),
        }
    }
}
