//! Bitcoin: Bitcoin Core's JSON-RPC (`getblockchaininfo`, `getblockhash`, `getblock` with
//! verbosity 2, `getrawmempool`, `getrawtransaction`), which every Bitcoin node of BTCPay's
//! stack exposes. Outputs (`vout`) to watched addresses are the transfers. Amounts arrive as
//! JSON numbers in BTC and are read exactly (never through a float). A mempool transaction
//! that signals replaceability (BIP125) is not counted until it is mined: its sender can
//! replace it with one paying someone else (BTCPay's rule: 0 confirmations are enough only for
//! a final transaction).

use super::rpc::{call, malformed, str_field, RpcError, Transport};
use super::{to_base_units, BlockRef, ChainAdapter, Transfer, Watched};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::str::FromStr;

/// Any input sequence below this signals BIP125 replaceability.
const FINAL_SEQUENCE: u64 = 0xffff_fffe;

/// A mempool transaction as fetched once.
struct MempoolTx {
    /// Signals BIP125: counted only once mined.
    replaceable: bool,
    /// (index, address, amount in BTC)
    outputs: Vec<(i64, String, Decimal)>,
}

pub struct Bitcoin {
    transport: Box<dyn Transport>,
    asset: String,
    /// Does the node answer `getblock <hash> 2` (false: bcoin, which wants a boolean)?
    verbose_blocks: bool,
    /// Mempool transactions already fetched, by txid.
    mempool_cache: HashMap<String, MempoolTx>,
    /// The network the chain row is configured for, until the node was seen on it (checked at
    /// the first `tip`): a node of another network would credit nothing, or the wrong coins.
    network: Option<String>,
}

impl Bitcoin {
    pub fn new(transport: Box<dyn Transport>, asset: &str) -> Bitcoin {
        Bitcoin { transport, asset: asset.to_string(), verbose_blocks: true, mempool_cache: HashMap::new(), network: None }
    }

    /// Refuse a node of another network (mainnet, testnet, regtest, devnet or simnet: the chain
    /// row's `network`), checked against `getblockchaininfo`'s `chain` until it matches.
    pub fn with_network(mut self, network: &str) -> Bitcoin {
        self.network = Some(network.to_string());
        self
    }

    fn transfer(&self, txid: &str, index: i64, address: &str, amount: Decimal, block: Option<(&BlockRef, i64)>) -> Result<Transfer, RpcError> {
        let base = to_base_units(amount, 8).ok_or_else(|| malformed(format!("output amount {amount} is not whole satoshis")))?;
        Ok(Transfer {
            txid: txid.to_string(),
            index,
            address: address.to_string(),
            asset: self.asset.clone(),
            amount_base: base.to_string(),
            amount: amount.normalize(),
            block: block.map(|(b, _)| b.clone()),
            block_time: block.map(|(_, t)| t),
        })
    }
}

/// bcoin writes regtest bech32 addresses with its own prefix `rb1…`; Bitcoin Core (and the
/// addresses derived here) use `bcrt1…`. Same witness program, so the same address.
pub fn normalize_address(address: &str) -> String {
    if address.len() > 3 && address[..3].eq_ignore_ascii_case("rb1") {
        if let (Ok((_, version, program)), Ok(hrp)) =
            (bech32::segwit::decode(address), bech32::Hrp::parse("bcrt"))
        {
            if let Ok(core) = bech32::segwit::encode(hrp, version, &program) {
                return core;
            }
        }
    }
    address.to_string()
}

/// Does `network` (the chain row's) accept a node whose `getblockchaininfo` says `chain`?
/// Core says main, test, testnet4, regtest, signet; bcoin main, testnet, regtest, simnet.
/// Signet is no network a chain can be configured for.
pub fn network_matches(network: &str, chain: &str) -> bool {
    matches!(
        (network, chain),
        ("mainnet", "main")
            | ("testnet", "test" | "testnet" | "testnet4")
            | ("regtest", "regtest")
            | ("devnet" | "simnet", "simnet")
    )
}

/// Does a verbose transaction signal BIP125 replaceability (an input sequence below
/// 0xfffffffe)? A transaction without inputs or sequences is a broken answer.
pub fn signals_rbf(tx: &Value) -> Result<bool, RpcError> {
    let vin = tx.get("vin").and_then(Value::as_array).ok_or_else(|| malformed("transaction without vin"))?;
    let mut replaceable = false;
    for input in vin {
        let sequence = input.get("sequence").and_then(Value::as_u64).ok_or_else(|| malformed("input without sequence"))?;
        replaceable |= sequence < FINAL_SEQUENCE;
    }
    Ok(replaceable)
}

/// The outputs of a verbose transaction: (index, address, amount in BTC).
pub fn outputs(tx: &Value) -> Result<(String, Vec<(i64, String, Decimal)>), RpcError> {
    let txid = str_field(tx, "txid", "transaction")?.to_string();
    let vout = tx.get("vout").and_then(Value::as_array).ok_or_else(|| malformed("transaction without vout"))?;
    let mut out = Vec::with_capacity(vout.len());
    for o in vout {
        let n = o.get("n").and_then(Value::as_i64).ok_or_else(|| malformed("output without n"))?;
        let value = match o.get("value") {
            Some(Value::Number(n)) => Decimal::from_str(&n.to_string()).map_err(|_| malformed(format!("output value {n}")))?,
            _ => return Err(malformed("output without a numeric value")),
        };
        let script = o.get("scriptPubKey");
        let address = script
            .and_then(|s| s.get("address"))
            .and_then(Value::as_str)
            .or_else(|| script.and_then(|s| s.get("addresses")).and_then(|a| a.get(0)).and_then(Value::as_str));
        if let Some(address) = address {
            out.push((n, normalize_address(address), value));
        }
    }
    Ok((txid, out))
}

