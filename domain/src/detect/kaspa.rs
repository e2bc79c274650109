//! Kaspa through kaspad's wRPC JSON (`--rpclisten-json`, a WebSocket; the transport sends one
//! message and returns the reply with the same id). Kaspa is a block DAG: what orders
//! payments is the *selected chain*, and a transaction counts once a chain block accepts it
//! (merges the block that contains it). So here a "height" is the blue score of a chain block,
//! a payment's block is the chain block that accepted it, and confirmations are blue score past
//! it (about one per block; ten per second on mainnet). A reorg is a scanned chain block that
//! stopped being a chain block (`isChainBlock` false): its acceptances are undone.
//!
//! Calls: `getSink` + `getBlock` (tip), `getBlock` (is it still a chain block?),
//! `getVirtualChainFromBlockV2` with `dataVerbosityLevel: "Low"` (the chain blocks after a hash,
//! each with the outputs of the transactions it accepted, addresses included),
//! `getBlockDagInfo` (the pruning point, where a scan without a known block starts; its
//! `network` is checked against the chain's at the first poll),
//! `getMempoolEntriesByAddresses` (payments not yet in a block).

use super::rpc::{malformed, RpcError, Transport};
use super::{from_base_units, BlockRef, ChainAdapter, Transfer, Watched};
use serde_json::{json, Value};

/// Sompi per KAS.
const DECIMALS: u32 = 8;
/// Addresses per mempool request.
const MEMPOOL_CHUNK: usize = 1000;

pub struct Kaspa {
    transport: Box<dyn Transport>,
    asset: String,
    next_id: u64,
    /// The network the chain row is configured for, until the node was seen on it (checked at
    /// the first `tip`).
    network: Option<String>,
}

impl Kaspa {
    pub fn new(transport: Box<dyn Transport>, asset: &str) -> Kaspa {
        Kaspa { transport, asset: asset.to_string(), next_id: 1, network: None }
    }

    /// Refuse a node of another network (mainnet, testnet, devnet, simnet or regtest: the chain
    /// row's `network`), checked against `getBlockDagInfo`'s `network` until it matches.
    pub fn with_network(mut self, network: &str) -> Kaspa {
        self.network = Some(network.to_string());
        self
    }

    /// The node's network against the configured one, until they matched once.
    fn check_network(&mut self) -> Result<(), RpcError> {
        let Some(network) = self.network.clone() else { return Ok(()) };
        let info = self.call("getBlockDagInfo", json!({}))?;
        let node = info.get("network").and_then(Value::as_str).ok_or_else(|| malformed("getBlockDagInfo without network"))?;
        if !network_matches(&network, node) {
            return Err(malformed(format!("the node is on chain {node}, the chain is configured as {network}")));
        }
        self.network = None;
        Ok(())
    }

