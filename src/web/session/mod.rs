//! Server-side sessions: the cookie, the per-request lookup, and the `CurrentUser` / `MaybeUser` extractors.
//!
//! Policy: the cookie holds a random 256-bit token; the database keeps only its SHA-256, so a leaked
//! table cannot be replayed. A session ends `SESSION_DAYS` after sign-in, or after `SESSION_IDLE_MINUTES`
//! without a request, whichever comes first. Every session has its own CSRF secret; an anonymous visitor
//! gets a pre-session for the login and register forms, which is a signed cookie holding its CSRF secret
//! ([`pre`]) — nothing is stored for anonymous visitors. Sign-in replaces the pre-session with a new
//! session (new token, new secret: no fixation); sign-out deletes it; a password change gives the
//! current session a new token. Cookies are HttpOnly and SameSite=Lax, and `__Host-`-prefixed and Secure
//! behind HTTPS.

pub mod pre;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use uuid::Uuid;

use super::csrf_token;
pub use super::identity::SessionUser;
use super::keys::Purpose;
use super::negotiate::wants_json;
use super::page::PageContext;
use crate::config::Config;
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;

/// How long a pre-session (an anonymous visitor's form protection) lives.
pub const PRE_SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a browser that signed in is remembered as trusted (its device cookie).
pub const DEVICE_COOKIE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A live session or pre-session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Public id (listed and revoked on the settings page).
    pub id: Uuid,
    /// The signed-in user; `None` for a pre-session.
    pub user: Option<SessionUser>,
    csrf_secret: [u8; 32],
    /// When it began.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
}

impl Session {
    /// A freshly masked CSRF token for a page or form (differs every call, all valid). Fails closed: without
    /// randomness there is no token (and no page), never an unmasked secret.
    pub fn csrf_token(&self) -> Result<String, AppError> {
        csrf_token::mask(&self.csrf_secret).map_err(|err| {
            AppError::Internal(anyhow::anyhow!("no randomness for a CSRF token: {err}"))
        })
    }

    /// True for an anonymous visitor's pre-session (a signed cookie, no row).
    pub fn is_pre_session(&self) -> bool {
        self.user.is_none()
    }

    /// True when `token` is a masked form of this session's secret.
    pub fn csrf_token_matches(&self, token: &str) -> bool {
        csrf_token::matches(&self.csrf_secret, token)
    }

    /// The layout data for a page rendered in this session.
    pub fn page(
        &self,
        title: impl Into<String>,
        section: &'static str,
    ) -> Result<PageContext, AppError> {
        Ok(PageContext {
            csrf_token: self.csrf_token()?,
            user: self.user.clone(),
            ..PageContext::new(title, section)
        })
    }
}

/// The session of the current request, if any (a request extension set by [`load_session`]).
#[derive(Debug, Clone, Default)]
pub struct CurrentSession(pub Option<Arc<Session>>);

/// Name and attributes of one of our cookies for a deployment.
#[derive(Debug, Clone, Copy)]
pub struct SiteCookie {
    name: &'static str,
    secure: bool,
}

impl SiteCookie {
    fn named(config: &Config, plain: &'static str, host: &'static str) -> Self {
        if config.is_https() {
            Self {
                name: host,
                secure: true,
            }
        } else {
            Self {
                name: plain,
                secure: false,
            }
        }
    }

    /// The session cookie: `__Host-session` + Secure behind HTTPS, `session` otherwise.
    pub fn session(config: &Config) -> Self {
        Self::named(config, "session", "__Host-session")
    }

    /// The anonymous visitor's pre-session cookie.
    pub fn pre_session(config: &Config) -> Self {
        Self::named(config, "presession", "__Host-presession")
    }

    /// The device cookie of a browser that signed in successfully before.
    pub fn device(config: &Config) -> Self {
        Self::named(config, "device", "__Host-device")
    }

    /// The token the browser sent, if any.
    pub fn read(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == self.name)
            .map(|cookie| cookie.value().to_owned())
            .filter(|value| !value.is_empty() && value.len() <= 200)
    }

    /// `Set-Cookie` for a new token living `lifetime`.
    pub fn set(&self, token: &str, lifetime: Duration) -> HeaderValue {
        let max_age =
            time::Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
        let mut cookie = Cookie::new(self.name, token.to_owned());
        cookie.set_max_age(max_age);
        self.header(cookie)
    }

    /// `Set-Cookie` that removes the cookie.
    pub fn clear(&self) -> HeaderValue {
        let mut cookie = Cookie::new(self.name, "");
        cookie.set_max_age(time::Duration::ZERO);
        self.header(cookie)
    }

    fn header(&self, mut cookie: Cookie<'static>) -> HeaderValue {
        cookie.set_path("/");
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("session=; Max-Age=0; Path=/"))
    }
}

