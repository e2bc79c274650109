//! EVM chains (Ethereum, Base, Anvil): native value by scanning blocks with their
//! transactions, ERC-20 tokens by their `Transfer` logs, the mempool from `txpool_content`
//! when the node has it. Native value counts only for transactions whose receipt says they
//! succeeded: a reverted transaction still shows its `value` in the block, but nothing moved.

use super::rpc::{self, batch, call, hex_u128, hex_u64, malformed, str_field, RpcError, Transport};
use super::{from_base_units, BlockRef, ChainAdapter, Transfer, Watched};
use serde_json::{json, Value};
use std::collections::HashMap;

/// keccak256("Transfer(address,address,uint256)")
pub const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// An ERC-20 token watched on the chain.
#[derive(Debug, Clone)]
pub struct Token {
    pub asset: String,
    /// The contract address, lowercase.
    pub contract: String,
    pub decimals: u32,
}

pub struct Evm {
    transport: Box<dyn Transport>,
    native_asset: String,
    tokens: Vec<Token>,
    /// The chain id the node must report (8453 for Base), checked once.
    chain_id: Option<u64>,
}

impl Evm {
    pub fn new(transport: Box<dyn Transport>, native_asset: &str, tokens: Vec<Token>) -> Evm {
        let tokens = tokens
            .into_iter()
            .map(|t| Token { contract: t.contract.to_ascii_lowercase(), ..t })
            .collect();
        Evm { transport, native_asset: native_asset.to_string(), tokens, chain_id: None }
    }

    /// Refuse a node of another chain (checked at the first poll).
    pub fn with_chain_id(mut self, chain_id: Option<u64>) -> Evm {
        self.chain_id = chain_id;
        self
    }

    /// The native value of `tx` if it goes to a watched address, in `block` made at `block_time`
    /// (none: the mempool). Whether the transaction succeeded is for [`Evm::succeeded`].
    fn native(&self, tx: &Value, watched: &Watched, block: Option<&BlockRef>, block_time: Option<i64>) -> Result<Option<Transfer>, RpcError> {
        let Some(to) = tx.get("to").and_then(Value::as_str) else {
            return Ok(None); // contract creation
        };
        let Some(address) = watched.get_lowercase(to) else { return Ok(None) };
        let value = hex_u128(tx.get("value").unwrap_or(&Value::Null), "transaction value")?;
        if value == 0 {
            return Ok(None);
        }
        Ok(Some(Transfer {
            txid: str_field(tx, "hash", "transaction")?.to_ascii_lowercase(),
            index: -1,
            address: address.to_string(),
            asset: self.native_asset.clone(),
            amount_base: value.to_string(),
            amount: from_base_units(value, 18).ok_or_else(|| malformed("transaction value out of range"))?,
            block: block.cloned(),
            block_time,
        }))
    }

    /// `times`: the timestamp of each scanned block by height.
    fn token_transfer(&self, log: &Value, watched: &Watched, blocks: &[BlockRef], times: &HashMap<u64, i64>) -> Result<Option<Transfer>, RpcError> {
        if log.get("removed").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let contract = str_field(log, "address", "log")?.to_ascii_lowercase();
        let Some(token) = self.tokens.iter().find(|t| t.contract == contract) else { return Ok(None) };
        let topics = log.get("topics").and_then(Value::as_array).ok_or_else(|| malformed("log without topics"))?;
        if topics.len() != 3 || topics[0].as_str() != Some(TRANSFER_TOPIC) {
            return Ok(None); // not an ERC-20 Transfer (e.g. ERC-721 has 4 topics)
        }
        let to_word = topics[2].as_str().ok_or_else(|| malformed("log topic not a string"))?;
        if to_word.len() != 66 || !to_word.starts_with("0x") {
            return Err(malformed(format!("log topic {to_word:?} is not 32 bytes")));
        }
        let to = format!("0x{}", &to_word[26..]);
        let Some(address) = watched.get_lowercase(&to) else { return Ok(None) };
        let Some(value) = rpc::parse_hex_u128(str_field(log, "data", "log")?) else {
            return Ok(None); // an amount beyond 128 bits is no payment anyone makes
        };
        if value == 0 {
            return Ok(None);
        }
        let height = hex_u64(log.get("blockNumber").unwrap_or(&Value::Null), "log blockNumber")?;
        let hash = str_field(log, "blockHash", "log")?.to_ascii_lowercase();
        // a log from a block other than the one scanned at its height: a reorg between the calls
        let Some(block) = blocks.iter().find(|b| b.height == height && b.hash == hash) else { return Ok(None) };
        Ok(Some(Transfer {
            txid: str_field(log, "transactionHash", "log")?.to_ascii_lowercase(),
            index: hex_u64(log.get("logIndex").unwrap_or(&Value::Null), "log logIndex")? as i64,
            address: address.to_string(),
            asset: token.asset.clone(),
            amount_base: value.to_string(),
            amount: from_base_units(value, token.decimals).ok_or_else(|| malformed("token amount out of range"))?,
            block: Some(block.clone()),
            block_time: times.get(&height).copied(),
        }))
    }