    /// One wRPC JSON call: `{"id", "method", "params"}` → `{"id", "method", "params": result}`
    /// or `{"error": {"message"}}`.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"id": id, "method": method, "params": params}).to_string();
        let text = self.transport.post(&body)?;
        let mut reply: Value = serde_json::from_str(&text).map_err(|e| malformed(format!("{method}: not JSON ({e})")))?;
        if !reply.is_object() {
            return Err(malformed(format!("{method}: not a wRPC reply object")));
        }
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| err.to_string())
                .chars()
                .take(300)
                .collect();
            return Err(RpcError::Node { code: err.get("code").and_then(Value::as_i64).unwrap_or(0), message });
        }
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(malformed(format!("{method}: reply to another request")));
        }
        match reply.get_mut("params") {
            Some(v) if v.is_object() => Ok(v.take()),
            _ => Err(malformed(format!("{method}: reply without params"))),
        }
    }

    fn block(&mut self, hash: &str) -> Result<Value, RpcError> {
        let mut r = self.call("getBlock", json!({"hash": hash, "includeTransactions": false}))?;
        match r.get_mut("block") {
            Some(b) if b.is_object() => Ok(b.take()),
            _ => Err(malformed("getBlock: no block")),
        }
    }

    /// The transfers to watched addresses among `txs` (RpcTransaction objects with verbose
    /// data), accepted by `block` made at a time in Unix seconds (none: the mempool). Coinbase
    /// transactions are not payments.
    fn transfers(&self, txs: &[Value], block: Option<(&BlockRef, i64)>, watched: &Watched, out: &mut Vec<Transfer>) -> Result<(), RpcError> {
        for tx in txs {
            let subnetwork = tx.get("subnetworkId").and_then(Value::as_str).unwrap_or("");
            if subnetwork.starts_with("01") {
                continue; // coinbase
            }
            let outputs = tx.get("outputs").and_then(Value::as_array).ok_or_else(|| malformed("transaction without outputs"))?;
            let mut txid = None;
            for (index, o) in outputs.iter().enumerate() {
                let Some(address) = o.pointer("/verboseData/scriptPublicKeyAddress").and_then(Value::as_str) else { continue };
                let Some(stored) = watched.get(address) else { continue };
                let txid = match &txid {
                    Some(t) => t,
                    None => txid.insert(
                        tx.pointer("/verboseData/transactionId")
                            .and_then(Value::as_str)
                            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                            .ok_or_else(|| malformed("transaction without a transactionId"))?
                            .to_ascii_lowercase(),
                    ),
                };
                let sompi = o.get("value").and_then(Value::as_u64).ok_or_else(|| malformed("output value is not a sompi integer"))?;
                if sompi == 0 {
                    continue;
                }
                out.push(Transfer {
                    txid: txid.clone(),
                    index: index as i64,
                    address: stored.to_string(),
                    asset: self.asset.clone(),
                    amount_base: sompi.to_string(),
                    amount: from_base_units(sompi as u128, DECIMALS).ok_or_else(|| malformed("amount out of range"))?,
                    block: block.map(|(b, _)| b.clone()),
                    block_time: block.map(|(_, t)| t),
                });
            }
        }
        Ok(())
    }
}

/// Does `network` (the chain row's) accept a node on `node`'s network? kaspad's network ids:
/// `mainnet`, `testnet-10`, `devnet`, `simnet` (some clients write them `kaspa-mainnet`…).
/// Devnet and simnet differ in their address prefix (`kaspadev:`, `kaspasim:`), so each takes
/// only its own; regtest addresses are simnet's here (`addresses::kaspa`), so regtest is simnet.
pub fn network_matches(network: &str, node: &str) -> bool {
    let node = node.strip_prefix("kaspa-").unwrap_or(node);
    match network {
        "mainnet" => node == "mainnet",
        "testnet" => node == "testnet" || node.starts_with("testnet-"),
        "devnet" => node == "devnet",
        "simnet" | "regtest" => node == "simnet",
        _ => false,
    }
}

fn hash_of(v: &Value, what: &str) -> Result<String, RpcError> {
    v.as_str()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| malformed(format!("{what}: not a block hash")))
}

fn blue_score(block: &Value) -> Result<u64, RpcError> {
    block
        .pointer("/header/blueScore")
        .or_else(|| block.pointer("/verboseData/blueScore"))
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed("block without blueScore"))
}

impl ChainAdapter for Kaspa {
    fn tip(&mut self) -> Result<BlockRef, RpcError> {
        self.check_network()?;
        let sink = self.call("getSink", json!({}))?;
        let hash = hash_of(sink.get("sink").unwrap_or(&Value::Null), "getSink")?;
        let block = self.block(&hash)?;
        Ok(BlockRef { height: blue_score(&block)?, hash })
    }

    fn block_hash(&mut self, _height: u64) -> Result<String, RpcError> {
        Err(malformed("kaspa: blocks are not looked up by height"))
    }

