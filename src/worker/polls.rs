//! The chain polls. The task `chains` re-reads the active rows of `invoices_internal.chains`
//! every second and keeps one poll task per chain (`chain <id>`): a chain added by SQL gets
//! its task, a changed row a new adapter at its next poll, a removed one's task ends once its
//! poll in flight is recorded. A poll task runs its family's adapter (`domain::detect`) on a
//! thread (one poll in flight per chain) and records the findings with
//! `invoices_internal.record_chain_poll` in one transaction. Each chain has its own entry in
//! `worker_status` with back-off after errors; a failing node never holds up the other chains
//! or tasks.

use super::error::{Result, WorkerError};
use super::net::HttpTransport;
use super::task::{Step, Task};
use super::threads::Batch;
use super::in_transaction;
use crate::domain::detect::{self, bitcoin::Bitcoin, evm, kaspa::Kaspa, ChainAdapter, PollInput, PollResult, RpcError, Watched};
use pgrx::prelude::*;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
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
    #[serde(default)]
    watched: Vec<String>,
    watch_at: serde_json::Value,
}

struct Finished {
    watch_at: serde_json::Value,
    adapter: Box<dyn ChainAdapter>,
    result: std::result::Result<PollResult, RpcError>,
    watched: usize,
    elapsed: Duration,
}

/// A chain's row as the chain list last read it, shared with its poll task.
struct Row {
    config: ChainConfig,
    /// Changed since the poll task made its adapter.
    changed: bool,
    /// Gone or inactive: no new poll starts.
    removed: bool,
}

