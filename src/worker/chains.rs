//! The chains task: every active row of `invoices_internal.chains` is polled on its own thread
//! (one poll in flight per chain) through its family's adapter (`domain::detect`), and the
//! findings are recorded by `invoices_internal.record_chain_poll` in one transaction. Each
//! chain has its own entry in `worker_status` (`chain <id>`) with back-off after errors; a
//! failing node never holds up the other chains or tasks. Chain rows are re-read every second,
//! so a change by SQL applies at the next poll.

use super::http::HttpTransport;
use super::{in_transaction, Task};
use crate::domain::detect::{self, bitcoin::Bitcoin, evm, kaspa::Kaspa, ChainAdapter, PollInput, PollResult, RpcError, Watched};
use pgrx::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ChainConfig {
    id: String,
    family: String,
    /// mainnet, testnet, regtest, devnet or simnet: the node must be on it (Bitcoin, Kaspa)
    network: String,
    rpc_url: String,
    chain_id: Option<u64>,
    assets: Vec<String>,
    tokens: serde_json::Value,
    poll_interval_ms: u64,
}

#[derive(Deserialize)]
struct Input {
    cursor: Option<detect::BlockRef>,
    recent: Vec<detect::BlockRef>,
    start_height: Option<u64>,
    rescan_from: Option<u64>,
    max_blocks: u64,
    watched: Vec<String>,
    watch_at: serde_json::Value,
}

struct Finished {
    watch_at: serde_json::Value,
    adapter: Box<dyn ChainAdapter>,
    result: Result<PollResult, RpcError>,
    watched: usize,
    elapsed: Duration,
}

struct Chain {
    config: ChainConfig,
    task: Task,
    adapter: Option<Box<dyn ChainAdapter>>,
    in_flight: Option<Receiver<Finished>>,
    /// The row changed while a poll was in flight: its adapter is not kept.
    adapter_stale: bool,
    /// The row is gone or inactive: no new poll starts.
    removed: bool,
}

fn adapter_for(c: &ChainConfig) -> Result<Box<dyn ChainAdapter>, String> {
    if c.family == "kaspa" {
        // wRPC JSON over a WebSocket (kaspad --rpclisten-json)
        let transport = Box::new(super::ws::WsTransport::new(&c.rpc_url, Duration::from_secs(10)));
        return Ok(Box::new(Kaspa::new(transport, "KAS").with_network(&c.network)));
    }
    let transport = Box::new(HttpTransport::new(&c.rpc_url, Duration::from_secs(10)));
    match c.family.as_str() {
        "evm" => {
            let mut tokens = Vec::new();
            if let Some(map) = c.tokens.as_object() {
                for (asset, t) in map {
                    let contract = t.get("contract").and_then(|v| v.as_str()).ok_or("token without contract")?;
                    let decimals = t
                        .get("decimals")
                        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                        .ok_or("token without decimals")?;
                    tokens.push(evm::Token { asset: asset.clone(), contract: contract.to_string(), decimals: decimals as u32 });
                }
            }
            let native = if c.assets.iter().any(|a| a == "ETH") { "ETH" } else { "" };
            Ok(Box::new(evm::Evm::new(transport, native, tokens).with_chain_id(c.chain_id)))
        }
        "bitcoin" => Ok(Box::new(Bitcoin::new(transport, "BTC").with_network(&c.network))),
        other => Err(format!("no adapter for the {other} family yet")),
    }
}

#[derive(Default)]
pub struct Chains {
    chains: HashMap<String, Chain>,
    read_at: Option<Instant>,
}

impl Chains {
    /// Re-reads the chain rows (every second), records finished polls, starts due ones. True
    /// while a poll is in flight or one was just recorded: the worker then ticks again at once,
    /// so findings (and their webhooks) do not wait for the naptime.
    pub fn tick(&mut self) -> bool {
        if self.read_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.read_at = Some(Instant::now());
            match in_transaction(|| {
                Spi::get_one::<pgrx::JsonB>("select invoices_internal.active_chains()")
                    .map_err(|e| e.to_string())
                    .map(|v| v.map(|j| j.0).unwrap_or_default())
            }) {
                Ok(rows) => match serde_json::from_value::<Vec<ChainConfig>>(rows) {
                    Ok(configs) => self.reconcile(configs),
                    Err(e) => warning!("invoices worker: could not read the chains: {e}"),
                },
                Err(e) => warning!("invoices worker: could not read the chains: {e}"),
            }
        }
        let mut busy = false;
        for chain in self.chains.values_mut() {
            busy |= chain.step();
        }
        busy
    }

    fn reconcile(&mut self, configs: Vec<ChainConfig>) {
        // a chain removed or deactivated by SQL: gone now, or once its poll in flight is recorded
        self.chains.retain(|id, c| {
            c.removed = !configs.iter().any(|k| &k.id == id);
            !c.removed || c.in_flight.is_some()
        });
        for config in configs {
            match self.chains.get_mut(&config.id) {
                Some(chain) if chain.config == config => {}
                Some(chain) => {
                    // changed by SQL: a new adapter at the next poll
                    chain.task.every = Duration::from_millis(config.poll_interval_ms);
                    chain.config = config;
                    chain.adapter = None;
                    chain.adapter_stale = chain.in_flight.is_some();
                }
                None => {
                    let name: &'static str = Box::leak(format!("chain {}", config.id).into_boxed_str());
                    let task = Task::new(name, Duration::from_millis(config.poll_interval_ms));
                    self.chains.insert(config.id.clone(), Chain { config, task, adapter: None, in_flight: None, adapter_stale: false, removed: false });
                }
            }
        }
    }
}

