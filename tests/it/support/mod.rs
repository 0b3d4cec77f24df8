//! Test harness: the real app on a port-0 listener with its own fresh database, on SQLite or PostgreSQL.

pub mod fake_http;
pub mod fake_images;
pub mod fake_llm;
pub mod html_form;
pub mod images;
pub mod nginx;
pub mod process;
pub mod raw_llm;
pub mod redis;
pub mod s3;
pub mod sse;
#[cfg(feature = "temporal")]
pub mod temporal;
pub mod visitor;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use companion_hub::db::Db;
use companion_hub::media::MediaStorage;
use companion_hub::{App, Config};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The `sqlite` and `postgres` tests of `super::$name`, inside the module the caller opens.
#[doc(hidden)]
#[macro_export]
macro_rules! database_variants {
    ($name:ident) => {
        #[tokio::test]
        async fn sqlite() {
            super::$name($crate::support::Backend::Sqlite).await;
        }

        #[tokio::test]
        async fn postgres() {
            $crate::support::require_postgres();
            super::$name($crate::support::Backend::Postgres).await;
        }
    };
}

/// Generates `<test>::sqlite` and `<test>::postgres` for each `async fn <test>(backend: Backend)`.
///
/// The PostgreSQL variant needs `TEST_DATABASE_URL` and fails without it. Plain `cargo nextest run` leaves
/// these variants out (they show as skipped; `.config/nextest.toml`); `--profile ci` runs them.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                $crate::database_variants!($name);
            }
        )+
    };
}

/// Like [`on_both_backends!`], plus `<test>::s3`: SQLite with the media in a bucket of an S3-compatible
/// server (`TEST_S3_ENDPOINT`; left out of plain `cargo nextest run` like the PostgreSQL variants).
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                $crate::database_variants!($name);

                #[tokio::test]
                async fn s3() {
                    let bucket = $crate::support::s3::create_bucket().await;
                    $crate::support::s3::BUCKET
                        .scope(bucket, super::$name($crate::support::Backend::Sqlite))
                        .await;
                }
            }
        )+
    };
}

/// Fails the test when PostgreSQL is not configured: a PostgreSQL test that did not run must never pass.
pub fn require_postgres() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        panic!(
            "this PostgreSQL variant needs TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); \
             plain `cargo nextest run` skips these variants"
        );
    }
}

/// A database that exists for one test: a temp SQLite file, or a fresh PostgreSQL database dropped
/// when the test ends.
pub struct TestDatabase {
    pub url: String,
    pg: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}/hub.db", dir.display()),
                pg: None,
            },
            Backend::Postgres => {
                let admin_url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
                let name = format!("ch_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    pg: Some((admin_url, name)),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside async context guarantees: use a private runtime on a helper thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Configuration for a test app: its own data folder and database, port 0, plus `extra` overrides.
pub fn test_config(dir: &Path, database_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("DATA_DIR".into(), dir.display().to_string()),
        ("LISTEN_ADDR".into(), "127.0.0.1:0".into()),
    ];
    vars.extend(s3::vars());
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_vars(vars).expect("valid test configuration")
}

/// The real application, serving on 127.0.0.1 on a free port, with its own database.
pub struct TestApp {
    pub address: SocketAddr,
    /// The separate metrics listener, when `METRICS_LISTEN_ADDR` was set.
    pub metrics_address: Option<SocketAddr>,
    /// This app's own counters, untouched by other apps in the process.
    pub counters: std::sync::Arc<companion_hub::ops::metrics::AppCounters>,
    pub client: reqwest::Client,
    pub db: Db,
    pub database: TestDatabase,
    /// The app's media store (a folder, or the `s3` variant's bucket), to look at what it holds.
    pub media: MediaStorage,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    dir: TempDir,
}

impl TestApp {
    /// An app with the default configuration.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// An app with extra environment variables.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(backend, dir.path()).await;
        let config = test_config(dir.path(), &database.url, extra);
        Self::serve(dir, database, config).await
    }

    /// An app whose language model is `llm`, plus `extra` variables.
    pub async fn with_llm(
        backend: Backend,
        llm: &fake_llm::FakeLlm,
        extra: &[(&str, &str)],
    ) -> Self {
        let env = llm.env();
        let mut vars: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.extend_from_slice(extra);
        Self::spawn_with(backend, &vars).await
    }

    /// Serves an app built from `config` on a fresh port-0 listener.
    pub async fn serve(dir: TempDir, database: TestDatabase, config: Config) -> Self {
        let media = MediaStorage::open(&config.storage).expect("the media store opens");
        let app = App::build(config).await.expect("app builds");
        let db = app.db().clone();
        let metrics_address = app.metrics_address();
        let counters = app.counters();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        // The listener is bound before serve() starts, so requests queue until it accepts: no waiting.
        Self {
            address,
            metrics_address,
            counters,
            client: client(),
            db,
            database,
            media,
            shutdown: Some(tx),
            server: Some(server),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Every file in the media store (keys, `<owner>/<sha256>.<ext>`, sorted).
    pub async fn stored_files(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .media
            .list_all()
            .await
            .expect("the media store lists")
            .into_iter()
            .map(|object| object.key)
            .collect();
        keys.sort();
        keys
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the app")
    }

    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .header("accept", "application/json")
            .send()
            .await
            .expect("request reaches the app");
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    /// The Prometheus text, from the metrics listener when the app has one of its own.
    pub async fn metrics(&self) -> String {
        let url = match self.metrics_address {
            Some(address) => format!("http://{address}/metrics"),
            None => self.url("/metrics"),
        };
        self.client
            .get(url)
            .send()
            .await
            .expect("request reaches the metrics listener")
            .text()
            .await
            .expect("metrics text")
    }

    /// Signals graceful shutdown and waits for the server to finish in-flight requests.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let server = self.server.take().expect("server running");
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("server stops within 30 s")
            .expect("server task did not panic")
    }

    /// Stops the server and hands back its folder and database, to start another app on them.
    pub async fn stop_keeping_data(mut self) -> (TempDir, TestDatabase) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let database = std::mem::replace(
            &mut self.database,
            TestDatabase {
                url: String::new(),
                pg: None,
            },
        );
        (dir, database)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A client that neither follows redirects nor keeps cookies between tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
/// The value of the sample `name` (with its labels, as printed) in a Prometheus text page; 0 when absent.
/// Tests read deltas or lower bounds: under coverage every test of the binary shares one process and one
/// recorder.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stores `turns` messages of `text` for the companion, alternating user and assistant, oldest first, a day
/// ago — so they are older than anything the test sends, however fast it runs.
pub async fn fill_history(app: &TestApp, companion: &str, turns: usize, text: &str) {
    let companion = uuid::Uuid::parse_str(companion).unwrap();
    let start = companion_hub::db::Timestamp::now() - std::time::Duration::from_secs(86_400);
    for i in 0..turns {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let at = start + std::time::Duration::from_millis(i as u64);
        companion_hub::db_dispatch!(&app.db, pool => sqlx::query(
            "INSERT INTO messages (id, companion_id, role, content, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(companion)
        .bind(role)
        .bind(format!("{i}: {text}"))
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()))
        .unwrap();
    }
}
