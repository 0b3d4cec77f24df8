//! The local engine: runs execute in-process; unfinished runs whose lease lapsed are picked up again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::RunView;

/// What a run does; the chat module implements it.
pub trait RunExecutor: Send + Sync + 'static {
    /// Takes the run (lease), executes or resumes it to a terminal state, and releases it. Returns early when
    /// `cancel` fires (the executor records the cancellation) or when another instance holds the run.
    fn execute(&self, run: Uuid, cancel: CancellationToken) -> BoxFuture<'static, ()>;
    /// Unfinished runs that nobody holds (no lease, or a lapsed one): candidates to resume.
    fn orphaned(&self) -> BoxFuture<'static, anyhow::Result<Vec<Uuid>>>;
    /// Marks runs this instance holds as free (on shutdown), so another instance can resume them at once.
    fn release_all(&self) -> BoxFuture<'static, ()>;
    /// The run as a subscriber sees it (for following a run executed elsewhere); `None` when it is gone.
    fn view(&self, run: Uuid) -> BoxFuture<'static, anyhow::Result<Option<RunView>>>;
}

/// Executes runs in this process.
pub struct LocalEngine {
    executor: Arc<dyn RunExecutor>,
    running: Mutex<HashMap<Uuid, Running>>,
}

struct Running {
    /// Fired by Stop: the executor records a cancellation.
    cancel: CancellationToken,
    /// Fired by shutdown: the work is dropped as it is, to be resumed by the next start.
    abandon: CancellationToken,
    /// The task, awaited at shutdown so nothing writes after the leases are released.
    task: Option<JoinHandle<()>>,
}

impl LocalEngine {
    /// An engine over `executor`.
    pub fn new(executor: Arc<dyn RunExecutor>) -> Arc<Self> {
        Arc::new(Self {
            executor,
            running: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts executing `run` unless it already runs here.
    pub fn start(self: &Arc<Self>, run: Uuid) {
        let (cancel, abandon) = {
            let mut running = self.lock();
            if running.contains_key(&run) {
                return;
            }
            let entry = Running {
                cancel: CancellationToken::new(),
                abandon: CancellationToken::new(),
                task: None,
            };
            let tokens = (entry.cancel.clone(), entry.abandon.clone());
            running.insert(run, entry);
            tokens
        };
        let engine = Arc::clone(self);
        let task = tokio::spawn(async move {
            tokio::select! {
                () = engine.executor.execute(run, cancel) => {}
                () = abandon.cancelled() => {}
            }
            engine.lock().remove(&run);
        });
        if let Some(entry) = self.lock().get_mut(&run) {
            entry.task = Some(task);
        }
    }

    /// Asks a run executing here to stop; false when it does not run here.
    pub fn cancel(&self, run: Uuid) -> bool {
        match self.lock().get(&run) {
            Some(running) => {
                running.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// True when `run` executes in this process.
    pub fn is_running(&self, run: Uuid) -> bool {
        self.lock().contains_key(&run)
    }

    /// Starts every orphaned run (at start-up, and then periodically).
    pub async fn resume_orphans(self: &Arc<Self>) {
        match self.executor.orphaned().await {
            Ok(runs) => {
                for run in runs {
                    tracing::info!(run_id = %run, "resuming an unfinished chat run");
                    self.start(run);
                }
            }
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "cannot look for unfinished runs"
            ),
        }
    }

    /// Resumes orphans now and then every `every`; abort the handle to stop.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                engine.resume_orphans().await;
            }
        })
    }

    /// Stops every run here without finishing it, and frees them for the next instance to resume.
    pub async fn shutdown(&self) {
        let abandoned: Vec<Running> = self.lock().drain().map(|(_, r)| r).collect();
        if !abandoned.is_empty() {
            tracing::info!(
                runs = abandoned.len(),
                "leaving unfinished chat runs for the next start"
            );
        }
        // Not `cancel`: that means "the user pressed Stop". Abandoning drops the work where it is.
        for running in &abandoned {
            running.abandon.cancel();
        }
        for running in abandoned {
            if let Some(task) = running.task {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        }
        self.executor.release_all().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::{Notify, mpsc};

    use super::*;

    /// What the fake executor saw of one run.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Started(Uuid),
        Cancelled(Uuid),
        Finished(Uuid),
    }

    /// Runs wait for `finish` (or their cancellation) and report what happened.
    struct FakeExecutor {
        seen: mpsc::UnboundedSender<Seen>,
        finish: Arc<Notify>,
        orphans: Mutex<anyhow::Result<Vec<Uuid>>>,
        released: AtomicUsize,
    }

    impl RunExecutor for FakeExecutor {
        fn execute(&self, run: Uuid, cancel: CancellationToken) -> BoxFuture<'static, ()> {
            let (seen, finish) = (self.seen.clone(), self.finish.clone());
            Box::pin(async move {
                let _ = seen.send(Seen::Started(run));
                tokio::select! {
                    () = cancel.cancelled() => { let _ = seen.send(Seen::Cancelled(run)); }
                    () = finish.notified() => { let _ = seen.send(Seen::Finished(run)); }
                }
            })
        }

        fn orphaned(&self) -> BoxFuture<'static, anyhow::Result<Vec<Uuid>>> {
            let answer = match &*self.orphans.lock().unwrap() {
                Ok(runs) => Ok(runs.clone()),
                Err(err) => Err(anyhow::anyhow!("{err}")),
            };
            Box::pin(async move { answer })
        }

        fn release_all(&self) -> BoxFuture<'static, ()> {
            self.released.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }

