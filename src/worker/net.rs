//! The worker's HTTP client (webhooks, chain nodes, rate sources), and the JSON-RPC transport
//! of the chain adapters.

use crate::domain::detect::{RpcError, Transport};
use crate::domain::destination;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// An agent that keeps up to `per_host` connections per host alive, answers every status
/// (no error for 4xx/5xx), and gives up after `timeout`. For the operator's own services (chain
/// nodes, rate sources), which may well be on loopback or a private network.
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

/// The agent for merchants' URLs (webhook endpoints, invoice callbacks): every address a host
/// resolves to must be public unless `allow_private` is set (checked on the addresses it then
/// connects to, so a name that changes its answer cannot slip through), no redirect is followed
/// (a 3xx is the answer), and no proxy from the environment is used.
pub fn merchant_agent(user_agent: &str, timeout: Duration, per_host: usize, allow_private: Arc<AtomicBool>) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(user_agent)
        .max_idle_connections(per_host * 2)
        .max_idle_connections_per_host(per_host)
        .build();
    let resolver = CachingResolver { guard: Some(allow_private), ..CachingResolver::default() };
    ureq::Agent::with_parts(config, DefaultConnector::default(), resolver)
}

/// ureq's resolver starts a thread per lookup when a timeout is set, i.e. per request even on a
/// kept-alive connection; this one remembers each host's addresses for a minute. With a guard
/// it refuses hosts that resolve to a non-public address while the guard (allow private
/// destinations) is off.
#[derive(Debug, Default)]
struct CachingResolver {
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    guard: Option<Arc<AtomicBool>>,
}

impl CachingResolver {
    fn checked(&self, uri: &Uri, addrs: ResolvedSocketAddrs) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(allow) = &self.guard else { return Ok(addrs) };
        let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
        destination::check_resolved(uri.host().unwrap_or(""), &ips, allow.load(Ordering::Relaxed))
            .map_err(|refused| ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, refused)))?;
        Ok(addrs)
    }
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
                    return self.checked(uri, addrs);
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
        self.checked(uri, addrs)
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
