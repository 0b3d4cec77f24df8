//! The settings page: display name, password, sessions, account deletion (the zip export is the `export` module).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::validation::DisplayName;
use super::{password, password_policy, store};
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::PathId;
use crate::web::forms::FormErrors;
use crate::web::session::{SiteCookie, store as sessions};
use crate::web::{Action, CurrentUser, PageContext};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(show_settings))
        .route("/settings/display-name", post(submit_display_name))
        .route("/settings/password", post(submit_password))
        .route(
            "/settings/sessions/{id}/revoke",
            post(submit_revoke_session),
        )
        .route("/settings/delete", post(submit_delete_account))
}

/// One row of the sessions table.
struct SessionRow {
    id: Uuid,
    device: String,
    created: String,
    last_seen: String,
    current: bool,
}

/// Renders: the settings page.
#[derive(Template)]
#[template(path = "accounts/settings.html")]
struct SettingsPage {
    page: PageContext,
    email: String,
    username: String,
    display_name: String,
    sessions: Vec<SessionRow>,
    saved: Option<&'static str>,
    errors: FormErrors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SettingsQuery {
    saved: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DisplayNameForm {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    new_password_confirm: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteForm {
    password: String,
}

async fn settings_page(
    state: &AppState,
    current: &CurrentUser,
    saved: Option<&'static str>,
    errors: FormErrors,
    display_name_value: Option<&str>,
) -> Result<SettingsPage, AppError> {
    let account = store::account(&state.db, current.user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    let idle = state.config.auth.session_idle();
    let sessions = sessions::list_for_user(&state.db, current.user.id, Timestamp::now(), idle)
        .await?
        .into_iter()
        .map(|info| SessionRow {
            id: info.id,
            device: describe_user_agent(info.user_agent.as_deref()),
            created: info.created_at.display(),
            last_seen: info.last_seen_at.display(),
            current: info.id == current.session.id,
        })
        .collect();
    Ok(SettingsPage {
        page: current.page("Settings", "settings")?,
        email: account.email,
        username: account.username,
        display_name: display_name_value.map_or(account.display_name, str::to_owned),
        sessions,
        saved,
        errors,
    })
}

fn saved_notice(key: &str) -> Option<&'static str> {
    match key {
        "display-name" => Some("Your display name was saved."),
        "password" => Some("Your password was changed. Every other session was signed out."),
        "session" => Some("The session was signed out."),
        _ => None,
    }
}

async fn show_settings(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(query): Query<SettingsQuery>,
) -> Result<Html<String>, AppError> {
    let page = settings_page(
        &state,
        &current,
        saved_notice(&query.saved),
        FormErrors::new(),
        None,
    )
    .await?;
    Ok(Html(page.render()?))
}

async fn unprocessable(page: SettingsPage) -> Result<Response, AppError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
}

async fn submit_display_name(
    State(state): State<AppState>,
    current: CurrentUser,
    Form(form): Form<DisplayNameForm>,
) -> Result<Response, AppError> {
    let name = match DisplayName::parse(&form.name) {
        Ok(name) => name,
        Err(message) => {
            let mut errors = FormErrors::new();
            errors.add("name", message);
            let page = settings_page(&state, &current, None, errors, Some(&form.name)).await?;
            return unprocessable(page).await;
        }
    };
    state
        .rate_limiter
        .hit(Action::Settings, &current.user.id.to_string())
        .await?;
    store::update_display_name(&state.db, current.user.id, &name).await?;
    Ok(Redirect::to("/settings?saved=display-name").into_response())
}

async fn submit_password(
    State(state): State<AppState>,
    current: CurrentUser,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    state
        .rate_limiter
        .hit(Action::Settings, &current.user.id.to_string())
        .await?;
    let mut errors = FormErrors::new();
    for rule in password_policy::violations(&form.new_password) {
        errors.add("new_password", rule.message());
    }
    if form.new_password != form.new_password_confirm {
        errors.add(
            "new_password_confirm",
            "The two new passwords are not the same.",
        );
    }
    if form.current_password.chars().count() > password_policy::MAX_LENGTH {
        errors.add("current_password", "Your current password is not right.");
    } else {
        let stored = store::password_hash(&state.db, current.user.id).await?;
        if !password::verify(&state.counters, form.current_password.clone(), stored).await? {
            errors.add("current_password", "Your current password is not right.");
        }
    }
    if !errors.is_empty() {
        let page = settings_page(&state, &current, None, errors, None).await?;
        return unprocessable(page).await;
    }
    let hash = password::hash(form.new_password).await?;
    store::update_password_hash(&state.db, current.user.id, &hash).await?;
    let ended =
        sessions::delete_all_for_user(&state.db, current.user.id, Some(current.session.id)).await?;
    // Whoever held this session's old token (copied cookie, shared machine) is out too.
    let token = sessions::rotate_token(&state.db, current.session.id).await?;
    let cookie = SiteCookie::session(&state.config).set(&token, remaining(&current));
    tracing::info!(user_id = %current.user.id, other_sessions_ended = ended, "password changed");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/settings?saved=password"),
    )
        .into_response())
}

