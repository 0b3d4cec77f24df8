//! Chat runs on Temporal (`WORKFLOW_ENGINE=temporal`, cargo feature `temporal`): each run is a workflow
//! whose id is the run's id ([`workflow`]), whose activities are the in-process engine's steps
//! ([`activities`]), executed by workers that may be this process (`serve` with `WORKER_IN_PROCESS`) or
//! others (`companion-hub worker`, [`worker`]). The run row stays the source of truth for the pages:
//! activities write it as the local engine does, and their tokens reach subscribers on any instance by the
//! relay.
//!
//! Starting is idempotent: a workflow id is never reused, so a repeated start — a retried send, a
//! subscriber reconnecting, the sweeper — never runs a reply twice. Stop cancels the workflow; its step
//! hears it with its next heartbeat and drops the model's stream. When Temporal is away, starts are tried
//! again by the sweeper, Stop ends the run directly, and a run left unfinished past its deadline is ended
//! as failed (with Retry), so no run stays "writing" forever.

pub mod activities;
pub mod worker;
pub mod workflow;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use temporalio_client::tonic;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowCancelOptions,
    WorkflowIdReusePolicy, WorkflowStartOptions, errors::WorkflowInteractionError,
    errors::WorkflowStartError,
};
use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::chat::runner::ChatExecutor;
use crate::config::TemporalConfig;
use crate::engine::ExternalEngine;
use crate::ops::health::Probe;
use workflow::{ChatRunWorkflow, RunInput, StepTiming};

/// Longest wait for Temporal in a request (a start, a cancellation, a probe).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Where Temporal is, and one connection to it made when it first answers (and reused: it reconnects by
/// itself after an outage).
#[derive(Clone)]
pub struct TemporalClient {
    config: Arc<TemporalConfig>,
    identity: String,
    client: Arc<Mutex<Option<Client>>>,
}

impl TemporalClient {
    /// A client for `config`; `identity` names this process in Temporal (its instance name).
    pub fn new(config: &TemporalConfig, identity: &str) -> Self {
        Self {
            config: Arc::new(config.clone()),
            identity: identity.to_owned(),
            client: Arc::new(Mutex::new(None)),
        }
    }

    /// The task queue runs go to.
    pub fn task_queue(&self) -> &str {
        &self.config.task_queue
    }

    /// The connected client: the one made before, or a new one when Temporal answers now.
    pub async fn connect(&self) -> Result<Client, String> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref() {
            return Ok(client.clone());
        }
        let options = ConnectionOptions::new(self.config.address.clone())
            .identity(self.identity.clone())
            .connect_timeout(CALL_TIMEOUT)
            .build();
        let connection = tokio::time::timeout(CALL_TIMEOUT, Connection::connect(options))
            .await
            .map_err(|_| format!("{} did not answer in time", self.config.address))?
            .map_err(|err| format!("cannot connect to {}: {err}", self.config.address))?;
        let client = Client::new(
            connection,
            ClientOptions::new(self.config.namespace.clone()).build(),
        )
        .map_err(|err| format!("cannot use namespace {}: {err}", self.config.namespace))?;
        *cached = Some(client.clone());
        Ok(client)
    }

    /// How many workers poll the task queue for activities now.
    pub async fn pollers(&self) -> Result<usize, String> {
        let client = self.connect().await?;
        let request = DescribeTaskQueueRequest {
            namespace: self.config.namespace.clone(),
            task_queue: Some(TaskQueue {
                name: self.config.task_queue.clone(),
                ..Default::default()
            }),
            task_queue_type: TaskQueueType::Activity as i32,
            ..Default::default()
        };
        let mut service = client.connection().workflow_service();
        let described = tokio::time::timeout(
            CALL_TIMEOUT,
            service.describe_task_queue(tonic::Request::new(request)),
        )
        .await
        .map_err(|_| "Temporal did not answer in time".to_owned())?
        .map_err(|status| format!("Temporal refused to describe the task queue: {status}"))?;
        Ok(described.into_inner().pollers.len())
    }
}

/// Runs chat runs as Temporal workflows.
#[derive(Clone)]
pub struct TemporalEngine {
    client: TemporalClient,
    timing: StepTiming,
    /// How long a workflow may live at most: the run's deadline and a margin for recording its end.
    execution_timeout: Duration,
    /// Ends runs here when no worker does (a Stop nobody heard, a run past its deadline).
    executor: Option<ChatExecutor>,
    /// How long a Stop waits for the worker to hear it before the run is ended here.
    stop_grace: Duration,
}

impl TemporalEngine {
    /// An engine that starts runs through `client`, timed by `config` within runs of `run_deadline`.
    pub fn new(client: TemporalClient, config: &TemporalConfig, run_deadline: Duration) -> Self {
        Self {
            client,
            timing: StepTiming {
                step_timeout_secs: run_deadline.as_secs(),
                heartbeat_secs: config.heartbeat_timeout.as_secs(),
                attempts: config.activity_attempts,
                retry_initial_secs: config.retry_initial.as_secs(),
            },
            execution_timeout: run_deadline + Duration::from_secs(300),
            executor: None,
            // A step hears a cancellation with its next heartbeat, at most 80 % of the timeout later.
            stop_grace: config.heartbeat_timeout + Duration::from_secs(2),
        }
    }

