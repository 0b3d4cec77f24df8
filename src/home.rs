//! The start page at `/`: signed-in people go to their companions, everyone else to sign-in.

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

use crate::state::AppState;
use crate::web::MaybeUser;

/// `/`.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(show_start))
}

async fn show_start(visitor: MaybeUser) -> Redirect {
    if visitor.user.is_some() {
        Redirect::to("/companions")
    } else {
        Redirect::to("/login")
    }
}
