//! Payment detection: one adapter per chain family behind [`ChainAdapter`], and the poll that
//! every chain runs the same way ([`poll`]): mempool, tip, reorg check against the block
//! hashes stored last time (a node merely behind our cursor is no reorg), then the blocks since
//! the cursor. The adapters speak JSON-RPC through a [`Transport`] (the worker's HTTP client;
//! canned answers in the tests), so everything here is pure and tested with plain `cargo test`.
//!
//! | family  | tip / blocks                                   | transfers to watched addresses            |
//! |---------|------------------------------------------------|-------------------------------------------|
//! | EVM     | `eth_blockNumber`, `eth_getBlockByNumber`      | native value of transactions that succeeded (`eth_getTransactionReceipt`); ERC-20 `Transfer` logs (`eth_getLogs`) |
//! | Bitcoin | `getblockchaininfo`, `getblockhash`, `getblock` (verbosity 2) | transaction outputs (`vout`), `getrawmempool` + `getrawtransaction` (no BIP125-replaceable ones) |
//! | Kaspa   | wRPC JSON: `getSink`, `getBlock`, `getVirtualChainFromBlockV2` (heights are blue scores of the selected chain) | outputs of the transactions each chain block accepts; `getMempoolEntriesByAddresses` |

pub mod bitcoin;
pub mod evm;
pub mod kaspa;
pub mod rpc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub use rpc::{RpcError, Transport};

/// A block: its height and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub height: u64,
    pub hash: String,
}

/// One transfer of value to a watched address: a Bitcoin output, a native EVM transaction
/// value, an ERC-20 Transfer log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub txid: String,
    /// Output index (Bitcoin, Kaspa), log index (ERC-20) or -1 (the native value of an EVM
    /// transaction).
    pub index: i64,
    /// The watched address as the database stores it.
    pub address: String,
    pub asset: String,
    /// In the asset's smallest unit (satoshi, wei, token units), as a decimal string.
    pub amount_base: String,
    /// The same amount in whole units, exact.
    pub amount: Decimal,
    /// The block that contains it; none while in the mempool.
    pub block: Option<BlockRef>,
    /// When that block was made (Unix seconds, the block's own timestamp): when the payment
    /// happened as the chain tells it, not when a poll saw it. None while in the mempool.
    pub block_time: Option<i64>,
}

/// The addresses a poll looks for. Keys are normalized by the adapter's family (EVM
/// addresses are case-insensitive); values are the stored forms.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    by_key: HashMap<String, String>,
}

