//! Small HTTP servers standing in for the providers we cannot run here (language model, image backend).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A fake provider serving `router` on a free port.
pub struct FakeServer {
    pub address: SocketAddr,
    handle: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let address = listener.local_addr().expect("fake address");
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { address, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Counts requests.
#[derive(Clone, Default)]
pub struct Hits(Arc<AtomicUsize>);

impl Hits {
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
