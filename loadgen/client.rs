//! The harness's users: each signs up through the pages (as a browser would: the form's CSRF token, the
//! session cookie), creates companions through the JSON API, and chats — Send, then the reply's event stream
//! read token by token. Every token's text is the provider's send time, so each one yields a relay overhead.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::clock;

/// Every harness user's password.
const PASSWORD: &str = "Loadgen-Harness-Quiet-Lantern-57";

/// A signed-in user of the server under test.
#[derive(Clone)]
pub struct User {
    http: reqwest::Client,
    base: String,
    /// Where reply streams are read: `base`, or another instance of the same deployment.
    stream_base: String,
    cookie: String,
    csrf: String,
}

/// The measurements of one reply.
#[derive(Debug, Default)]
pub struct ReplyTimes {
    /// Send → first token in the client, in microseconds (the provider's time to first token included).
    pub first_token_us: Option<u64>,
    /// Per token: received in the client − sent by the provider, in microseconds.
    pub relay_us: Vec<u64>,
    /// Tokens received.
    pub tokens: u32,
}

/// The HTTP client every user shares (one connection pool; no redirects, cookies kept by hand).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(300))
        .build()?)
}

fn remember_cookies(jar: &mut BTreeMap<String, String>, response: &reqwest::Response) {
    for header in response.headers().get_all(SET_COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or("");
        if let Some((name, value)) = pair.split_once('=') {
            let cleared = value.is_empty() || text.to_ascii_lowercase().contains("max-age=0");
            if cleared {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }
}

fn cookie_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn between<'a>(page: &'a str, before: &str, after: &str) -> Option<&'a str> {
    let start = page.find(before)? + before.len();
    let len = page[start..].find(after)?;
    Some(&page[start..start + len])
}

impl User {
    /// Registers `username` and signs in (the registration signs in).
    pub async fn sign_up(
        http: &reqwest::Client,
        base: &str,
        username: &str,
    ) -> anyhow::Result<Self> {
        let mut jar = BTreeMap::new();
        let password = PASSWORD;
        let email = format!("{username}@loadgen.example");
        let registered = submit_form(
            http,
            &format!("{base}/register"),
            &mut jar,
            &[
                ("name", username),
                ("email", email.as_str()),
                ("username", username),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await?;
        if !registered.status().is_redirection() {
            bail!(
                "registering {username} answered {}: {}",
                registered.status(),
                registered
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        remember_cookies(&mut jar, &registered);
        let cookie = cookie_header(&jar);
        let page = http
            .get(format!("{base}/companions"))
            .header(COOKIE, &cookie)
            .send()
            .await?
            .text()
            .await?;
        let csrf = between(&page, r#"<meta name="csrf-token" content=""#, "\"")
            .ok_or_else(|| anyhow!("signed-in pages have no CSRF token: is {username} signed in?"))?
            .to_owned();
        Ok(Self {
            http: http.clone(),
            base: base.to_owned(),
            stream_base: base.to_owned(),
            cookie,
            csrf,
        })
    }

    async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// The same user reading reply streams from `base` (another instance on the same database).
    pub fn streaming_from(mut self, base: &str) -> Self {
        self.stream_base = base.trim_end_matches('/').to_owned();
        self
    }

    /// Creates a companion; its id.
    pub async fn create_companion(&self, name: &str) -> anyhow::Result<String> {
        let created = self
            .post_json("/api/v1/companions", json!({"name": name, "age": 30}))
            .await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the created companion has no id: {created}"))
    }

    /// Sends a message to `companion` and reads the reply's stream to its end.
    pub async fn chat_once(&self, companion: &str, text: &str) -> anyhow::Result<ReplyTimes> {
        let sent_at = clock::micros();
        let stream_url = self.send(companion, text).await?;
        self.read_stream(&stream_url, sent_at, || {}).await
    }

    /// Sends a message to `companion`; the path of the reply's event stream.
    pub async fn send(&self, companion: &str, text: &str) -> anyhow::Result<String> {
        let accepted = self
            .post_json(
                &format!("/api/v1/companions/{companion}/messages"),
                json!({"content": text}),
            )
            .await?;
        accepted["stream_url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the send was accepted without a stream: {accepted}"))
    }

    /// Reads the event stream at `stream_url` to its end (`connected` is called once the server has answered
    /// with the stream); first-token time counted from `sent_at` (harness clock).
    pub async fn read_stream(
        &self,
        stream_url: &str,
        sent_at: u64,
        connected: impl FnOnce(),
    ) -> anyhow::Result<ReplyTimes> {
        let response = self
            .http
            .get(format!("{}{stream_url}", self.stream_base))
            .header(COOKIE, &self.cookie)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("the stream answered {}", response.status());
        }
        connected();
        let mut events = response.bytes_stream().eventsource();
        let mut times = ReplyTimes::default();
        while let Some(event) = events.next().await {
            let event = event.context("the event stream broke")?;
            match event.event.as_str() {
                "token" => {
                    let now = clock::micros();
                    times
                        .first_token_us
                        .get_or_insert(now.saturating_sub(sent_at));
                    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    // One event may carry several tokens when the server coalesced them.
                    for stamp in data["text"].as_str().unwrap_or("").split_whitespace() {
                        if let Ok(sent) = stamp.parse::<u64>() {
                            times.relay_us.push(now.saturating_sub(sent));
                            times.tokens += 1;
                        }
                    }
                }
                "done" => return Ok(times),
                "error" => bail!("the reply failed: {}", event.data),
                _ => {}
            }
        }
        bail!("the stream ended without done or error")
    }

    /// Loads a signed-in page; its size in bytes.
    pub async fn page(&self, path: &str) -> anyhow::Result<usize> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("GET {path} answered {status}");
        }
        Ok(body.len())
    }
}

/// Signs `username` (registered by [`User::sign_up`]) in through the sign-in form, as a browser does.
pub async fn sign_in(http: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<()> {
    let mut jar = BTreeMap::new();
    let signed_in = submit_form(
        http,
        &format!("{base}/login"),
        &mut jar,
        &[
            ("next", ""),
            ("identifier", username),
            ("password", PASSWORD),
        ],
    )
    .await?;
    let status = signed_in.status();
    let session = signed_in
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|cookie| cookie.to_str().is_ok_and(|c| !c.contains("Max-Age=0")));
    if !status.is_redirection() || !session {
        bail!("signing {username} in answered {status} without a session");
    }
    Ok(())
}

/// Loads the form page at `url` and submits it with `fields` and the page's CSRF token, as a browser does;
/// the cookies both answers set are kept in `jar`. The answer to the submission is returned as it came.
async fn submit_form(
    http: &reqwest::Client,
    url: &str,
    jar: &mut BTreeMap<String, String>,
    fields: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    let form = http.get(url).send().await?;
    remember_cookies(jar, &form);
    let page = form.text().await?;
    let token = between(&page, r#"name="csrf_token" value=""#, "\"")
        .ok_or_else(|| anyhow!("the form at {url} has no CSRF token"))?
        .to_owned();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", &token)
        .extend_pairs(fields)
        .finish();
    Ok(http
        .post(url)
        .header(COOKIE, cookie_header(jar))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?)
}