impl Chain {
    /// True if a poll is in flight or was just recorded.
    fn step(&mut self) -> bool {
        if let Some(rx) = &self.in_flight {
            let finished = match rx.try_recv() {
                Ok(f) => f,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    self.in_flight = None;
                    self.task.finished(Err("the poll thread died".into()));
                    return false;
                }
            };
            self.in_flight = None;
            if !std::mem::take(&mut self.adapter_stale) {
                self.adapter = Some(finished.adapter);
            }
            let outcome = self.record(finished.result, finished.watch_at, finished.watched, finished.elapsed);
            self.task.finished(outcome);
            return true;
        }
        if self.removed || Instant::now() < self.task.next_run {
            return false;
        }
        if self.adapter.is_none() {
            match adapter_for(&self.config) {
                Ok(a) => self.adapter = Some(a),
                Err(e) => {
                    self.task.finished(Err(e));
                    return false;
                }
            }
        }
        let id = self.config.id.clone();
        let input = in_transaction(move || {
            Spi::get_one_with_args::<pgrx::JsonB>("select invoices_internal.chain_poll_input($1)", &[id.into()])
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "chain removed".to_string())
        });
        let input: Input = match input.and_then(|j| serde_json::from_value(j.0).map_err(|e| e.to_string())) {
            Ok(i) => i,
            Err(e) => {
                self.task.finished(Err(e));
                return false;
            }
        };
        let Some(mut adapter) = self.adapter.take() else { return false };
        let case_insensitive = self.config.family == "evm";
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            let watched = Watched::new(input.watched.iter().map(String::as_str), case_insensitive);
            let poll_input = PollInput {
                cursor: input.cursor,
                recent: input.recent,
                start_height: input.start_height,
                rescan_from: input.rescan_from,
                max_blocks: input.max_blocks,
            };
            let result = detect::poll(adapter.as_mut(), &poll_input, &watched);
            let watch_at = input.watch_at;
            let _ = tx.send(Finished { watch_at, adapter, result, watched: watched.len(), elapsed: started.elapsed() });
        });
        self.in_flight = Some(rx);
        true
    }

    fn record(
        &mut self,
        result: Result<PollResult, RpcError>,
        watch_at: serde_json::Value,
        watched: usize,
        elapsed: Duration,
    ) -> Result<serde_json::Value, String> {
        let id = self.config.id.clone();
        match result {
            Ok(poll) => {
                let mut json = serde_json::to_value(&poll).map_err(|e| e.to_string())?;
                if let Some(o) = json.as_object_mut() {
                    o.insert("watch_at".into(), watch_at);
                }
                let chain = id.clone();
                let recorded = in_transaction(move || {
                    Spi::get_one_with_args::<pgrx::JsonB>(
                        "select invoices_internal.record_chain_poll($1, $2)",
                        &[chain.into(), pgrx::JsonB(json).into()],
                    )
                    .map_err(|e| e.to_string())
                    .map(|v| v.map(|j| j.0).unwrap_or_default())
                });
                let recorded = match recorded {
                    Ok(r) => r,
                    Err(e) => {
                        // the findings are polled again from the same cursor next time
                        record_error(id, format!("recording the poll failed: {e}"));
                        return Err(e);
                    }
                };
                let mut out = recorded;
                if let Some(o) = out.as_object_mut() {
                    o.insert("watched".into(), watched.into());
                    o.insert("poll_ms".into(), (elapsed.as_millis() as u64).into());
                }
                Ok(out)
            }
            Err(e) => {
                // a node's URL may carry its API key: only its origin is ever stored
                let message = crate::domain::destination::redact_urls(&e.to_string());
                record_error(id, message.clone());
                Err(message)
            }
        }
    }
}

fn record_error(chain: String, error: String) {
    let _ = in_transaction(move || {
        Spi::run_with_args("select invoices_internal.record_chain_error($1, $2)", &[chain.into(), error.into()])
            .map_err(|e| e.to_string())
    });
}