impl ChainAdapter for Bitcoin {
    fn tip(&mut self) -> Result<BlockRef, RpcError> {
        let info = call(&*self.transport, "getblockchaininfo", json!([]))?;
        if let Some(network) = &self.network {
            let chain = str_field(&info, "chain", "getblockchaininfo")?;
            if !network_matches(network, chain) {
                return Err(malformed(format!("the node is on chain {chain}, the chain is configured as {network}")));
            }
            self.network = None;
        }
        Ok(BlockRef {
            height: info.get("blocks").and_then(Value::as_u64).ok_or_else(|| malformed("getblockchaininfo without blocks"))?,
            hash: str_field(&info, "bestblockhash", "getblockchaininfo")?.to_string(),
        })
    }

    fn block_hash(&mut self, height: u64) -> Result<String, RpcError> {
        match call(&*self.transport, "getblockhash", json!([height])) {
            Ok(Value::String(h)) => Ok(h),
            Ok(_) => Err(malformed("getblockhash: not a string")),
            // -8 (Core) / -1 (bcoin): block height out of range (the chain got shorter)
            Err(RpcError::Node { code: -8 | -1, .. }) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    fn scan(&mut self, from: u64, to: u64, _after: Option<&BlockRef>, watched: &Watched) -> Result<(Vec<BlockRef>, Vec<Transfer>), RpcError> {
        let mut blocks = Vec::new();
        let mut transfers = Vec::new();
        for height in from..=to {
            let hash = self.block_hash(height)?;
            if hash.is_empty() {
                return Err(malformed(format!("no block at height {height}")));
            }
            let block = if self.verbose_blocks {
                match call(&*self.transport, "getblock", json!([hash, 2])) {
                    // -3: "Param #1 must be a boolean" (bcoin): txids, fetched one by one
                    Err(RpcError::Node { code: -3, .. }) => {
                        self.verbose_blocks = false;
                        call(&*self.transport, "getblock", json!([hash, true]))?
                    }
                    other => other?,
                }
            } else {
                call(&*self.transport, "getblock", json!([hash, true]))?
            };
            if block.get("hash").and_then(Value::as_str) != Some(hash.as_str()) {
                return Err(malformed(format!("getblock {hash}: another block came back")));
            }
            // present whether `tx` lists objects or txids
            let time = block.get("time").and_then(Value::as_i64).ok_or_else(|| malformed(format!("getblock {hash}: no time")))?;
            let b = BlockRef { height, hash };
            let txs = block.get("tx").and_then(Value::as_array).ok_or_else(|| malformed("block without tx"))?;
            for tx in txs {
                // nodes without verbosity 2 list txids: fetch each transaction
                let fetched;
                let tx = if let Some(txid) = tx.as_str() {
                    fetched = call(&*self.transport, "getrawtransaction", json!([txid, true]))?;
                    &fetched
                } else {
                    tx
                };
                let (txid, outs) = outputs(tx)?;
                for (n, address, amount) in outs {
                    if let Some(stored) = watched.get(&address) {
                        transfers.push(self.transfer(&txid, n, stored, amount, Some((&b, time)))?);
                    }
                }
            }
            blocks.push(b);
        }
        Ok((blocks, transfers))
    }

    fn mempool(&mut self, watched: &Watched) -> Result<Option<Vec<Transfer>>, RpcError> {
        let ids = call(&*self.transport, "getrawmempool", json!([]))?;
        let ids: Vec<String> = ids
            .as_array()
            .ok_or_else(|| malformed("getrawmempool: not an array"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| malformed("getrawmempool: txid not a string")))
            .collect::<Result<_, _>>()?;
        let live: std::collections::HashSet<&String> = ids.iter().collect();
        self.mempool_cache.retain(|txid, _| live.contains(txid));
        let mut out = Vec::new();
        for txid in &ids {
            if !self.mempool_cache.contains_key(txid) {
                let tx = match call(&*self.transport, "getrawtransaction", json!([txid, true])) {
                    Ok(tx) => tx,
                    // mined or evicted since getrawmempool: the block scan will see it
                    // (-5 in Core, -1 in bcoin)
                    Err(RpcError::Node { code: -5 | -1, .. }) => continue,
                    Err(e) => return Err(e),
                };
                let (_, outputs) = outputs(&tx)?;
                self.mempool_cache.insert(txid.clone(), MempoolTx { replaceable: signals_rbf(&tx)?, outputs });
            }
            let cached = &self.mempool_cache[txid];
            if cached.replaceable {
                continue; // counted once mined
            }
            for (n, address, amount) in &cached.outputs {
                if let Some(stored) = watched.get(address) {
                    out.push(self.transfer(txid, *n, stored, *amount, None)?);
                }
            }
        }
        Ok(Some(out))
    }
}