/// The time the current session has left (its cookie keeps the session's end when re-issued).
fn remaining(current: &CurrentUser) -> std::time::Duration {
    std::time::Duration::from_secs(Timestamp::now().seconds_until(current.session.expires_at))
}

async fn submit_revoke_session(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    state
        .rate_limiter
        .hit(Action::Settings, &current.user.id.to_string())
        .await?;
    if !sessions::delete_owned(&state.db, current.user.id, id).await? {
        return Err(AppError::NotFound);
    }
    if id == current.session.id {
        let clear = SiteCookie::session(&state.config).clear();
        return Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response());
    }
    Ok(Redirect::to("/settings?saved=session").into_response())
}

async fn submit_delete_account(
    State(state): State<AppState>,
    current: CurrentUser,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    state
        .rate_limiter
        .hit(Action::Settings, &current.user.id.to_string())
        .await?;
    let stored = store::password_hash(&state.db, current.user.id).await?;
    let confirmed = form.password.chars().count() <= password_policy::MAX_LENGTH
        && password::verify(&state.counters, form.password, stored).await?;
    if !confirmed {
        let mut errors = FormErrors::new();
        errors.add(
            "delete_password",
            "Your password is not right; nothing was deleted.",
        );
        let page = settings_page(&state, &current, None, errors, None).await?;
        return unprocessable(page).await;
    }
    store::delete(&state.db, current.user.id).await?;
    // The rows are gone with the account; their files go now (the orphan cleanup would take them later).
    match state.media.delete_owner(current.user.id).await {
        Ok(files) => tracing::info!(user_id = %current.user.id, files, "account deleted"),
        Err(err) => {
            tracing::warn!(user_id = %current.user.id, error = format!("{err:#}"), "account deleted; its image files remain for the cleanup")
        }
    }
    let clear = SiteCookie::session(&state.config).clear();
    Ok((
        [(header::SET_COOKIE, clear)],
        Redirect::to("/login?deleted=1"),
    )
        .into_response())
}

/// "Firefox on Linux", "Safari on iOS", … from a User-Agent string; "Unknown device" otherwise.
pub fn describe_user_agent(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map_or("Browser", |(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match system {
        Some(system) => format!("{browser} on {system}"),
        None => browser.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_described_briefly() {
        assert_eq!(
            describe_user_agent(Some(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            )),
            "Firefox on Linux"
        );
        assert_eq!(
            describe_user_agent(Some(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
            )),
            "Safari on iOS"
        );
        assert_eq!(
            describe_user_agent(Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
            )),
            "Edge on Windows"
        );
        assert_eq!(describe_user_agent(None), "Unknown device");
        assert_eq!(describe_user_agent(Some("curl/8.5.0")), "curl");
    }
}
