//! A health probe that asks an HTTP endpoint whether it answers with success.

use futures_util::future::BoxFuture;

use crate::config::Secret;
use crate::ops::health::{CHECK_TIMEOUT, Probe};

/// `GET url` (with a bearer key when given); any 2xx is healthy.
pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
    bearer: Option<Secret>,
}

impl HttpProbe {
    /// A probe of `url`.
    pub fn new(client: reqwest::Client, url: String, bearer: Option<Secret>) -> Self {
        Self {
            client,
            url,
            bearer,
        }
    }
}

impl Probe for HttpProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut request = self.client.get(&self.url).timeout(CHECK_TIMEOUT);
            if let Some(key) = &self.bearer {
                request = request.bearer_auth(key.expose());
            }
            let response = request.send().await.map_err(|err| {
                if err.is_timeout() {
                    "timed out".to_owned()
                } else if err.is_connect() {
                    "connection refused or host unreachable".to_owned()
                } else {
                    // Without the URL: it may carry a key in its query.
                    err.without_url().to_string()
                }
            })?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered HTTP {}", status.as_u16()))
            }
        })
    }
}
