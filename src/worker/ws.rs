//! A WebSocket transport for chain adapters that speak over one (Kaspa's wRPC JSON): one
//! connection per chain, kept between polls and opened again after an error; one request at a
//! time, its reply being the next message that carries an `id` (notifications carry none).

use crate::domain::detect::{RpcError, Transport};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

pub struct WsTransport {
    url: String,
    timeout: Duration,
    conn: Mutex<Option<WebSocket<TcpStream>>>,
}

impl WsTransport {
    pub fn new(url: &str, timeout: Duration) -> WsTransport {
        WsTransport { url: url.to_string(), timeout, conn: Mutex::new(None) }
    }

    fn connect(&self) -> Result<WebSocket<TcpStream>, RpcError> {
        let rest = self
            .url
            .strip_prefix("ws://")
            .ok_or_else(|| RpcError::Transport(format!("{}: only ws:// URLs are supported", self.url)))?;
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| RpcError::Transport(format!("resolving {hostport}: {e}")))?
            .next()
            .ok_or_else(|| RpcError::Transport(format!("no address for {hostport}")))?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| RpcError::Transport(format!("connecting to {addr}: {e}")))?;
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(self.timeout));
        let _ = stream.set_nodelay(true);
        let (ws, _) = tungstenite::client(self.url.as_str(), stream)
            .map_err(|e| RpcError::Transport(format!("WebSocket handshake with {addr}: {e}")))?;
        Ok(ws)
    }
}

fn exchange(ws: &mut WebSocket<TcpStream>, body: &str) -> Result<String, RpcError> {
    let err = |e: tungstenite::Error| RpcError::Transport(format!("WebSocket: {e}"));
    ws.send(Message::text(body)).map_err(err)?;
    // a reply is a text message with an id; notifications (no id) and pings are skipped
    for _ in 0..10_000 {
        match ws.read().map_err(err)? {
            Message::Text(text) => {
                let has_id = serde_json::from_str::<serde_json::Value>(&text)
                    .map(|v| v.get("id").is_some_and(|id| !id.is_null()))
                    .unwrap_or(true);
                if has_id {
                    return Ok(text.to_string());
                }
            }
            Message::Close(_) => return Err(RpcError::Transport("the node closed the WebSocket".into())),
            _ => {}
        }
    }
    Err(RpcError::Transport("no reply among 10000 messages".into()))
}

impl Transport for WsTransport {
    fn post(&self, body: &str) -> Result<String, RpcError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let result = exchange(guard.as_mut().expect("connected"), body);
        if result.is_err() {
            *guard = None; // opened again by the next request
        }
        result
    }
}