    /// The native transfers whose transactions succeeded: their receipts (one batch, only for
    /// the transfers found, so it stays cheap) say `status` 0x1. A failed transaction (0x0) keeps
    /// its `value` in the block but moved nothing. No receipt for a mined transaction is a
    /// broken answer, never a credit. (ERC-20 `Transfer` logs exist only for successes.)
    fn succeeded(&self, transfers: Vec<Transfer>) -> Result<Vec<Transfer>, RpcError> {
        if transfers.is_empty() {
            return Ok(transfers);
        }
        let calls: Vec<(&str, Value)> = transfers.iter().map(|t| ("eth_getTransactionReceipt", json!([t.txid]))).collect();
        let receipts = batch(&*self.transport, &calls)?;
        let mut out = Vec::with_capacity(transfers.len());
        for (t, receipt) in transfers.into_iter().zip(&receipts) {
            if receipt.is_null() {
                return Err(malformed(format!("no receipt for transaction {}", t.txid)));
            }
            match hex_u64(receipt.get("status").unwrap_or(&Value::Null), "receipt status")? {
                1 => out.push(t),
                0 => {} // reverted
                other => return Err(malformed(format!("receipt status {other}"))),
            }
        }
        Ok(out)
    }
}

/// A block's `timestamp` (hex Unix seconds).
fn block_time(block: &Value) -> Result<i64, RpcError> {
    let t = hex_u64(block.get("timestamp").unwrap_or(&Value::Null), "block timestamp")?;
    i64::try_from(t).map_err(|_| malformed(format!("block timestamp {t} out of range")))
}

fn block_ref(block: &Value, what: &str) -> Result<BlockRef, RpcError> {
    if block.is_null() {
        return Err(malformed(format!("{what}: no such block")));
    }
    Ok(BlockRef {
        height: hex_u64(block.get("number").unwrap_or(&Value::Null), what)?,
        hash: str_field(block, "hash", what)?.to_ascii_lowercase(),
    })
}

impl ChainAdapter for Evm {
    fn tip(&mut self) -> Result<BlockRef, RpcError> {
        if let Some(expected) = self.chain_id {
            let got = hex_u64(&call(&*self.transport, "eth_chainId", json!([]))?, "eth_chainId")?;
            if got != expected {
                return Err(malformed(format!("the node is chain id {got}, the chain is configured as {expected}")));
            }
            self.chain_id = None;
        }
        block_ref(&call(&*self.transport, "eth_getBlockByNumber", json!(["latest", false]))?, "latest block")
    }

    fn block_hash(&mut self, height: u64) -> Result<String, RpcError> {
        let block = call(&*self.transport, "eth_getBlockByNumber", json!([format!("0x{height:x}"), false]))?;
        if block.is_null() {
            return Ok(String::new());
        }
        Ok(block_ref(&block, "block")?.hash)
    }

    fn scan(&mut self, from: u64, to: u64, _after: Option<&BlockRef>, watched: &Watched) -> Result<(Vec<BlockRef>, Vec<Transfer>), RpcError> {
        let mut calls: Vec<(&str, Value)> =
            (from..=to).map(|h| ("eth_getBlockByNumber", json!([format!("0x{h:x}"), true]))).collect();
        if !self.tokens.is_empty() {
            let contracts: Vec<&str> = self.tokens.iter().map(|t| t.contract.as_str()).collect();
            calls.push((
                "eth_getLogs",
                json!([{"fromBlock": format!("0x{from:x}"), "toBlock": format!("0x{to:x}"),
                        "address": contracts, "topics": [TRANSFER_TOPIC]}]),
            ));
        }
        let answers = batch(&*self.transport, &calls)?;
        let mut blocks = Vec::new();
        let mut times = HashMap::new();
        let mut transfers = Vec::new();
        for block in answers.iter().take((to - from + 1) as usize) {
            let b = block_ref(block, "block")?;
            let time = block_time(block)?;
            let txs = block.get("transactions").and_then(Value::as_array).ok_or_else(|| malformed("block without transactions"))?;
            for tx in txs {
                if !tx.is_object() {
                    return Err(malformed("block transactions are hashes, not objects"));
                }
                if let Some(t) = self.native(tx, watched, Some(&b), Some(time))? {
                    transfers.push(t);
                }
            }
            times.insert(b.height, time);
            blocks.push(b);
        }
        for (i, b) in blocks.iter().enumerate() {
            if b.height != from + i as u64 {
                return Err(malformed(format!("asked for block {} and got {}", from + i as u64, b.height)));
            }
        }
        let mut transfers = self.succeeded(transfers)?;
        if !self.tokens.is_empty() {
            let logs = answers.last().and_then(Value::as_array).ok_or_else(|| malformed("eth_getLogs: not an array"))?;
            for log in logs {
                if let Some(t) = self.token_transfer(log, watched, &blocks, &times)? {
                    transfers.push(t);
                }
            }
        }
        Ok((blocks, transfers))
    }

    fn mempool(&mut self, watched: &Watched) -> Result<Option<Vec<Transfer>>, RpcError> {
        let content = match call(&*self.transport, "txpool_content", json!([])) {
            Ok(v) => v,
            Err(RpcError::Node { code: -32601, .. }) => return Ok(None), // no txpool API
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let pending = content.get("pending").and_then(Value::as_object).ok_or_else(|| malformed("txpool_content without pending"))?;
        for by_nonce in pending.values() {
            let by_nonce = by_nonce.as_object().ok_or_else(|| malformed("txpool_content: bad sender entry"))?;
            for tx in by_nonce.values() {
                if let Some(t) = self.native(tx, watched, None, None)? {
                    out.push(t);
                }
            }
        }
        Ok(Some(out))
    }
}