    /// An engine that ends runs itself when no worker does, with `executor`.
    pub fn with_executor(mut self, executor: ChatExecutor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Starts `run`'s workflow; `Ok` also when it was started before (the id is never reused).
    pub async fn start_workflow(&self, run: Uuid) -> Result<(), String> {
        let client = self.client.connect().await?;
        let options =
            WorkflowStartOptions::new(self.client.task_queue().to_owned(), run.to_string())
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .execution_timeout(self.execution_timeout)
                .build();
        let input = RunInput {
            run: run.to_string(),
            timing: self.timing.clone(),
        };
        let started = tokio::time::timeout(
            CALL_TIMEOUT,
            client.start_workflow(ChatRunWorkflow::run, input, options),
        )
        .await
        .map_err(|_| "Temporal did not answer in time".to_owned())?;
        match started {
            Ok(_) => {
                metrics::counter!("temporal_workflows_started_total").increment(1);
                Ok(())
            }
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
            Err(err) => Err(format!("cannot start the run's workflow: {err}")),
        }
    }

    /// Finds runs nobody executes: a run past its deadline is ended as failed (the engine was away too
    /// long), any other gets its workflow started (nothing happens when it exists). Every `every`; nothing
    /// without an executor.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let Some(executor) = engine.executor.clone() else {
                return;
            };
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                engine.sweep(&executor).await;
            }
        })
    }

    async fn sweep(&self, executor: &ChatExecutor) {
        let (overdue, waiting) = match executor.unattended().await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for unattended chat runs");
                return;
            }
        };
        for run in overdue {
            if executor.expire(run).await {
                tracing::warn!(run_id = %run, "a chat run passed its deadline while nobody executed it");
            }
        }
        for run in waiting {
            if let Err(err) = self.start_workflow(run).await {
                tracing::warn!(run_id = %run, error = %err, "cannot start a chat run's workflow yet");
                // Temporal is away: the others would wait the same.
                return;
            }
        }
    }
}

impl ExternalEngine for TemporalEngine {
    fn start(&self, run: Uuid) {
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(err) = engine.start_workflow(run).await {
                // The sweeper tries again; the run's deadline bounds the wait.
                tracing::warn!(run_id = %run, error = %err, "cannot start a chat run's workflow yet");
            }
        });
    }

    fn cancel(&self, run: Uuid) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let client = match self.client.connect().await {
                Ok(client) => client,
                Err(err) => {
                    tracing::warn!(run_id = %run, error = %err, "cannot reach Temporal to stop a run");
                    return false;
                }
            };
            let handle = client.get_workflow_handle::<ChatRunWorkflow>(run.to_string());
            let options = WorkflowCancelOptions::builder()
                .reason("Stop pressed".to_owned())
                .build();
            match tokio::time::timeout(CALL_TIMEOUT, handle.cancel(options)).await {
                Ok(Ok(())) => {
                    self.stop_unless_heard(run);
                    true
                }
                Ok(Err(WorkflowInteractionError::NotFound(_))) => false,
                Ok(Err(err)) => {
                    tracing::warn!(run_id = %run, error = %err, "Temporal refused to stop a run");
                    false
                }
                Err(_) => {
                    tracing::warn!(run_id = %run, "Temporal did not answer a stop in time");
                    false
                }
            }
        })
    }
}

impl TemporalEngine {
    /// A Stop reaches a step with its next heartbeat; when no worker hears it in time (none polls, or the
    /// run waits in the queue), the run is ended here so the user's Stop never waits for the deadline.
    fn stop_unless_heard(&self, run: Uuid) {
        let Some(executor) = self.executor.clone() else {
            return;
        };
        let grace = self.stop_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if executor.stop_now(run).await {
                metrics::counter!("temporal_stops_unheard_total").increment(1);
                tracing::warn!(run_id = %run, "no worker heard a Stop in time; the run was ended here");
            }
        });
    }
}

/// The `workflow_engine` check: Temporal answers, and some worker polls the task queue.
pub struct TemporalProbe(pub TemporalClient);

impl Probe for TemporalProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.detail().await.map(|_| ()) })
    }

    fn detail(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            let pollers = self.0.pollers().await?;
            if pollers == 0 {
                return Err(format!(
                    "no worker polls the task queue {}",
                    self.0.task_queue()
                ));
            }
            Ok(Some(format!(
                "{pollers} worker(s) poll the task queue {}",
                self.0.task_queue()
            )))
        })
    }
}

/// Readiness: Temporal answers (whether or not a worker polls; pages work without one).
pub struct TemporalReachability(pub TemporalClient);

impl Probe for TemporalReachability {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.pollers().await.map(|_| ()) })
    }
}
