//! A visitor with their own cookie jar, who reads CSRF tokens off pages and submits forms like a browser.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::CookieStore;
use reqwest::header;

use super::TestApp;

/// A password every policy rule accepts.
pub const PASSWORD: &str = "Tulip-Garden-42";

/// One browser: a cookie jar and the app's address.
#[derive(Clone)]
pub struct Visitor {
    pub client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: String,
}

impl TestApp {
    /// A new visitor with an empty cookie jar.
    pub fn visitor(&self) -> Visitor {
        Visitor::at(self.url(""))
    }

    /// A visitor who registered `username` (display name = username, email `<username>@example.com`,
    /// password [`PASSWORD`]) and is signed in.
    pub async fn signed_in(&self, username: &str) -> Visitor {
        Visitor::signed_in_at(self.url(""), username).await
    }
}

impl Visitor {
    /// A new visitor of the site at `base` (`http://host:port`) with an empty cookie jar.
    pub fn at(base: String) -> Self {
        Self::from_address(base, None)
    }

    /// A visitor of `base` whose connections come from `local` (another loopback address is another
    /// client, for what a proxy in front sees as the client's address).
    pub fn from_address(base: String, local: Option<std::net::IpAddr>) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(30))
            .local_address(local)
            .build()
            .expect("client");
        Self { client, jar, base }
    }

    /// A visitor of `base` who registered `username` and is signed in (see [`TestApp::signed_in`]).
    pub async fn signed_in_at(base: String, username: &str) -> Self {
        let visitor = Self::at(base);
        let response = visitor
            .register(
                username,
                &format!("{username}@example.com"),
                username,
                PASSWORD,
            )
            .await;
        assert_eq!(
            response.status(),
            303,
            "registration of {username} failed: {}",
            response.text().await.unwrap_or_default()
        );
        visitor
    }

    /// The same person on another instance of the site: a new jar holding this visitor's session.
    pub fn on(&self, base: String) -> Self {
        let other = Self::at(base);
        if let Some(session) = self.session_cookie() {
            other.set_session_cookie(&session);
        }
        other
    }
}

impl Visitor {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.expect("page text")
    }

    /// The masked CSRF token of the page at `path`.
    pub async fn csrf_token(&self, path: &str) -> String {
        csrf_token_in(&self.page(path).await)
    }

    /// Posts a form with `token` and a same-site Origin, as a browser does.
    pub async fn post_form(
        &self,
        path: &str,
        token: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", token)];
        form.extend_from_slice(fields);
        self.client
            .post(self.url(path))
            .header(header::ORIGIN, self.base.trim_end_matches('/'))
            .form(&form)
            .send()
            .await
            .expect("POST")
    }

    /// Opens `page`, takes its token, and submits `fields` to `action`.
    pub async fn submit(
        &self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let token = self.csrf_token(page).await;
        self.post_form(action, &token, fields).await
    }

    pub async fn register(
        &self,
        name: &str,
        email: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.submit(
            "/register",
            "/register",
            &[
                ("name", name),
                ("email", email),
                ("username", username),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await
    }

    /// Registers `username` (email `username@example.com`) through a proxy that says the client is
    /// `forwarded_for` (the `X-Forwarded-For` header as the proxy sends it).
    pub async fn register_forwarded(
        &self,
        forwarded_for: &str,
        username: &str,
    ) -> reqwest::Response {
        let token = self.csrf_token("/register").await;
        let email = format!("{username}@example.com");
        self.client
            .post(self.url("/register"))
            .header("x-forwarded-for", forwarded_for)
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", username),
                ("email", email.as_str()),
                ("username", username),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ])
            .send()
            .await
            .expect("POST /register")
    }

    pub async fn login(&self, identifier: &str, password: &str) -> reqwest::Response {
        self.submit(
            "/login",
            "/login",
            &[("identifier", identifier), ("password", password)],
        )
        .await
    }

    /// A JSON API call with this session's CSRF token; returns the status and the body (Null when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let token = self.csrf_token("/settings").await;
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("x-csrf-token", token)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API call");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, value)
    }

    /// Creates a companion through the API; returns its JSON.
    pub async fn create_companion(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, value) = self
            .api(reqwest::Method::POST, "/api/v1/companions", Some(body))
            .await;
        assert_eq!(status, 201, "create companion: {value}");
        value
    }

    /// Uploads a portrait through the API (multipart field `image`, optional square crop).
    pub async fn upload_portrait(
        &self,
        companion: &str,
        bytes: Vec<u8>,
        filename: &str,
        crop: Option<(u32, u32, u32)>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        use reqwest::multipart::{Form, Part};
        let mut form = Form::new().part("image", Part::bytes(bytes).file_name(filename.to_owned()));
        if let Some((x, y, size)) = crop {
            form = form
                .text("crop_x", x.to_string())
                .text("crop_y", y.to_string())
                .text("crop_size", size.to_string());
        }
        let token = self.csrf_token("/settings").await;
        let response = self
            .client
            .post(self.url(&format!("/api/v1/companions/{companion}/portrait")))
            .header("x-csrf-token", token)
            .header(header::ACCEPT, "application/json")
            .multipart(form)
            .send()
            .await
            .expect("POST portrait");
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Posts a multipart form with this session's token as its first part, as our pages' forms send it
    /// (the CSRF check reads at most the first 64 KiB to find it); `parts` adds the rest.
    pub async fn post_multipart(
        &self,
        path: &str,
        token_page: &str,
        parts: impl FnOnce(reqwest::multipart::Form) -> reqwest::multipart::Form,
    ) -> reqwest::Response {
        let token = self.csrf_token(token_page).await;
        let form = parts(reqwest::multipart::Form::new().text("csrf_token", token));
        self.client
            .post(self.url(path))
            .header(header::ORIGIN, self.base.trim_end_matches('/'))
            .multipart(form)
            .send()
            .await
            .expect("POST multipart")
    }

    /// The session cookie's value, if the jar holds one.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie("session")
    }

    /// The value of the cookie `name`, if the jar holds one.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&self.base).expect("base URL");
        let cookies = self.jar.cookies(&url)?;
        let prefix = format!("{name}=");
        cookies
            .to_str()
            .ok()?
            .split(';')
            .map(str::trim)
            .find_map(|pair| pair.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    }

    /// Replaces the jar's session cookie (to replay an old one).
    pub fn set_session_cookie(&self, value: &str) {
        self.set_cookie("session", value);
    }

    /// Sets the cookie `name` in the jar (to replay or forge one).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let url = reqwest::Url::parse(&self.base).expect("base URL");
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }
}

/// The token in `<meta name="csrf-token" content="…">`.
pub fn csrf_token_in(html: &str) -> String {
    let marker = r#"<meta name="csrf-token" content=""#;
    let start = html.find(marker).expect("csrf meta tag") + marker.len();
    let end = start + html[start..].find('"').expect("end of token");
    html[start..end].to_owned()
}
