//! JSON-RPC 2.0 over a [`Transport`]: what every node here speaks (Ethereum's `eth_*`, Bitcoin
//! Core's RPC, Kaspa's wRPC JSON). The transport is the worker's HTTP client; the tests answer
//! from canned JSON.

use serde_json::{json, Value};
use std::fmt;

/// Sends one JSON-RPC request body and returns the response body.
pub trait Transport: Send {
    fn post(&self, body: &str) -> Result<String, RpcError>;
}

/// Why a call failed: the node is unreachable, answered an error, or answered garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// Connection refused, timeout, HTTP error status.
    Transport(String),
    /// The node answered with a JSON-RPC error object.
    Node { code: i64, message: String },
    /// The answer was not what the protocol promises.
    Malformed(String),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Transport(e) => write!(f, "node unreachable: {e}"),
            RpcError::Node { code, message } => write!(f, "node error {code}: {message}"),
            RpcError::Malformed(e) => write!(f, "malformed answer: {e}"),
        }
    }
}

impl std::error::Error for RpcError {}

pub fn malformed(what: impl Into<String>) -> RpcError {
    RpcError::Malformed(what.into())
}

fn result_of(mut response: Value, method: &str) -> Result<Value, RpcError> {
    if !response.is_object() {
        return Err(malformed(format!("{method}: not a JSON-RPC response object")));
    }
    if let Some(err) = response.get("error").filter(|e| !e.is_null()) {
        return Err(RpcError::Node {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("unknown error").chars().take(300).collect(),
        });
    }
    match response.get_mut("result") {
        Some(v) => Ok(v.take()),
        None => Err(malformed(format!("{method}: response without result"))),
    }
}

/// One call.
pub fn call(t: &dyn Transport, method: &str, params: Value) -> Result<Value, RpcError> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let text = t.post(&body)?;
    let response: Value = serde_json::from_str(&text)
        .map_err(|e| malformed(format!("{method}: not JSON ({e})")))?;
    result_of(response, method)
}

/// Several calls in one request (a JSON-RPC batch), answers in request order.
pub fn batch(t: &dyn Transport, calls: &[(&str, Value)]) -> Result<Vec<Value>, RpcError> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let body = Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
            .collect(),
    )
    .to_string();
    let text = t.post(&body)?;
    let responses: Value = serde_json::from_str(&text).map_err(|e| malformed(format!("batch: not JSON ({e})")))?;
    let Value::Array(responses) = responses else {
        // a node without batch support answers one error object
        return Err(result_of(responses, "batch").err().unwrap_or_else(|| malformed("batch: not an array")));
    };
    let mut out: Vec<Option<Value>> = vec![None; calls.len()];
    for r in responses {
        let id = r.get("id").and_then(Value::as_u64).ok_or_else(|| malformed("batch: answer without id"))? as usize;
        let method = calls.get(id).map(|c| c.0).ok_or_else(|| malformed("batch: answer with unknown id"))?;
        out[id] = Some(result_of(r, method)?);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| malformed(format!("batch: no answer to {}", calls[i].0))))
        .collect()
}

/// Reads a `0x…` quantity.
pub fn hex_u64(v: &Value, what: &str) -> Result<u64, RpcError> {
    let s = v.as_str().ok_or_else(|| malformed(format!("{what}: not a hex string")))?;
    let digits = s.strip_prefix("0x").ok_or_else(|| malformed(format!("{what}: no 0x prefix")))?;
    if digits.is_empty() || digits.len() > 16 {
        return Err(malformed(format!("{what}: bad quantity {s:?}")));
    }
    u64::from_str_radix(digits, 16).map_err(|_| malformed(format!("{what}: bad quantity {s:?}")))
}

/// Reads a `0x…` quantity up to 128 bits (wei, token units).
pub fn hex_u128(v: &Value, what: &str) -> Result<u128, RpcError> {
    let s = v.as_str().ok_or_else(|| malformed(format!("{what}: not a hex string")))?;
    parse_hex_u128(s).ok_or_else(|| malformed(format!("{what}: bad quantity {s:?}")))
}

/// `0x`-prefixed hex (leading zeros allowed, e.g. a 32-byte log word) to u128; none if empty,
/// not hex, or above 128 bits.
pub fn parse_hex_u128(s: &str) -> Option<u128> {
    let all = s.strip_prefix("0x")?;
    let digits = all.trim_start_matches('0');
    if digits.is_empty() {
        return (!all.is_empty()).then_some(0);
    }
    if digits.len() > 32 {
        return None;
    }
    u128::from_str_radix(digits, 16).ok()
}

pub fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, RpcError> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| malformed(format!("{what}: no string {key}")))
}

/// `http://user:password@host/…` -> (`http://host/…`, `Basic base64(user:password)`).
pub fn split_basic_auth(url: &str) -> (String, Option<String>) {
    use base64::Engine;
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return (url.to_string(), None) };
    let userinfo = &rest[..at];
    let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(userinfo));
    (format!("{scheme}://{}", &rest[at + 1..]), Some(header))
}