impl Watched {
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a str>, case_insensitive: bool) -> Watched {
        let by_key = addresses
            .into_iter()
            .map(|a| (if case_insensitive { a.to_ascii_lowercase() } else { a.to_string() }, a.to_string()))
            .collect();
        Watched { by_key }
    }

    /// The stored form of `address` if it is watched.
    pub fn get(&self, address: &str) -> Option<&str> {
        self.by_key.get(address).map(String::as_str)
    }

    pub fn get_lowercase(&self, address: &str) -> Option<&str> {
        self.by_key.get(&address.to_ascii_lowercase()).map(String::as_str)
    }

    /// The stored forms of the watched addresses.
    pub fn stored(&self) -> impl Iterator<Item = &str> {
        self.by_key.values().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// What a chain family must answer. Implementations keep whatever they cache between polls
/// (e.g. the mempool transactions already fetched).
pub trait ChainAdapter: Send {
    /// The best block.
    fn tip(&mut self) -> Result<BlockRef, RpcError>;
    /// The hash of the block at `height` on the node's best chain.
    fn block_hash(&mut self, height: u64) -> Result<String, RpcError>;
    /// Is `block` (scanned earlier) still on the node's best chain? By default: the node's
    /// block at that height has that hash. (Kaspa, a DAG, asks whether it is a chain block.)
    fn on_best_chain(&mut self, block: &BlockRef, tip: &BlockRef) -> Result<bool, RpcError> {
        Ok(block.height <= tip.height && self.block_hash(block.height)? == block.hash)
    }
    /// The blocks `from..=to` and the transfers in them to watched addresses. `after` is the
    /// scanned block just below `from` when there is one (Kaspa walks its chain from it).
    fn scan(&mut self, from: u64, to: u64, after: Option<&BlockRef>, watched: &Watched)
        -> Result<(Vec<BlockRef>, Vec<Transfer>), RpcError>;
    /// Transfers to watched addresses waiting in the mempool; `None` if the node does not
    /// expose its mempool.
    fn mempool(&mut self, watched: &Watched) -> Result<Option<Vec<Transfer>>, RpcError>;
}

/// Where the poll starts and how far it goes.
#[derive(Debug, Clone)]
pub struct PollInput {
    /// The last block scanned (none before the first poll).
    pub cursor: Option<BlockRef>,
    /// Blocks scanned recently, ascending by height (the cursor's among them), for reorgs.
    pub recent: Vec<BlockRef>,
    /// Where the first poll starts (default: the tip).
    pub start_height: Option<u64>,
    /// Scan again from this height (the last poll's new blocks): addresses were handed out
    /// while it ran, so they were not in its watched set.
    pub rescan_from: Option<u64>,
    pub max_blocks: u64,
}

/// What one poll saw.
#[derive(Debug, Clone, Serialize)]
pub struct PollResult {
    pub tip: BlockRef,
    /// A reorg replaced the blocks above this height: payments in them that were not seen
    /// again (in `blocks` or in the mempool) are reverted.
    pub fork_height: Option<u64>,
    /// The blocks scanned, ascending; the last one is the new cursor.
    pub blocks: Vec<BlockRef>,
    pub transfers: Vec<Transfer>,
    /// Transfers waiting in the mempool; none if the node has no mempool API.
    pub mempool: Option<Vec<Transfer>>,
    /// The node's best block is below the cursor but on the chain we scanned (or at a height
    /// we kept no hash of): a lagging node (e.g. one behind a load balancer), not a reorg.
    /// Nothing is scanned and nothing reverted; the next poll goes on from the cursor.
    pub behind: bool,
}

/// One poll of a chain. The mempool is read first: a transaction mined while the poll runs is
/// then seen in the mempool or in a scanned block (or both), never in neither.
pub fn poll(adapter: &mut dyn ChainAdapter, input: &PollInput, watched: &Watched) -> Result<PollResult, RpcError> {
    let mempool = adapter.mempool(watched)?;
    let tip = adapter.tip()?;
    let mut fork_height = None;
    let mut from = match &input.cursor {
        None => input.start_height.unwrap_or(tip.height).min(tip.height),
        Some(c) => c.height + 1,
    };
    if let Some(cursor) = &input.cursor {
        if tip.height < cursor.height && lagging(&tip, &input.recent) {
            return Ok(PollResult { tip, fork_height: None, blocks: Vec::new(), transfers: Vec::new(), mempool, behind: true });
        }
        let same = adapter.on_best_chain(cursor, &tip)?;
        if !same {
            // walk back through the blocks we saw to the last one the node still has
            let mut ancestor = None;
            for b in input.recent.iter().rev().filter(|b| b.height < cursor.height) {
                if adapter.on_best_chain(b, &tip)? {
                    ancestor = Some(b.height);
                    break;
                }
            }
            let fork = ancestor.unwrap_or_else(|| {
                input.recent.first().map(|b| b.height).unwrap_or(cursor.height).saturating_sub(1)
            });
            fork_height = Some(fork);
            from = fork + 1;
        }
    }
    if let (Some(again), Some(_)) = (input.rescan_from, &input.cursor) {
        from = from.min(again);
    }
    let (blocks, transfers) = if from <= tip.height {
        let to = tip.height.min(from + input.max_blocks.max(1) - 1);
        // the block below `from` that the node still has: the cursor, or the fork's ancestor
        let after = input
            .cursor
            .iter()
            .chain(input.recent.iter().rev())
            .find(|b| b.height < from && fork_height.is_none_or(|f| b.height <= f));
        adapter.scan(from, to, after, watched)?
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(PollResult { tip, fork_height, blocks, transfers, mempool, behind: false })
}

/// Is a node whose best block `tip` is below our cursor merely behind? Yes if its best block is
/// one we scanned, or if we kept no block at its height (we cannot tell, and reverting payments
/// on a guess is worse than waiting a poll). Only a different hash at a height we stored proves
/// that the node is on another chain.
fn lagging(tip: &BlockRef, recent: &[BlockRef]) -> bool {
    match recent.iter().find(|b| b.height == tip.height) {
        Some(ours) => ours.hash == tip.hash,
        None => true,
    }
}

/// `base` smallest units of an asset with `decimals` decimals, in whole units (exact).
pub fn from_base_units(base: u128, decimals: u32) -> Option<Decimal> {
    if base > i128::MAX as u128 {
        return None;
    }
    Decimal::try_from_i128_with_scale(base as i128, decimals).ok().map(|d| d.normalize())
}

/// A decimal amount of whole units (e.g. Bitcoin's `0.5`) in smallest units; none if it has
/// more decimals than the asset or is negative.
pub fn to_base_units(amount: Decimal, decimals: u32) -> Option<u128> {
    if amount.is_sign_negative() {
        return None;
    }
    let scaled = amount.checked_mul(Decimal::from_i128_with_scale(10i128.pow(decimals), 0))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    use rust_decimal::prelude::ToPrimitive;
    scaled.trunc().to_u128()
}

#[cfg(test)]
mod tests;
