//! The Temporal worker: polls the task queue for this binary's workflow and activities. The SDK's worker
//! is not `Send` (workflows run on `Rc`s), so it lives on its own thread with a current-thread runtime;
//! the activities' bodies go back to the main runtime ([`super::activities`]). It connects when Temporal
//! answers — a worker started while Temporal is down waits and tries again, backing off — and stops, after
//! the activities it runs have ended or been given up, when told to.

use std::thread::JoinHandle;
use std::time::Duration;

use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Worker, WorkerOptions};
use tokio::sync::oneshot;

use super::TemporalClient;
use super::activities::ChatActivities;
use super::workflow::ChatRunWorkflow;

/// How long a workflow task waits for the worker that cached the workflow before another may take it.
const STICKY_TIMEOUT: Duration = Duration::from_secs(1);

/// Workflow tasks handled at once: each is a moment of deciding the next step.
const WORKFLOW_TASKS: usize = 100;

/// Steps a worker runs at once unless `MAX_ACTIVE_REPLIES` says otherwise: a step mostly waits for the
/// model, so the limit is the machine's CPU and memory per reply (docs/deploy.md, "Sizing"), not this.
pub const DEFAULT_STEPS: usize = 5_000;

/// A running worker; [`WorkerThread::stop`] ends it.
pub struct WorkerThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerThread {
    /// Starts a worker for `client`'s task queue with `activities`, running at most `steps` of them at once.
    pub fn spawn(
        client: TemporalClient,
        activities: ChatActivities,
        steps: usize,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("temporal-worker".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot start the Temporal worker's runtime");
                        return;
                    }
                };
                runtime.block_on(work(client, activities, steps, stopped));
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops polling, lets the worker finish, and waits for its thread (off the async runtime).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("the Temporal worker's thread ended abnormally");
            }
        }
    }
}

async fn work(
    client: TemporalClient,
    activities: ChatActivities,
    steps: usize,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut wait = Duration::from_millis(250);
    let connected = loop {
        tokio::select! {
            connected = client.connect() => match connected {
                Ok(connected) => break connected,
                Err(err) => tracing::warn!(error = %err, "the Temporal worker cannot reach Temporal yet; it tries again"),
            },
            _ = &mut stopped => return,
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = &mut stopped => return,
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    };
    let runtime = match temporalio_sdk::Runtime::from_current_tokio(Default::default()) {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the Temporal worker");
            return;
        }
    };
    // A workflow's next task goes first to the worker that ran its last one (its cache); when that worker
    // died, the task waits this long before any worker may take it (the SDK's default is 10 s, which a
    // killed worker would add to the reply it was writing).
    let options = WorkerOptions::new(client.task_queue().to_owned())
        .sticky_queue_schedule_to_start_timeout(STICKY_TIMEOUT)
        .tuner(
            TunerHolder::builder()
                .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(WORKFLOW_TASKS))
                .activity_task_slot_supplier(FixedSizeSlotSupplier::new(steps))
                .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .build(),
        )
        .register_workflow::<ChatRunWorkflow>()
        .map(|options| options.register_activities(activities).build());
    let options = match options {
        Ok(options) => options,
        Err(err) => {
            tracing::error!(error = %err, "cannot register the chat workflow");
            return;
        }
    };
    let mut worker = match Worker::new(&runtime, connected, options) {
        Ok(worker) => worker,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the Temporal worker");
            return;
        }
    };
    let shutdown = worker.shutdown_handle();
    tracing::info!(
        task_queue = client.task_queue(),
        "the Temporal worker polls"
    );
    let run = worker.run();
    tokio::pin!(run);
    let ran = tokio::select! {
        ran = &mut run => ran,
        _ = &mut stopped => {
            shutdown();
            run.await
        }
    };
    if let Err(err) = ran {
        tracing::error!(error = %err, "the Temporal worker stopped with an error");
    }
}
