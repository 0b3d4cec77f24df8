//! The id in a route's one path parameter (`/companions/{id}/…`): a UUID, or 404 — an id that cannot exist
//! is answered like one that belongs to someone else, never with a 400 that tells the two apart.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use crate::error::AppError;

/// The path's id; extracting it answers 404 for anything that is not a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| AppError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn status_of(path: &str) -> StatusCode {
        let app = Router::new().route(
            "/things/{id}",
            get(|PathId(id): PathId| async move { id.to_string().into_response() }),
        );
        let request = Request::get(path).body(Body::empty()).expect("a request");
        app.oneshot(request).await.expect("an answer").status()
    }

    #[tokio::test]
    async fn a_uuid_passes_and_anything_else_is_not_found() {
        assert_eq!(
            status_of(&format!("/things/{}", Uuid::nil())).await,
            StatusCode::OK
        );
        for bad in ["/things/42", "/things/not-a-uuid", "/things/%00"] {
            assert_eq!(status_of(bad).await, StatusCode::NOT_FOUND, "{bad}");
        }
    }
}
