//! The worker's HTTP client (webhooks, chain nodes, rate sources), and the JSON-RPC transport
//! of the chain adapters.

use crate::domain::detect::{RpcError, Transport};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// An agent that keeps up to `per_host` connections per host alive, answers every status
/// (no error for 4xx/5xx), and gives up after `timeout`.
pub fn agent(user_agent: &str, timeout: Duration, per_host: usize) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(user_agent)
        .max_idle_connections(per_host * 2)
        .max_idle_connections_per_host(per_host)
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::default(), CachingResolver::default())
}

/// ureq's resolver starts a thread per lookup when a timeout is set, i.e. per request even on a
/// kept-alive connection; this one remembers each host's addresses for a minute.
#[derive(Debug, Default)]
struct CachingResolver {
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        if let Some(key) = &key {
            if let Some((at, addrs)) = self.cache.lock().ok().and_then(|c| c.get(key).cloned()) {
                if at.elapsed() < Duration::from_secs(60) {
                    return Ok(addrs);
                }
            }
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        if let (Some(key), Ok(mut cache)) = (key, self.cache.lock()) {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

/// JSON-RPC over HTTP POST to a node (credentials in the URL become a Basic header).
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
}

impl HttpTransport {
    pub fn new(url: &str, timeout: Duration) -> HttpTransport {
        let (url, authorization) = crate::domain::detect::rpc::split_basic_auth(url);
        HttpTransport { agent: agent("invoices-worker", timeout, 2), url, authorization }
    }
}

impl Transport for HttpTransport {
    fn post(&self, body: &str) -> Result<String, RpcError> {
        let mut request = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = request.send(body).map_err(|e| RpcError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        // Bitcoin Core answers RPC errors with HTTP 500 and a JSON-RPC error body
        if !(200..300).contains(&status) && !text.trim_start().starts_with('{') {
            return Err(RpcError::Transport(format!("HTTP {status}")));
        }
        Ok(text)
    }
}
