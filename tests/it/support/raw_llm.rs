//! A chat-completions server written on raw TCP, for what a framework server never does: an HTTP/1.1
//! stream with `Connection: close` and neither `Content-Length` nor chunked encoding, whose end is the
//! socket closing — so a reply cut upstream looks, at the HTTP level, exactly like a complete one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::fake_llm::default_analysis;

/// What one streamed call sends before the server closes the socket.
#[derive(Clone)]
pub enum RawStream {
    /// Nothing until the gate lets it go (so a test can listen before the cut), then these pieces, then
    /// close: no `finish_reason`, no `[DONE]`.
    HeldThenCloseAfter(Arc<Semaphore>, Vec<String>),
    /// These pieces, a `finish_reason: "stop"` chunk and `[DONE]`, then close.
    Complete(Vec<String>),
}

#[derive(Default)]
struct Script {
    streams: VecDeque<RawStream>,
    requests: Vec<Value>,
}

/// The server and its script; stops when dropped.
pub struct RawLlm {
    address: SocketAddr,
    script: Arc<Mutex<Script>>,
    handle: JoinHandle<()>,
}

impl RawLlm {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw fake");
        let address = listener.local_addr().expect("raw fake address");
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let handle = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, shared.clone()));
            }
        });
        Self {
            address,
            script,
            handle,
        }
    }

    /// Environment for a `TestApp` talking to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LLM_BASE_URL".into(), format!("http://{}/v1", self.address)),
            ("LLM_MODEL".into(), "raw-model".into()),
            ("RATE_LIMIT_CHAT".into(), "off".into()),
        ]
    }

    pub fn stream(&self, stream: RawStream) {
        self.script.lock().unwrap().streams.push_back(stream);
    }

    /// The streamed requests so far.
    pub fn reply_requests(&self) -> usize {
        let script = self.script.lock().unwrap();
        script
            .requests
            .iter()
            .filter(|r| r["stream"] == true)
            .count()
    }
}

impl Drop for RawLlm {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn chunk(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// Reads one request (headers, then `Content-Length` bytes) and writes the scripted answer.
async fn answer(mut socket: TcpStream, script: Arc<Mutex<Script>>) {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 8192];
    let (header_end, length) = loop {
        let Ok(n) = socket.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while received.len() < header_end + length {
        let Ok(n) = socket.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let body: Value =
        serde_json::from_slice(&received[header_end..header_end + length]).unwrap_or(Value::Null);
    let streamed = body["stream"] == true;
    let next = {
        let mut script = script.lock().unwrap();
        script.requests.push(body);
        if streamed {
            script.streams.pop_front()
        } else {
            None
        }
    };
    if !streamed {
        let answer = json!({"id": "a", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": default_analysis()}, "finish_reason": "stop"}]})
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        return;
    }
    let mut response = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    let piece = |text: &str| {
        chunk(&json!({"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}))
    };
    match next.unwrap_or_else(|| RawStream::Complete(vec!["Fine.".into()])) {
        RawStream::HeldThenCloseAfter(gate, pieces) => {
            let Ok(permit) = gate.acquire().await else {
                return;
            };
            permit.forget();
            for text in pieces {
                response.push_str(&piece(&text));
            }
        }
        RawStream::Complete(pieces) => {
            for text in pieces {
                response.push_str(&piece(&text));
            }
            response.push_str(&chunk(
                &json!({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            ));
            response.push_str("data: [DONE]\n\n");
        }
    }
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
