//! Registration, sign-in and sign-out.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::password;
use super::password_policy;
use super::store::{self, CreateError, NewUser};
use super::validation::{DisplayName, Email, Username, local_path};
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::forms::FormErrors;
use crate::web::session::{PRE_SESSION_LIFETIME, SessionCookie, store as sessions};
use crate::web::{Action, ClientIp, CurrentUser, MaybeUser, PageContext, Session, SessionUser};

/// Where people land after signing in.
pub const HOME_AFTER_SIGN_IN: &str = "/companions";
const WRONG_CREDENTIALS: &str = "The username, email or password is not right.";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/register", get(show_register).post(submit_register))
        .route("/login", get(show_login).post(submit_login))
        .route("/logout", post(submit_logout))
        .route("/logout-everywhere", post(submit_logout_everywhere))
}

/// Renders: the registration form.
#[derive(Template)]
#[template(path = "accounts/register.html")]
struct RegisterPage<'a> {
    page: PageContext,
    name: &'a str,
    email: &'a str,
    username: &'a str,
    errors: FormErrors,
}

/// Renders: the sign-in form.
#[derive(Template)]
#[template(path = "accounts/login.html")]
struct LoginPage<'a> {
    page: PageContext,
    identifier: &'a str,
    next: &'a str,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RegisterForm {
    name: String,
    email: String,
    username: String,
    password: String,
    password_confirm: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    identifier: String,
    password: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginQuery {
    next: String,
    deleted: Option<String>,
}

/// The visitor's session, or a new pre-session (with the cookie to set) so forms can carry a CSRF token.
pub(super) async fn session_for_form(
    state: &AppState,
    visitor: &MaybeUser,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<Session>, Option<HeaderValue>), AppError> {
    if let Some(session) = &visitor.session {
        return Ok((session.clone(), None));
    }
    let (token, session) =
        sessions::create(&state.db, None, user_agent(headers), PRE_SESSION_LIFETIME).await?;
    let cookie = SessionCookie::for_config(&state.config).set(&token, PRE_SESSION_LIFETIME);
    Ok((std::sync::Arc::new(session), Some(cookie)))
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Replaces the visitor's (pre-)session with a fresh signed-in one; returns the cookie to set.
pub(super) async fn sign_in(
    state: &AppState,
    previous: Option<&Session>,
    user: SessionUser,
    headers: &HeaderMap,
) -> Result<HeaderValue, AppError> {
    if let Some(previous) = previous {
        sessions::delete(&state.db, previous.id).await?;
    }
    let lifetime = Duration::from_secs(u64::from(state.config.auth.session_days) * 86_400);
    let (token, _) = sessions::create(&state.db, Some(user), user_agent(headers), lifetime).await?;
    Ok(SessionCookie::for_config(&state.config).set(&token, lifetime))
}

async fn show_register(
    State(state): State<AppState>,
    visitor: MaybeUser,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if visitor.user.is_some() {
        return Ok(Redirect::to(HOME_AFTER_SIGN_IN).into_response());
    }
    let (session, cookie) = session_for_form(&state, &visitor, &headers).await?;
    let html = RegisterPage {
        page: session.page("Create your account", "register"),
        name: "",
        email: "",
        username: "",
        errors: FormErrors::new(),
    }
    .render()?;
    Ok(with_cookie(Html(html).into_response(), cookie))
}

async fn submit_register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: MaybeUser,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Result<Response, AppError> {
    let Some(session) = visitor.session.clone() else {
        return Err(AppError::Forbidden {
            code: "csrf_failed",
            message: "Your session has expired. Reload the page and try again.".into(),
        });
    };
    let mut errors = FormErrors::new();
    let name = DisplayName::parse(&form.name)
        .map_err(|e| errors.add("name", e))
        .ok();
    let email = Email::parse(&form.email)
        .map_err(|e| errors.add("email", e))
        .ok();
    let username = Username::parse(&form.username)
        .map_err(|e| errors.add("username", e))
        .ok();
    for rule in password_policy::violations(&form.password) {
        errors.add("password", rule.message());
    }
    if form.password != form.password_confirm {
        errors.add("password_confirm", "The two passwords are not the same.");
    }
    let rerender = |errors: FormErrors| -> Result<Response, AppError> {
        let html = RegisterPage {
            page: session.page("Create your account", "register"),
            name: &form.name,
            email: &form.email,
            username: &form.username,
            errors,
        }
        .render()?;
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response())
    };
    let (Some(name), Some(email), Some(username)) = (name, email, username) else {
        return rerender(errors);
    };
    if !errors.is_empty() {
        return rerender(errors);
    }
    // Only complete, valid registrations count against the limit, so typos cost nothing.
    state
        .rate_limiter
        .hit(Action::Register, &ip.to_string())
        .await?;

    let hash = password::hash(form.password.clone()).await?;
    let created = store::create(
        &state.db,
        NewUser {
            email: &email,
            username: &username,
            display_name: &name,
            password_hash: &hash,
        },
    )
    .await;
    let user = match created {
        Ok(user) => user,
        Err(CreateError::EmailTaken) => {
            errors.add(
                "email",
                "An account with this email already exists. Sign in instead?",
            );
            return rerender(errors);
        }
        Err(CreateError::UsernameTaken) => {
            errors.add("username", "This username is taken. Choose another.");
            return rerender(errors);
        }
        Err(CreateError::Database(err)) => return Err(err.into()),
    };
    tracing::info!(user_id = %user.id, "account created");
    metrics::counter!("registrations_total").increment(1);
    let cookie = sign_in(&state, Some(&session), user, &headers).await?;
    Ok(with_cookie(
        Redirect::to(HOME_AFTER_SIGN_IN).into_response(),
        Some(cookie),
    ))
}