/// Looks the session cookie up (or, for anonymous visitors, checks the pre-session cookie's signature) and
/// puts [`CurrentSession`] into the request.
pub async fn load_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let now = Timestamp::now();
    let mut session = match SiteCookie::session(&state.config).read(request.headers()) {
        None => None,
        Some(token) => {
            match store::load(&state.db, &token, now, state.config.auth.session_idle()).await {
                Ok(session) => session,
                Err(err) => return AppError::from(err).into_response(),
            }
        }
    };
    if session.is_none()
        && let Some(value) = SiteCookie::pre_session(&state.config).read(request.headers())
    {
        match state.keys.key(Purpose::PreSession).await {
            Ok(key) => session = pre::read(&key, &value, now),
            // Without the keys (an unmigrated database) the visitor is simply anonymous.
            Err(err) => tracing::warn!(error = %err, "cannot check a pre-session"),
        }
    }
    request
        .extensions_mut()
        .insert(CurrentSession(session.map(Arc::new)));
    next.run(request).await
}

/// The visitor, signed in or not.
#[derive(Debug, Clone)]
pub struct MaybeUser {
    /// The signed-in user, if any.
    pub user: Option<SessionUser>,
    /// The session or pre-session, if any.
    pub session: Option<Arc<Session>>,
}

impl MaybeUser {
    /// The layout data for a page (with a CSRF token when there is a session).
    pub fn page(
        &self,
        title: impl Into<String>,
        section: &'static str,
    ) -> Result<PageContext, AppError> {
        match &self.session {
            Some(session) => session.page(title, section),
            None => Ok(PageContext::new(title, section)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<CurrentSession>()
            .and_then(|current| current.0.clone());
        Ok(Self {
            user: session.as_ref().and_then(|s| s.user.clone()),
            session,
        })
    }
}

/// A signed-in user; pages redirect anonymous visitors to `/login?next=…`, APIs answer 401.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user.
    pub user: SessionUser,
    /// Their session.
    pub session: Arc<Session>,
}

impl CurrentUser {
    /// The layout data for a page.
    pub fn page(
        &self,
        title: impl Into<String>,
        section: &'static str,
    ) -> Result<PageContext, AppError> {
        self.session.page(title, section)
    }
}

/// Why a `CurrentUser` could not be extracted.
#[derive(Debug)]
pub enum SignInRequired {
    /// A page: go and sign in, then come back.
    Redirect(String),
    /// An API call: 401.
    Unauthorized,
}

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        match self {
            Self::Redirect(to) => Redirect::to(&to).into_response(),
            Self::Unauthorized => {
                AppError::Unauthorized("Please sign in to continue.".into()).into_response()
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = SignInRequired;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visitor = MaybeUser::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        if let (Some(user), Some(session)) = (visitor.user, visitor.session) {
            return Ok(Self { user, session });
        }
        if wants_json(&parts.headers, parts.uri.path()) {
            return Err(SignInRequired::Unauthorized);
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        Err(SignInRequired::Redirect(format!("/login?next={next}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(public_url: Option<&str>) -> Config {
        let mut vars = vec![];
        if let Some(url) = public_url {
            vars.push(("PUBLIC_URL", url));
        }
        Config::from_vars(vars).expect("test setup is valid")
    }

    #[test]
    fn cookies_are_http_only_lax_and_host_prefixed_behind_https() {
        let plain = SiteCookie::session(&config(None));
        let value = plain.set("tok", Duration::from_secs(60));
        let text = value.to_str().expect("test setup is valid");
        assert!(text.starts_with("session=tok"), "{text}");
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax"));
        assert!(text.contains("Path=/") && text.contains("Max-Age=60"));
        assert!(!text.contains("Secure"));

        let secure = SiteCookie::session(&config(Some("https://hub.example.com")));
        let text = secure.set("tok", Duration::from_secs(60));
        let text = text.to_str().expect("test setup is valid");
        assert!(
            text.starts_with("__Host-session=tok") && text.contains("Secure"),
            "{text}"
        );
        assert!(!text.contains("Domain"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let jar = SiteCookie::session(&config(None));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; session=abc123; other=1"),
        );
        assert_eq!(jar.read(&headers).as_deref(), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("session="));
        assert_eq!(jar.read(&headers), None);
    }
}
