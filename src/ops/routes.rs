//! The operations endpoints: `/api/live`, `/api/ready`, `/api/health` and `/metrics`.
//!
//! `/api/live` does no I/O (the process answers, so it is alive); `/api/ready` says whether this instance
//! can take traffic (database reachable, schema exactly what the binary expects); `/api/health` runs every
//! dependency's [`Check`](super::health::Check). They answer anyone, so they say *which* check failed and a
//! fixed reason, never the raw error (that is logged with the correlation id). `/metrics` needs the
//! bearer token when `METRICS_TOKEN` is set.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::health::{CHECK_TIMEOUT, CheckStatus};
use crate::db::{Db, migrate};
use crate::error::AppError;
use crate::state::AppState;

/// `/api/live`, `/api/ready`, `/api/health`, and `/metrics` unless it has a listener of its own.
pub fn router(with_metrics: bool) -> Router<AppState> {
    let router = Router::new()
        .route("/api/live", get(get_live))
        .route("/api/ready", get(get_ready))
        .route("/api/health", get(get_health));
    if with_metrics {
        router.route("/metrics", get(get_metrics))
    } else {
        router
    }
}

/// The whole app of the separate metrics listener (`METRICS_LISTEN_ADDR`): `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .with_state(state)
}

/// The whole app of a worker's listener (`companion-hub worker`, `WORKER_LISTEN_ADDR`): the operations
/// endpoints and `/metrics`, nothing else.
pub fn worker_router(state: AppState) -> Router {
    router(true).with_state(state)
}

/// `GET /api/live`: the process is up.
pub async fn get_live() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// Why this instance cannot take traffic: a stable code and a fixed sentence for the public answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotReady {
    DatabaseUnreachable,
    DatabaseTimedOut,
    SchemaUnreadable,
    SchemaNewer,
    SchemaModified,
    MigrationsPending,
    WorkflowEngineUnreachable,
}

impl NotReady {
    fn code(self) -> &'static str {
        match self {
            Self::DatabaseUnreachable => "database_unreachable",
            Self::DatabaseTimedOut => "database_timed_out",
            Self::SchemaUnreadable => "schema_unreadable",
            Self::SchemaNewer => "schema_newer_than_binary",
            Self::SchemaModified => "schema_modified",
            Self::MigrationsPending => "migrations_pending",
            Self::WorkflowEngineUnreachable => "workflow_engine_unreachable",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::DatabaseUnreachable => "The database is unreachable.",
            Self::DatabaseTimedOut => "The database did not answer in time.",
            Self::SchemaUnreadable => "The database's migration state cannot be read.",
            Self::SchemaNewer => {
                "The database schema is newer than this binary: run a newer companion-hub."
            }
            Self::SchemaModified => {
                "Applied migrations differ from this binary's: the binary and the database disagree."
            }
            Self::MigrationsPending => {
                "Database migrations are pending: run `companion-hub migrate`."
            }
            Self::WorkflowEngineUnreachable => {
                "The workflow engine (Temporal) does not answer: replies cannot start."
            }
        }
    }

    fn check(self) -> &'static str {
        match self {
            Self::DatabaseUnreachable | Self::DatabaseTimedOut => "database",
            Self::WorkflowEngineUnreachable => "workflow_engine",
            _ => "schema",
        }
    }
}

/// `GET /api/ready`: 200 when this instance can take traffic, else 503 with which check failed and why.
pub async fn get_ready(State(state): State<AppState>) -> Response {
    let mut problem = match tokio::time::timeout(CHECK_TIMEOUT, readiness_problem(&state.db)).await
    {
        Ok(problem) => problem,
        Err(_) => {
            tracing::warn!("readiness: the database did not answer in time");
            Some(NotReady::DatabaseTimedOut)
        }
    };
    if problem.is_none()
        && let Some(engine) = &state.health.engine_reachable
        && engine.run().await.status == CheckStatus::Unhealthy
    {
        problem = Some(NotReady::WorkflowEngineUnreachable);
    }
    match problem {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "check": problem.check(),
                "reason": problem.code(),
                "message": problem.message(),
            })),
        )
            .into_response(),
    }
}

/// The first reason this instance cannot serve, with the details logged.
async fn readiness_problem(db: &Db) -> Option<NotReady> {
    if let Err(err) = db.ping().await {
        tracing::warn!(error = %err, "readiness: the database is unreachable");
        return Some(NotReady::DatabaseUnreachable);
    }
    let status = match migrate::status(db).await {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!(error = %err, "readiness: the migration state cannot be read");
            return Some(NotReady::SchemaUnreadable);
        }
    };
    if let Some(problem) = status.incompatibility() {
        tracing::warn!(error = %problem, "readiness: the schema is incompatible");
        return Some(match problem {
            migrate::MigrationError::SchemaNewer { .. } => NotReady::SchemaNewer,
            _ => NotReady::SchemaModified,
        });
    }
    let pending: Vec<String> = status.pending().map(|m| m.version.to_string()).collect();
    if pending.is_empty() {
        return None;
    }
    tracing::warn!(
        pending = %pending.join(", "),
        "readiness: migrations are pending; run `companion-hub migrate`"
    );
    Some(NotReady::MigrationsPending)
}

/// `GET /api/health`: every dependency's status; 200 when all configured ones are healthy, else 503.
pub async fn get_health(State(state): State<AppState>) -> Response {
    let checks = &state.health;
    let (database, storage, workflow_engine, relay_bus, llm, image_backend) = tokio::join!(
        checks.database.run(),
        checks.storage.run(),
        checks.workflow_engine.run(),
        checks.relay_bus.run(),
        checks.llm.run(),
        checks.image_backend.run(),
    );
    let healthy = [
        &database,
        &storage,
        &workflow_engine,
        &relay_bus,
        &llm,
        &image_backend,
    ]
    .iter()
    .all(|check| check.status != CheckStatus::Unhealthy);
    let body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "database": database,
            "storage": storage,
            "workflow_engine": workflow_engine,
            "relay_bus": relay_bus,
            "llm": llm,
            "image_backend": image_backend,
        },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: the Prometheus text format; needs `Authorization: Bearer <METRICS_TOKEN>` when set.
pub async fn get_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let matches: bool = presented.as_bytes().ct_eq(token.expose().as_bytes()).into();
        if !matches {
            let mut response = AppError::Unauthorized(
                "This endpoint needs Authorization: Bearer <METRICS_TOKEN>.".into(),
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return Ok(response);
        }
    }
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response())
}