async fn show_login(
    State(state): State<AppState>,
    visitor: MaybeUser,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let next = local_path(&query.next).unwrap_or("");
    if visitor.user.is_some() {
        let to = if next.is_empty() {
            HOME_AFTER_SIGN_IN
        } else {
            next
        };
        return Ok(Redirect::to(to).into_response());
    }
    let (session, cookie) = session_for_form(&state, &visitor, &headers).await?;
    let html = LoginPage {
        page: session.page("Sign in", "login"),
        identifier: "",
        next,
        error: None,
        notice: query
            .deleted
            .is_some()
            .then_some("Your account and everything it owned have been deleted."),
    }
    .render()?;
    Ok(with_cookie(Html(html).into_response(), cookie))
}

async fn submit_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: MaybeUser,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let Some(session) = visitor.session.clone() else {
        return Err(AppError::Forbidden {
            code: "csrf_failed",
            message: "Your session has expired. Reload the page and try again.".into(),
        });
    };
    let next = local_path(&form.next).unwrap_or("");
    let identifier: String = form.identifier.trim().chars().take(254).collect();
    let refuse = |status: StatusCode, message: String| -> Result<Response, AppError> {
        let html = LoginPage {
            page: session.page("Sign in", "login"),
            identifier: &identifier,
            next,
            error: Some(message),
            notice: None,
        }
        .render()?;
        Ok((status, Html(html)).into_response())
    };

    let ip_key = ip.to_string();
    let pair_key = format!("{ip_key}|{}", identifier.to_lowercase());
    for (action, key) in [(Action::LoginIp, &ip_key), (Action::Login, &pair_key)] {
        match state.rate_limiter.hit(action, key).await {
            Ok(()) => {}
            Err(AppError::RateLimited {
                retry_after,
                message,
            }) => {
                metrics::counter!("login_attempts_total", "outcome" => "rate_limited").increment(1);
                let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, message)?;
                if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return Ok(response);
            }
            Err(other) => return Err(other),
        }
    }

    let credentials = if identifier.is_empty() {
        None
    } else {
        store::find_credentials(&state.db, &identifier).await?
    };
    let password_ok = password::verify(
        form.password.clone(),
        credentials.as_ref().map(|c| c.password_hash.clone()),
    )
    .await?;
    let now = Timestamp::now();

    let Some(account) = credentials else {
        metrics::counter!("login_attempts_total", "outcome" => "failure").increment(1);
        metrics::counter!("login_failures_total").increment(1);
        return refuse(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS.into());
    };
    if let Some(until) = account.locked_until.filter(|until| *until > now) {
        metrics::counter!("login_attempts_total", "outcome" => "locked").increment(1);
        return refuse(StatusCode::LOCKED, locked_message(now, until));
    }
    if !password_ok {
        metrics::counter!("login_attempts_total", "outcome" => "failure").increment(1);
        metrics::counter!("login_failures_total").increment(1);
        let lock_for = Duration::from_secs(u64::from(state.config.auth.lockout_minutes) * 60);
        let locked = store::record_failure(
            &state.db,
            account.id,
            state.config.auth.lockout_threshold,
            lock_for,
            now,
        )
        .await?;
        if let Some(until) = locked {
            tracing::warn!(
                user_id = %account.id,
                minutes = state.config.auth.lockout_minutes,
                "account locked after repeated failed sign-ins"
            );
            metrics::counter!("account_lockouts_total").increment(1);
            return refuse(StatusCode::LOCKED, locked_message(now, until));
        }
        return refuse(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS.into());
    }

    store::record_success(&state.db, account.id, now).await?;
    metrics::counter!("login_attempts_total", "outcome" => "success").increment(1);
    let user = SessionUser {
        id: account.id,
        username: account.username,
        display_name: account.display_name,
    };
    tracing::info!(user_id = %user.id, "signed in");
    let cookie = sign_in(&state, Some(&session), user, &headers).await?;
    let to = if next.is_empty() {
        HOME_AFTER_SIGN_IN
    } else {
        next
    };
    Ok(with_cookie(Redirect::to(to).into_response(), Some(cookie)))
}

fn locked_message(now: Timestamp, until: Timestamp) -> String {
    let minutes = now.seconds_until(until).div_ceil(60).max(1);
    format!(
        "This account is locked after too many failed sign-ins. Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}

async fn submit_logout(
    State(state): State<AppState>,
    visitor: MaybeUser,
) -> Result<Response, AppError> {
    if let Some(session) = &visitor.session {
        sessions::delete(&state.db, session.id).await?;
        if let Some(user) = &visitor.user {
            tracing::info!(user_id = %user.id, "signed out");
        }
    }
    let clear = SessionCookie::for_config(&state.config).clear();
    Ok(with_cookie(
        Redirect::to("/login").into_response(),
        Some(clear),
    ))
}

async fn submit_logout_everywhere(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, AppError> {
    let ended = sessions::delete_all_for_user(&state.db, current.user.id, None).await?;
    tracing::info!(user_id = %current.user.id, sessions = ended, "signed out everywhere");
    let clear = SessionCookie::for_config(&state.config).clear();
    Ok(with_cookie(
        Redirect::to("/login").into_response(),
        Some(clear),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_messages_round_minutes_up() {
        let now = Timestamp::now();
        assert!(locked_message(now, now + Duration::from_secs(30 * 60)).contains("30 minutes"));
        assert!(locked_message(now, now + Duration::from_secs(61)).contains("2 minutes"));
        assert!(locked_message(now, now + Duration::from_secs(5)).contains("1 minute."));
    }
}
