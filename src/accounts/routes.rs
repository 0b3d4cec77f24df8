//! Registration, sign-in and sign-out pages (the decisions of a sign-in attempt are in `sign_in.rs`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::password;
use super::password_policy;
use super::sign_in::{self, Outcome};
use super::store::{self, CreateError, NewUser};
use super::validation::{DisplayName, Email, Username, local_path};
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::forms::FormErrors;
use crate::web::keys::Purpose;
use crate::web::session::{
    DEVICE_COOKIE_LIFETIME, PRE_SESSION_LIFETIME, SiteCookie, pre, store as sessions,
};
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
/// A pre-session is a signed cookie: nothing is stored for an anonymous visitor.
pub(super) async fn session_for_form(
    state: &AppState,
    visitor: &MaybeUser,
) -> Result<(std::sync::Arc<Session>, Option<HeaderValue>), AppError> {
    if let Some(session) = &visitor.session {
        return Ok((session.clone(), None));
    }
    let key = state
        .keys
        .key(Purpose::PreSession)
        .await
        .map_err(|err| AppError::Internal(anyhow::anyhow!(err)))?;
    let (session, value) = pre::issue(&key, Timestamp::now(), PRE_SESSION_LIFETIME)
        .map_err(|err| AppError::Internal(anyhow::anyhow!("no randomness for a form: {err}")))?;
    let cookie = SiteCookie::pre_session(&state.config).set(&value, PRE_SESSION_LIFETIME);
    Ok((std::sync::Arc::new(session), Some(cookie)))
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Replaces the visitor's (pre-)session with a fresh signed-in one; returns the cookies to set (the new
/// session, and the pre-session's removal).
pub(super) async fn sign_in(
    state: &AppState,
    previous: Option<&Session>,
    user: SessionUser,
    headers: &HeaderMap,
) -> Result<Vec<HeaderValue>, AppError> {
    if let Some(previous) = previous.filter(|p| !p.is_pre_session()) {
        sessions::delete(&state.db, previous.id).await?;
    }
    let lifetime = state.config.auth.session_lifetime();
    let (token, _) = sessions::create(&state.db, user, user_agent(headers), lifetime).await?;
    Ok(vec![
        SiteCookie::session(&state.config).set(&token, lifetime),
        SiteCookie::pre_session(&state.config).clear(),
    ])
}

async fn show_register(
    State(state): State<AppState>,
    visitor: MaybeUser,
) -> Result<Response, AppError> {
    if visitor.user.is_some() {
        return Ok(Redirect::to(HOME_AFTER_SIGN_IN).into_response());
    }
    let (session, cookie) = session_for_form(&state, &visitor).await?;
    let html = RegisterPage {
        page: session.page("Create your account", "register")?,
        name: "",
        email: "",
        username: "",
        errors: FormErrors::new(),
    }
    .render()?;
    Ok(with_cookies(Html(html).into_response(), cookie))
}

async fn submit_register(
    State(state): State<AppState>,
    ip: ClientIp,
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
            page: session.page("Create your account", "register")?,
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
        .hit(Action::Register, &ip.rate_key())
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
    // The browser an account was made in is its owner's: it is trusted like one that signed in.
    let device_cookie = sign_in::device_cookie_for(&state, user.id).await?;
    let mut cookies = sign_in(&state, Some(&session), user, &headers).await?;
    cookies.push(SiteCookie::device(&state.config).set(&device_cookie, DEVICE_COOKIE_LIFETIME));
    Ok(with_cookies(
        Redirect::to(HOME_AFTER_SIGN_IN).into_response(),
        cookies,
    ))
}

async fn show_login(
    State(state): State<AppState>,
    visitor: MaybeUser,
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
    let (session, cookie) = session_for_form(&state, &visitor).await?;
    let html = LoginPage {
        page: session.page("Sign in", "login")?,
        identifier: "",
        next,
        error: None,
        notice: query
            .deleted
            .is_some()
            .then_some("Your account and everything it owned have been deleted."),
    }
    .render()?;
    Ok(with_cookies(Html(html).into_response(), cookie))
}

async fn submit_login(
    State(state): State<AppState>,
    ip: ClientIp,
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
            page: session.page("Sign in", "login")?,
            identifier: &identifier,
            next,
            error: Some(message),
            notice: None,
        }
        .render()?;
        Ok((status, Html(html)).into_response())
    };
    let device_cookie = SiteCookie::device(&state.config).read(&headers);
    let outcome = sign_in::attempt(
        &state,
        ip,
        &identifier,
        form.password.clone(),
        device_cookie.as_deref(),
    )
    .await;
    let (user, device_cookie) = match outcome {
        Ok(Outcome::SignedIn {
            user,
            device_cookie,
        }) => (user, device_cookie),
        Ok(Outcome::Refused) => return refuse(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS.into()),
        Ok(Outcome::Locked { until }) => {
            return refuse(StatusCode::LOCKED, locked_message(Timestamp::now(), until));
        }
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
    };
    tracing::info!(user_id = %user.id, "signed in");
    let mut cookies = sign_in(&state, Some(&session), user, &headers).await?;
    cookies.push(SiteCookie::device(&state.config).set(&device_cookie, DEVICE_COOKIE_LIFETIME));
    let to = if next.is_empty() {
        HOME_AFTER_SIGN_IN
    } else {
        next
    };
    Ok(with_cookies(Redirect::to(to).into_response(), cookies))
}

fn locked_message(now: Timestamp, until: Timestamp) -> String {
    let minutes = now.seconds_until(until).div_ceil(60).max(1);
    format!(
        "Sign-in is locked after too many failed attempts. Try again in {minutes} minute{}, or from \
         a browser you signed in with before.",
        if minutes == 1 { "" } else { "s" }
    )
}

async fn submit_logout(
    State(state): State<AppState>,
    visitor: MaybeUser,
) -> Result<Response, AppError> {
    if let Some(session) = visitor.session.as_ref().filter(|s| !s.is_pre_session()) {
        sessions::delete(&state.db, session.id).await?;
        if let Some(user) = &visitor.user {
            tracing::info!(user_id = %user.id, "signed out");
        }
    }
    let clear = SiteCookie::session(&state.config).clear();
    Ok(with_cookies(
        Redirect::to("/login").into_response(),
        [clear],
    ))
}

async fn submit_logout_everywhere(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, AppError> {
    let ended = sessions::delete_all_for_user(&state.db, current.user.id, None).await?;
    tracing::info!(user_id = %current.user.id, sessions = ended, "signed out everywhere");
    let clear = SiteCookie::session(&state.config).clear();
    Ok(with_cookies(
        Redirect::to("/login").into_response(),
        [clear],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_messages_round_minutes_up() {
        let now = Timestamp::now();
        let minutes = |m: u64| std::time::Duration::from_secs(m);
        assert!(locked_message(now, now + minutes(30 * 60)).contains("30 minutes"));
        assert!(locked_message(now, now + minutes(61)).contains("2 minutes"));
        assert!(locked_message(now, now + minutes(5)).contains("1 minute,"));
    }
}