    fn on_best_chain(&mut self, block: &BlockRef, _tip: &BlockRef) -> Result<bool, RpcError> {
        match self.block(&block.hash) {
            Ok(b) => b
                .pointer("/verboseData/isChainBlock")
                .and_then(Value::as_bool)
                .ok_or_else(|| malformed("getBlock: no verboseData.isChainBlock")),
            // pruned or never known to this node: not on its chain
            Err(RpcError::Node { message, .. }) if message.contains("cannot find") || message.contains("not found") => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn scan(&mut self, from: u64, to: u64, after: Option<&BlockRef>, watched: &Watched)
        -> Result<(Vec<BlockRef>, Vec<Transfer>), RpcError> {
        let start = match after {
            Some(b) => b.hash.clone(),
            None => {
                // no block below `from` is known: the first poll. At the tip there is nothing to
                // scan but the tip; below it, walk from the pruning point.
                let tip = self.tip()?;
                if from >= tip.height {
                    return Ok((vec![tip], Vec::new()));
                }
                let info = self.call("getBlockDagInfo", json!({}))?;
                hash_of(info.get("pruningPointHash").unwrap_or(&Value::Null), "getBlockDagInfo")?
            }
        };
        let chain = self.call("getVirtualChainFromBlockV2", json!({"startHash": start, "dataVerbosityLevel": "Low"}))?;
        let removed = chain.get("removedChainBlockHashes").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
        if removed > 0 && after.is_some() {
            return Err(RpcError::Transport("the selected chain changed during the poll (it is read again)".into()));
        }
        let accepted = chain
            .get("chainBlockAcceptedTransactions")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("getVirtualChainFromBlockV2: no chainBlockAcceptedTransactions"))?;
        let mut blocks = Vec::new();
        let mut transfers = Vec::new();
        for entry in accepted {
            let header = entry.get("chainBlockHeader").ok_or_else(|| malformed("chain block without header"))?;
            let height = header.get("blueScore").and_then(Value::as_u64).ok_or_else(|| malformed("chain block without blueScore"))?;
            let hash = hash_of(header.get("hash").unwrap_or(&Value::Null), "chain block")?;
            // milliseconds, part of the "Low" verbosity level like blueScore
            let time_ms = header.get("timestamp").and_then(Value::as_i64).ok_or_else(|| malformed("chain block without timestamp"))?;
            if height < from {
                continue;
            }
            // beyond `to`: the next poll goes on from here (but always make progress)
            if height > to && !blocks.is_empty() {
                break;
            }
            let block = BlockRef { height, hash };
            let txs = entry.get("acceptedTransactions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            self.transfers(txs, Some((&block, time_ms.div_euclid(1000))), watched, &mut transfers)?;
            blocks.push(block);
            if height >= to {
                break;
            }
        }
        if blocks.windows(2).any(|w| w[1].height <= w[0].height) {
            return Err(malformed("getVirtualChainFromBlockV2: blue scores not ascending"));
        }
        Ok((blocks, transfers))
    }

    fn mempool(&mut self, watched: &Watched) -> Result<Option<Vec<Transfer>>, RpcError> {
        let mut out = Vec::new();
        let addresses: Vec<&str> = watched.stored().collect();
        for chunk in addresses.chunks(MEMPOOL_CHUNK) {
            let r = self.call(
                "getMempoolEntriesByAddresses",
                json!({"addresses": chunk, "includeOrphanPool": false, "filterTransactionPool": false}),
            )?;
            let entries = r.get("entries").and_then(Value::as_array).ok_or_else(|| malformed("getMempoolEntriesByAddresses: no entries"))?;
            let mut seen = std::collections::HashSet::new();
            for e in entries {
                let receiving = e.get("receiving").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let txs: Vec<Value> = receiving
                    .iter()
                    .filter_map(|r| r.get("transaction").cloned())
                    .filter(|t| seen.insert(t.pointer("/verboseData/transactionId").and_then(Value::as_str).unwrap_or("").to_string()))
                    .collect();
                self.transfers(&txs, None, watched, &mut out)?;
            }
        }
        Ok(Some(out))
    }
}