fn adapter_for(c: &ChainConfig) -> std::result::Result<Box<dyn ChainAdapter>, String> {
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

/// The task `chains`: the list of active chains, and a poll task for each.
#[derive(Default)]
pub struct Chains {
    rows: HashMap<String, Rc<RefCell<Row>>>,
    new: Vec<Box<dyn Task>>,
}

impl Task for Chains {
    fn name(&self) -> &str {
        "chains"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn run(&mut self) -> Result<Step> {
        let rows = in_transaction(|| {
            Ok(Spi::get_one::<pgrx::JsonB>("select invoices_internal.active_chains()")?.map(|j| j.0).unwrap_or_default())
        })?;
        let configs: Vec<ChainConfig> = serde_json::from_value(rows)?;
        self.reconcile(configs);
        Ok(Step::Done(serde_json::json!({ "active": self.rows.len() })))
    }

    fn spawned(&mut self) -> Vec<Box<dyn Task>> {
        std::mem::take(&mut self.new)
    }
}

impl Chains {
    fn reconcile(&mut self, configs: Vec<ChainConfig>) {
        // a chain removed or deactivated by SQL: its task ends (once its poll in flight is recorded)
        self.rows.retain(|id, row| {
            let keep = configs.iter().any(|k| &k.id == id);
            row.borrow_mut().removed = !keep;
            keep
        });
        for config in configs {
            match self.rows.get(&config.id) {
                Some(row) if row.borrow().config == config => {}
                Some(row) => {
                    // changed by SQL: a new adapter at the next poll
                    let mut row = row.borrow_mut();
                    row.config = config;
                    row.changed = true;
                }
                None => {
                    let id = config.id.clone();
                    let row = Rc::new(RefCell::new(Row { config, changed: false, removed: false }));
                    self.rows.insert(id.clone(), row.clone());
                    self.new.push(Box::new(Poll { name: format!("chain {id}"), row, adapter: None, in_flight: Batch::new() }));
                }
            }
        }
    }
}

/// The task `chain <id>`: one chain's polls.
struct Poll {
    name: String,
    row: Rc<RefCell<Row>>,
    adapter: Option<Box<dyn ChainAdapter>>,
    in_flight: Batch<Finished>,
}

impl Task for Poll {
    fn name(&self) -> &str {
        &self.name
    }

    fn every(&self) -> Duration {
        Duration::from_millis(self.row.borrow().config.poll_interval_ms)
    }

    fn run(&mut self) -> Result<Step> {
        if !self.in_flight.idle() {
            return match self.in_flight.collect().pop() {
                Some(finished) => {
                    if !std::mem::take(&mut self.row.borrow_mut().changed) {
                        self.adapter = Some(finished.adapter);
                    }
                    let watched = finished.watched;
                    let step = self.record(finished.result, finished.watch_at, watched, finished.elapsed).map(Step::Done);
                    if watched >= 10_000 {
                        super::give_back_memory();
                    }
                    step
                }
                None if self.in_flight.idle() => Err(WorkerError::Thread("the poll thread died".into())),
                None => Ok(Step::Waiting),
            };
        }
        if self.row.borrow().removed {
            return Ok(Step::Waiting); // retired at the end of this tick
        }
        let config = self.row.borrow().config.clone();
        if std::mem::take(&mut self.row.borrow_mut().changed) {
            self.adapter = None;
        }
        let adapter = match self.adapter.take() {
            Some(a) => a,
            None => adapter_for(&config).map_err(WorkerError::Config)?,
        };
        let id = config.id.clone();
        // one transaction: the watched set belongs to the input's watch_at (its now())
        let input = in_transaction(move || {
            let input = Spi::get_one_with_args::<pgrx::JsonB>("select invoices_internal.chain_poll_input($1)", &[id.clone().into()])?
                .ok_or_else(|| WorkerError::Config("chain removed".into()))?;
            let mut input: Input = serde_json::from_value(input.0)?;
            // a text array, not jsonb: 100,000 addresses as JSON held the worker at ~300 MB
            input.watched = Spi::get_one_with_args::<Vec<String>>(
                "select coalesce(array_agg(a), '{}') from invoices_internal.watched_addresses($1) a",
                &[id.into()],
            )?
            .unwrap_or_default();
            Ok(input)
        });
        let input: Input = match input {
            Ok(i) => i,
            Err(e) => {
                self.adapter = Some(adapter);
                return Err(e);
            }
        };
        let case_insensitive = config.family == "evm";
        self.in_flight.start(vec![(adapter, input, case_insensitive)], |(mut adapter, input, case_insensitive)| {
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
            Finished { watch_at: input.watch_at, adapter, result, watched: watched.len(), elapsed: started.elapsed() }
        });
        Ok(Step::Waiting)
    }

    fn retired(&self) -> bool {
        self.row.borrow().removed && self.in_flight.idle()
    }
}

impl Poll {
    fn record(
        &mut self,
        result: std::result::Result<PollResult, RpcError>,
        watch_at: serde_json::Value,
        watched: usize,
        elapsed: Duration,
    ) -> Result<serde_json::Value> {
        let id = self.row.borrow().config.id.clone();
        match result {
            Ok(poll) => {
                let mut json = serde_json::to_value(&poll)?;
                if let Some(o) = json.as_object_mut() {
                    o.insert("watch_at".into(), watch_at);
                }
                let chain = id.clone();
                let recorded = in_transaction(move || {
                    Ok(Spi::get_one_with_args::<pgrx::JsonB>(
                        "select invoices_internal.record_chain_poll($1, $2)",
                        &[chain.into(), pgrx::JsonB(json).into()],
                    )?
                    .map(|j| j.0)
                    .unwrap_or_default())
                });
                let mut out = match recorded {
                    Ok(r) => r,
                    Err(e) => {
                        // the findings are polled again from the same cursor next time
                        record_error(id, format!("recording the poll failed: {e}"));
                        return Err(e);
                    }
                };
                if let Some(o) = out.as_object_mut() {
                    o.insert("watched".into(), watched.into());
                    o.insert("poll_ms".into(), (elapsed.as_millis() as u64).into());
                }
                Ok(out)
            }
            Err(e) => {
                // a node's URL may carry its API key: only its origin is ever stored
                let redact = crate::domain::destination::redact_urls;
                let e = match e {
                    RpcError::Transport(m) => RpcError::Transport(redact(&m)),
                    RpcError::Node { code, message } => RpcError::Node { code, message: redact(&message) },
                    RpcError::Malformed(m) => RpcError::Malformed(redact(&m)),
                };
                record_error(id, e.to_string());
                Err(WorkerError::Rpc(e))
            }
        }
    }
}

fn record_error(chain: String, error: String) {
    let _ = in_transaction(move || {
        Spi::run_with_args("select invoices_internal.record_chain_error($1, $2)", &[chain.into(), error.into()])?;
        Ok(())
    });
}