        fn view(&self, _run: Uuid) -> BoxFuture<'static, anyhow::Result<Option<RunView>>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn engine_over(
        orphans: anyhow::Result<Vec<Uuid>>,
    ) -> (
        Arc<LocalEngine>,
        Arc<FakeExecutor>,
        mpsc::UnboundedReceiver<Seen>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let executor = Arc::new(FakeExecutor {
            seen: tx,
            finish: Arc::new(Notify::new()),
            orphans: Mutex::new(orphans),
            released: AtomicUsize::new(0),
        });
        (LocalEngine::new(executor.clone()), executor, rx)
    }

    /// Waits until the engine no longer lists `run` (its task removes it after the executor returned).
    async fn until_gone(engine: &LocalEngine, run: Uuid) {
        while engine.is_running(run) {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_run_started_twice_executes_once() {
        let (engine, executor, mut seen) = engine_over(Ok(vec![]));
        let run = Uuid::now_v7();
        engine.start(run);
        engine.start(run);
        assert_eq!(seen.recv().await, Some(Seen::Started(run)));
        assert!(engine.is_running(run));
        executor.finish.notify_one();
        assert_eq!(seen.recv().await, Some(Seen::Finished(run)));
        until_gone(&engine, run).await;
        assert!(seen.try_recv().is_err(), "no second execution");
    }

    #[tokio::test]
    async fn stop_reaches_the_executor_and_unknown_runs_say_so() {
        let (engine, _executor, mut seen) = engine_over(Ok(vec![]));
        let run = Uuid::now_v7();
        assert!(!engine.cancel(run), "nothing runs yet");
        engine.start(run);
        assert_eq!(seen.recv().await, Some(Seen::Started(run)));
        assert!(engine.cancel(run));
        assert_eq!(seen.recv().await, Some(Seen::Cancelled(run)));
        until_gone(&engine, run).await;
        assert!(!engine.cancel(run), "a finished run is not here any more");
    }

    #[tokio::test]
    async fn orphans_are_resumed_and_a_failed_lookup_is_survived() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let (engine, _executor, mut seen) = engine_over(Ok(vec![first, second]));
        engine.resume_orphans().await;
        let mut started = vec![seen.recv().await, seen.recv().await];
        started.sort_by_key(|event| format!("{event:?}"));
        let mut expected = vec![Some(Seen::Started(first)), Some(Seen::Started(second))];
        expected.sort_by_key(|event| format!("{event:?}"));
        assert_eq!(started, expected);

        let (broken, _executor, mut nothing) = engine_over(Err(anyhow::anyhow!("database gone")));
        broken.resume_orphans().await;
        assert!(
            nothing.try_recv().is_err(),
            "nothing started, nothing panicked"
        );
    }

    #[tokio::test]
    async fn shutdown_abandons_runs_without_stopping_them_and_frees_their_leases() {
        let (engine, executor, mut seen) = engine_over(Ok(vec![]));
        let run = Uuid::now_v7();
        engine.start(run);
        assert_eq!(seen.recv().await, Some(Seen::Started(run)));
        engine.shutdown().await;
        assert!(!engine.is_running(run));
        assert_eq!(executor.released.load(Ordering::SeqCst), 1);
        // The work was dropped where it was: no cancellation was recorded, nothing finished.
        assert!(seen.try_recv().is_err());
    }
}
