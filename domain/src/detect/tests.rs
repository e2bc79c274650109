use super::bitcoin::Bitcoin;
use super::evm::{Evm, Token, TRANSFER_TOPIC};
use super::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A node that answers each JSON-RPC call with `answer(method, params)` (a result, or
/// `{"__error": code}` for an error), single or batched like a real one.
struct Fake {
    answer: Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>,
}

impl Fake {
    fn boxed(answer: impl Fn(&str, &Value) -> Value + Send + Sync + 'static) -> Box<dyn Transport> {
        Box::new(Fake { answer: Arc::new(answer) })
    }
}

impl Transport for Fake {
    fn post(&self, body: &str) -> Result<String, RpcError> {
        let req: Value = serde_json::from_str(body).unwrap();
        let one = |r: &Value| {
            let result = (self.answer)(r["method"].as_str().unwrap(), &r["params"]);
            match result.get("__error") {
                Some(code) => json!({"jsonrpc": "2.0", "id": r["id"], "error": {"code": code, "message": "no"}}),
                None => json!({"jsonrpc": "2.0", "id": r["id"], "result": result}),
            }
        };
        Ok(match &req {
            Value::Array(calls) => Value::Array(calls.iter().rev().map(one).collect()), // any order
            r => one(r),
        }
        .to_string())
    }
}

/// A transport answering garbage.
struct Garbage(&'static str);
impl Transport for Garbage {
    fn post(&self, _: &str) -> Result<String, RpcError> {
        Ok(self.0.to_string())
    }
}

const ALICE: &str = "0x52908400098527886E0F7030069857D2E4169EE7";
const USDC: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

/// An EVM chain of `hashes.len()` blocks; block 2 pays ALICE 1.5 ETH and 25 USDC.
fn evm_chain(hashes: Arc<Mutex<Vec<String>>>) -> Box<dyn Transport> {
    Fake::boxed(move |method, params| {
        let hashes = hashes.lock().unwrap().clone();
        let block = |h: u64| -> Value {
            let Some(hash) = hashes.get(h as usize) else { return Value::Null };
            let txs = if h == 2 {
                json!([{"hash": "0xAA", "to": ALICE.to_lowercase(), "value": "0x14d1120d7b160000"},
                       {"hash": "0xbb", "to": null, "value": "0x0"},
                       {"hash": "0xcc", "to": "0x0000000000000000000000000000000000000001", "value": "0x1"}])
            } else {
                json!([])
            };
            json!({"number": format!("0x{h:x}"), "hash": hash, "timestamp": format!("0x{:x}", evm_time(h)), "transactions": txs})
        };
        match method {
            "eth_getBlockByNumber" => {
                let tag = params[0].as_str().unwrap();
                let h = if tag == "latest" { hashes.len() as u64 - 1 } else { u64::from_str_radix(&tag[2..], 16).unwrap() };
                block(h)
            }
            "eth_getLogs" => {
                let to_word = format!("0x000000000000000000000000{}", &ALICE.to_lowercase()[2..]);
                json!([{"address": USDC.to_lowercase(), "topics": [TRANSFER_TOPIC, "0x0000000000000000000000000000000000000000000000000000000000000001", to_word],
                        "data": "0x00000000000000000000000000000000000000000000000000000000017d7840",
                        "blockNumber": "0x2", "blockHash": hashes[2], "logIndex": "0x3", "transactionHash": "0xDD", "removed": false}])
            }
            "txpool_content" => json!({"pending": {"0xsender": {"7": {"hash": "0xee", "to": ALICE, "value": "0xde0b6b3a7640000"}}}, "queued": {}}),
            "eth_getTransactionReceipt" => json!({"transactionHash": params[0], "status": "0x1"}),
            _ => json!({"__error": -32601}),
        }
    })
}

/// The timestamp of the fake EVM block at `h` (12 s blocks).
fn evm_time(h: u64) -> i64 {
    1_700_000_000 + 12 * h as i64
}

fn evm(hashes: Arc<Mutex<Vec<String>>>) -> Evm {
    Evm::new(evm_chain(hashes), "ETH", vec![Token { asset: "USDC".into(), contract: USDC.into(), decimals: 6 }])
}

fn hashes(prefix: &str, n: usize) -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new((0..n).map(|i| format!("0x{prefix}{i}")).collect()))
}

#[test]
fn evm_finds_native_and_token_transfers_and_the_mempool() {
    let chain = hashes("a", 4);
    let mut adapter = evm(chain);
    let watched = Watched::new([ALICE], true);
    let input = PollInput { cursor: None, recent: vec![], start_height: Some(1), rescan_from: None, max_blocks: 100 };
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!(r.tip, BlockRef { height: 3, hash: "0xa3".into() });
    assert_eq!(r.blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(r.fork_height, None);
    assert_eq!(r.transfers.len(), 2);
    let eth = &r.transfers[0];
    assert_eq!((eth.txid.as_str(), eth.index, eth.address.as_str(), eth.asset.as_str()), ("0xaa", -1, ALICE, "ETH"));
    assert_eq!(eth.amount_base, "1500000000000000000");
    assert_eq!(eth.amount.to_string(), "1.5");
    assert_eq!(eth.block.as_ref().unwrap().height, 2);
    assert_eq!(eth.block_time, Some(evm_time(2)));
    let usdc = &r.transfers[1];
    assert_eq!((usdc.txid.as_str(), usdc.index, usdc.asset.as_str()), ("0xdd", 3, "USDC"));
    assert_eq!((usdc.amount_base.as_str(), usdc.amount.to_string().as_str()), ("25000000", "25"));
    assert_eq!(usdc.block_time, Some(evm_time(2)), "a token transfer takes its block's time");
    assert!(!r.behind);
    let mempool = r.mempool.unwrap();
    assert_eq!(mempool.len(), 1);
    assert_eq!((mempool[0].amount.to_string().as_str(), mempool[0].block.is_none(), mempool[0].block_time), ("1", true, None));
}

#[test]
fn unwatched_addresses_are_ignored() {
    let mut adapter = evm(hashes("a", 4));
    let watched = Watched::new(["0x0000000000000000000000000000000000000002"], true);
    let input = PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 100 };
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert!(r.transfers.is_empty() && r.mempool.unwrap().is_empty());
}

#[test]
fn the_first_poll_starts_at_the_tip_and_later_ones_after_the_cursor() {
    let chain = hashes("a", 6);
    let mut adapter = evm(chain.clone());
    let watched = Watched::new([ALICE], true);
    let first = poll(&mut adapter, &PollInput { cursor: None, recent: vec![], start_height: None, rescan_from: None, max_blocks: 10 }, &watched).unwrap();
    assert_eq!(first.blocks, vec![BlockRef { height: 5, hash: "0xa5".into() }]);
    chain.lock().unwrap().extend(["0xa6".to_string(), "0xa7".to_string()]);
    let next = PollInput { cursor: Some(first.blocks[0].clone()), recent: first.blocks.clone(), start_height: None, rescan_from: None, max_blocks: 1 };
    let second = poll(&mut adapter, &next, &watched).unwrap();
    assert_eq!(second.blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![6], "max_blocks bounds a poll");
}

#[test]
fn a_reorg_is_found_by_walking_back_the_stored_hashes() {
    let chain = hashes("a", 6);
    let mut adapter = evm(chain.clone());
    let watched = Watched::new([ALICE], true);
    let recent: Vec<BlockRef> = (0..6).map(|h| BlockRef { height: h, hash: format!("0xa{h}") }).collect();
    // blocks 2.. replaced by a longer fork
    *chain.lock().unwrap() = vec!["0xa0".into(), "0xa1".into(), "0xb2".into(), "0xb3".into(), "0xb4".into(), "0xb5".into(), "0xb6".into()];
    let input = PollInput { cursor: Some(recent[5].clone()), recent: recent.clone(), start_height: None, rescan_from: None, max_blocks: 100 };
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!(r.fork_height, Some(1));
    assert_eq!(r.blocks.first().unwrap(), &BlockRef { height: 2, hash: "0xb2".into() });
    assert_eq!(r.blocks.last().unwrap().height, 6);
    assert_eq!(r.transfers[0].block.as_ref().unwrap().hash, "0xb2", "the payment is found again in the new block");
    // a shorter replacement chain: the cursor is above the tip
    *chain.lock().unwrap() = vec!["0xa0".into(), "0xa1".into(), "0xa2".into(), "0xc3".into()];
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!((r.fork_height, r.blocks.len(), r.behind), (Some(2), 1, false));
}

#[test]
fn garbage_answers_are_errors_never_panics() {
    let watched = Watched::new([ALICE], true);
    let input = PollInput { cursor: None, recent: vec![], start_height: None, rescan_from: None, max_blocks: 10 };
    for junk in ["<html>502 Bad Gateway</html>", "", "null", "[]", "{}", r#"{"result": 5}"#,
                 r#"{"result": {"number": "0xZZ", "hash": "0x1"}}"#, r#"{"result": {"number": "12", "hash": 1}}"#,
                 r#"{"error": {"code": -32000, "message": "header not found"}}"#, r#"[{"id": 99, "result": 1}]"#] {
        let mut e = Evm::new(Box::new(Garbage(junk)), "ETH", vec![]);
        assert!(poll(&mut e, &input, &watched).is_err(), "EVM accepted {junk:?}");
        let mut b = Bitcoin::new(Box::new(Garbage(junk)), "BTC");
        assert!(poll(&mut b, &input, &watched).is_err(), "Bitcoin accepted {junk:?}");
    }
}

proptest::proptest! {
    #[test]
    fn random_answers_never_panic(junk in ".{0,200}", value in "0x[0-9a-fA-F]{0,70}") {
        let watched = Watched::new([ALICE], true);
        let input = PollInput { cursor: None, recent: vec![], start_height: None, rescan_from: None, max_blocks: 3 };
        let leaked: &'static str = Box::leak(junk.into_boxed_str());
        let _ = poll(&mut Evm::new(Box::new(Garbage(leaked)), "ETH", vec![]), &input, &watched);
        let _ = poll(&mut Bitcoin::new(Box::new(Garbage(leaked)), "BTC"), &input, &watched);
        let _ = poll(&mut kaspa::Kaspa::new(Box::new(Garbage(leaked)), "KAS"), &input, &Watched::new([KAS_ADDR], false));
        // kaspad's shapes with random values where amounts and hashes go
        let (v, h) = (value.clone(), value.clone());
        let k = Box::new(FakeKaspad { answer: Arc::new(move |m, _| match m {
            "getSink" => json!({"sink": h}),
            "getBlock" => json!({"block": {"header": {"blueScore": v}, "verboseData": {"isChainBlock": v}}}),
            _ => json!({"entries": [{"receiving": [{"transaction": {"outputs": [{"value": v, "verboseData": {"scriptPublicKeyAddress": KAS_ADDR}}],
                                                                     "verboseData": {"transactionId": v}}}]}]}),
        })});
        let _ = poll(&mut kaspa::Kaspa::new(k, "KAS"), &input, &Watched::new([KAS_ADDR], false));
        let v = value.clone();
        let t = Fake::boxed(move |m, _| match m {
            "eth_getBlockByNumber" => json!({"number": "0x1", "hash": "0x1", "transactions": [{"hash": "0x2", "to": ALICE, "value": v}]}),
            _ => json!({"pending": {"a": {"1": {"hash": "0x3", "to": ALICE, "value": v}}}}),
        });
        let _ = poll(&mut Evm::new(t, "ETH", vec![]), &input, &watched);
    }
}

/// A Bitcoin node of 3 blocks; block 2 pays BOB 0.1 and 0.2 BTC in one transaction. With
/// `verbose_blocks` false, getblock lists txids only (nodes without verbosity 2).
fn bitcoin_node(verbose_blocks: bool) -> Box<dyn Transport> {
    let tx = json!({"txid": "t2", "vout": [
        {"n": 0, "value": serde_json::from_str::<Value>("0.1").unwrap(), "scriptPubKey": {"address": BOB}},
        {"n": 1, "value": serde_json::from_str::<Value>("0.20000000").unwrap(), "scriptPubKey": {"addresses": [BOB]}},
        {"n": 2, "value": 0, "scriptPubKey": {"type": "nulldata"}}]});
    Fake::boxed(move |method, params| match method {
        "getblockchaininfo" => json!({"chain": "regtest", "blocks": 2, "bestblockhash": "h2"}),
        "getblockhash" => match params[0].as_u64().unwrap() { h @ 0..=2 => json!(format!("h{h}")), _ => json!({"__error": -8}) },
        "getblock" => {
            let hash = params[0].as_str().unwrap();
            let txs = if hash == "h2" { if verbose_blocks { json!([tx.clone()]) } else { json!(["t2"]) } } else { json!([]) };
            json!({"hash": hash, "time": BTC_TIME + hash[1..].parse::<i64>().unwrap(), "tx": txs})
        }
        "getrawtransaction" => if params[0] == "t2" { tx.clone() } else {
            json!({"txid": "m1", "vin": [{"txid": "t2", "vout": 2, "sequence": 4294967295u64}],
                   "vout": [{"n": 0, "value": serde_json::from_str::<Value>("1.23456789").unwrap(), "scriptPubKey": {"address": BOB}}]})
        },
        "getrawmempool" => json!(["m1"]),
        _ => json!({"__error": -32601}),
    })
}

const BOB: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
/// The fake Bitcoin block at height h was made at BTC_TIME + h.
const BTC_TIME: i64 = 1_231_006_505;

#[test]
fn bitcoin_outputs_are_read_exactly_with_or_without_verbosity_2() {
    for verbose in [true, false] {
        let mut adapter = Bitcoin::new(bitcoin_node(verbose), "BTC");
        let watched = Watched::new([BOB], false);
        let r = poll(&mut adapter, &PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 }, &watched).unwrap();
        assert_eq!(r.blocks.len(), 3);
        let got: Vec<(i64, String, String)> = r.transfers.iter().map(|t| (t.index, t.amount.to_string(), t.amount_base.clone())).collect();
        assert_eq!(got, vec![(0, "0.1".into(), "10000000".into()), (1, "0.2".into(), "20000000".into())]);
        assert!(r.transfers.iter().all(|t| t.block_time == Some(BTC_TIME + 2)), "the block's time, verbose or not");
        let sum: Decimal = r.transfers.iter().map(|t| t.amount).sum();
        assert_eq!(sum.to_string(), "0.3", "no float on the way");
        let mempool = r.mempool.unwrap();
        assert_eq!((mempool[0].txid.as_str(), mempool[0].amount_base.as_str(), mempool[0].block_time), ("m1", "123456789", None));
    }
}

#[test]
fn base_units() {
    assert_eq!(from_base_units(1_500_000_000_000_000_000, 18).unwrap().to_string(), "1.5");
    assert_eq!(from_base_units(1, 18).unwrap().to_string(), "0.000000000000000001");
    assert_eq!(from_base_units(25_000_000, 6).unwrap().to_string(), "25");
    assert_eq!(to_base_units("0.00000001".parse().unwrap(), 8), Some(1));
    assert_eq!(to_base_units("21000000".parse().unwrap(), 8), Some(2_100_000_000_000_000));
    assert_eq!(to_base_units("0.000000001".parse().unwrap(), 8), None, "below one satoshi");
    assert_eq!(to_base_units("-1".parse().unwrap(), 8), None);
}

#[test]
fn bcoin_regtest_addresses_are_core_addresses() {
    // the same witness program under bcoin's regtest prefix and Core's
    let core = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let (_, v, program) = bech32::segwit::decode(core).unwrap();
    let bcoin = bech32::segwit::encode(bech32::Hrp::parse("rb").unwrap(), v, &program).unwrap();
    assert!(bcoin.starts_with("rb1q"));
    assert_eq!(bitcoin::normalize_address(&bcoin), core);
    assert_eq!(bitcoin::normalize_address(core), core);
    assert_eq!(bitcoin::normalize_address("rb1-not-bech32"), "rb1-not-bech32");
}

#[test]
fn a_node_without_getblock_verbosity_2_is_read_through_getrawtransaction() {
    let (_, v, program) = bech32::segwit::decode(BOB).unwrap();
    let bcoin_bob = bech32::segwit::encode(bech32::Hrp::parse("rb").unwrap(), v, &program).unwrap();
    let tx = json!({"txid": "t1", "vout": [{"n": 0, "value": serde_json::from_str::<Value>("0.5").unwrap(),
                                            "scriptPubKey": {"addresses": [bcoin_bob]}}]});
    let node = Fake::boxed(move |method, params| match method {
        "getblockchaininfo" => json!({"blocks": 1, "bestblockhash": "h1"}),
        "getblockhash" => json!(format!("h{}", params[0])),
        "getblock" if params[1] == json!(2) => json!({"__error": -3}),
        "getblock" => json!({"hash": params[0], "time": 1_600_000_000, "tx": if params[0] == "h1" { json!(["t1"]) } else { json!([]) }}),
        "getrawtransaction" => tx.clone(),
        "getrawmempool" => json!([]),
        _ => json!({"__error": -32601}),
    });
    let mut adapter = Bitcoin::new(node, "BTC");
    let watched = Watched::new([BOB], false);
    let r = poll(&mut adapter, &PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 }, &watched).unwrap();
    assert_eq!(r.transfers.len(), 1);
    assert_eq!((r.transfers[0].address.as_str(), r.transfers[0].amount_base.as_str()), (BOB, "50000000"));
    assert_eq!(r.transfers[0].block_time, Some(1_600_000_000), "bcoin's block with txids still has its time");
}

#[test]
fn a_rescan_goes_over_the_last_polls_blocks_again_with_the_new_watched_set() {
    let chain = hashes("a", 4);
    let mut adapter = evm(chain);
    // the last poll scanned blocks 2..3 without ALICE in its watched set
    let cursor = Some(BlockRef { height: 3, hash: "0xa3".into() });
    let recent: Vec<BlockRef> = (0..4).map(|h| BlockRef { height: h, hash: format!("0xa{h}") }).collect();
    let watched = Watched::new([ALICE], true);
    let plain = PollInput { cursor: cursor.clone(), recent: recent.clone(), start_height: None, rescan_from: None, max_blocks: 10 };
    assert!(poll(&mut adapter, &plain, &watched).unwrap().transfers.is_empty(), "nothing new after the cursor");
    let again = PollInput { rescan_from: Some(2), ..plain };
    let r = poll(&mut adapter, &again, &watched).unwrap();
    assert_eq!(r.blocks.first().unwrap().height, 2);
    assert_eq!(r.transfers.len(), 2, "the payments in block 2 are found on the rescan");
}

// ---------------------------------------------------------------------------------------------
// Kaspa: wRPC JSON replies in kaspad 2.1.0's shapes
// ---------------------------------------------------------------------------------------------

/// A kaspad that answers `answer(method, params)` in wRPC JSON (`{"__error": msg}` → error).
struct FakeKaspad {
    answer: Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>,
}

impl Transport for FakeKaspad {
    fn post(&self, body: &str) -> Result<String, RpcError> {
        let req: Value = serde_json::from_str(body).unwrap();
        let result = (self.answer)(req["method"].as_str().unwrap(), &req["params"]);
        Ok(match result.get("__error") {
            Some(m) => json!({"id": req["id"], "method": req["method"], "error": {"code": 0, "message": m, "data": null}}),
            None => json!({"id": req["id"], "method": req["method"], "params": result}),
        }
        .to_string())
    }
}

const KAS_ADDR: &str = "kaspasim:qp2v7h0vp7nln0adpdxz2hphapc29qxhcjgnljjpxkywn3tvpvu4umwj4mfcm";
const OTHER_KAS: &str = "kaspasim:qr0lr4ml9fn3chekrqmjdkergxl93l4wrk3dankcgvjq776s9wn9jeadh9sjw";

fn khash(tag: &str, score: u64) -> String {
    format!("{:0>60}{:04x}", tag.bytes().map(|b| format!("{b:02x}")).collect::<String>(), score)
}

/// The chain `tag`'s block at blue score `s`: chains "a" and "b" share the blocks up to 11.
fn chash(tag: &str, s: u64) -> String {
    khash(if s <= 11 { "a" } else { tag }, s)
}

/// The timestamp (milliseconds) of the fake chain block at blue score `s`.
fn kas_time_ms(s: u64) -> u64 {
    1_700_000_000_000 + 1000 * s + 999
}

fn kas_tx(id: &str, coinbase: bool, outputs: &[(&str, u64)]) -> Value {
    json!({
        "subnetworkId": if coinbase { "0100000000000000000000000000000000000000" } else { "0000000000000000000000000000000000000000" },
        "outputs": outputs.iter().map(|(a, v)| json!({"value": v, "scriptPublicKey": "0000", "verboseData": {"scriptPublicKeyAddress": a, "scriptPublicKeyType": "PubKey"}})).collect::<Vec<_>>(),
        "verboseData": {"transactionId": id, "blockHash": "00", "hash": id}
    })
}

/// A selected chain of blue scores 10..=tip named `tag`; the chain block at 12 accepts a
/// payment of 1.5 KAS (and a coinbase) to KAS_ADDR; `chain_tag` says which chain is current.
fn kaspad(chain_tag: Arc<Mutex<String>>, tip: u64) -> Box<dyn Transport> {
    Box::new(FakeKaspad {
        answer: Arc::new(move |method, params| {
            let tag = chain_tag.lock().unwrap().clone();
            let pay = |t: &str| format!("{:0>62}{}", "", if t == "a" { "aa" } else { "bb" });
            match method {
                "getSink" => json!({"sink": chash(&tag, tip)}),
                "getBlock" => {
                    let hash = params["hash"].as_str().unwrap().to_string();
                    let score = u64::from_str_radix(&hash[60..], 16).unwrap();
                    let on_chain = hash == chash(&tag, score);
                    if hash[..60] != khash("a", 0)[..60] && hash[..60] != khash("b", 0)[..60] {
                        return json!({"__error": format!("cannot find header {hash}")});
                    }
                    json!({"block": {"header": {"hash": hash, "blueScore": score, "daaScore": score - 1},
                                     "verboseData": {"hash": hash, "blueScore": score, "isChainBlock": on_chain}}})
                }
                "getBlockDagInfo" => json!({"network": "simnet", "pruningPointHash": chash(&tag, 10), "sink": chash(&tag, tip), "virtualDaaScore": tip}),
                "getVirtualChainFromBlockV2" => {
                    assert_eq!(params["dataVerbosityLevel"], "Low");
                    let start = params["startHash"].as_str().unwrap();
                    let score = u64::from_str_radix(&start[60..], 16).unwrap();
                    let removed: Vec<String> = if start == chash(&tag, score) { vec![] } else { vec![start.to_string()] };
                    let blocks: Vec<Value> = ((score + 1)..=tip)
                        .map(|s| {
                            let txs = if s == 12 {
                                json!([kas_tx(&format!("{:0>64}", "c0"), true, &[(KAS_ADDR, 5_000_000_000)]),
                                       kas_tx(&pay(&tag), false, &[(OTHER_KAS, 7), (KAS_ADDR, 150_000_000)])])
                            } else {
                                json!([])
                            };
                            json!({"chainBlockHeader": {"hash": chash(&tag, s), "blueScore": s, "daaScore": s - 1, "timestamp": kas_time_ms(s)},
                                   "acceptedTransactions": txs})
                        })
                        .collect();
                    json!({"removedChainBlockHashes": removed,
                           "addedChainBlockHashes": blocks.iter().map(|b| b["chainBlockHeader"]["hash"].clone()).collect::<Vec<_>>(),
                           "chainBlockAcceptedTransactions": blocks})
                }
                "getMempoolEntriesByAddresses" => json!({"entries": [{"address": KAS_ADDR, "sending": [], "receiving": [
                    {"fee": 1, "is_orphan": false, "transaction": kas_tx(&format!("{:0>64}", "dd"), false, &[(KAS_ADDR, 2)])}]}]}),
                _ => json!({"__error": "unknown method"}),
            }
        }),
    })
}

#[test]
fn kaspa_finds_accepted_payments_and_their_chain_block() {
    let tag = Arc::new(Mutex::new("a".to_string()));
    let mut node = kaspa::Kaspa::new(kaspad(tag.clone(), 15), "KAS");
    let watched = Watched::new([KAS_ADDR], false);
    let input = PollInput { cursor: Some(BlockRef { height: 10, hash: khash("a", 10) }), recent: vec![], start_height: None, rescan_from: None, max_blocks: 100 };
    let r = poll(&mut node, &input, &watched).unwrap();
    assert_eq!(r.tip, BlockRef { height: 15, hash: khash("a", 15) });
    assert_eq!(r.fork_height, None);
    assert_eq!(r.blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![11, 12, 13, 14, 15]);
    // the payment, not the coinbase, at the chain block that accepted it
    assert_eq!(r.transfers.len(), 1);
    let t = &r.transfers[0];
    assert_eq!((t.index, t.amount_base.as_str(), t.amount.to_string().as_str(), t.asset.as_str()), (1, "150000000", "1.5", "KAS"));
    assert_eq!(t.block, Some(BlockRef { height: 12, hash: khash("a", 12) }));
    assert_eq!(t.block_time, Some(1_700_000_012), "the accepting chain block's time, milliseconds to seconds");
    let mempool = r.mempool.unwrap();
    assert_eq!(mempool.len(), 1);
    assert_eq!((mempool[0].amount_base.as_str(), mempool[0].block.clone(), mempool[0].block_time), ("2", None, None));
    // max_blocks caps the scan, the rest comes next time
    let capped = PollInput { max_blocks: 2, ..input.clone() };
    assert_eq!(poll(&mut node, &capped, &watched).unwrap().blocks.len(), 2);
}

#[test]
fn kaspa_first_poll_starts_at_the_tip_or_at_the_pruning_point() {
    let tag = Arc::new(Mutex::new("a".to_string()));
    let mut node = kaspa::Kaspa::new(kaspad(tag, 15), "KAS");
    let watched = Watched::new([KAS_ADDR], false);
    let first = PollInput { cursor: None, recent: vec![], start_height: None, rescan_from: None, max_blocks: 100 };
    let r = poll(&mut node, &first, &watched).unwrap();
    assert_eq!(r.blocks, vec![BlockRef { height: 15, hash: khash("a", 15) }]);
    assert!(r.transfers.is_empty());
    let from_start = PollInput { start_height: Some(0), ..first };
    let r = poll(&mut node, &from_start, &watched).unwrap();
    assert_eq!(r.blocks.first().map(|b| b.height), Some(11));
    assert_eq!(r.transfers.len(), 1);
}

#[test]
fn kaspa_reorg_is_a_chain_block_that_left_the_chain() {
    let tag = Arc::new(Mutex::new("a".to_string()));
    let mut node = kaspa::Kaspa::new(kaspad(tag.clone(), 15), "KAS");
    let watched = Watched::new([KAS_ADDR], false);
    let recent: Vec<BlockRef> = (10..=15).map(|s| BlockRef { height: s, hash: chash("a", s) }).collect();
    let input = PollInput { cursor: recent.last().cloned(), recent: recent.clone(), start_height: None, rescan_from: None, max_blocks: 100 };
    let same = poll(&mut node, &input, &watched).unwrap();
    assert_eq!((same.fork_height, same.blocks.len()), (None, 0));
    // the chain switches to "b" above 11: its block 12 accepts the payment in another transaction
    *tag.lock().unwrap() = "b".to_string();
    let r = poll(&mut node, &input, &watched).unwrap();
    assert_eq!(r.fork_height, Some(11));
    assert_eq!(r.blocks.iter().map(|b| b.hash.clone()).collect::<Vec<_>>(), (12..=15).map(|s| chash("b", s)).collect::<Vec<_>>());
    assert_eq!(r.transfers.len(), 1);
    assert!(r.transfers[0].txid.ends_with("bb"));
    assert_eq!(r.transfers[0].block.as_ref().map(|b| b.hash.clone()), Some(chash("b", 12)));
    // a block the node never heard of is simply not on its chain
    let unknown = BlockRef { height: 13, hash: "ff".repeat(32) };
    assert!(!node.on_best_chain(&unknown, &r.tip).unwrap());
    // the chain moving between the check and the scan: an error, read again next poll
    let stale = BlockRef { height: 14, hash: chash("a", 14) };
    assert!(node.scan(15, 15, Some(&stale), &watched).is_err());
}

#[test]
fn kaspa_answers_that_are_not_kaspa() {
    let watched = Watched::new([KAS_ADDR], false);
    for garbage in ["", "[]", "{\"id\": 1}", "{\"id\": 1, \"params\": {\"sink\": \"zz\"}}", "{\"id\": 99, \"params\": {}}"] {
        let mut node = kaspa::Kaspa::new(Box::new(Garbage(garbage)), "KAS");
        assert!(node.tip().is_err(), "{garbage}");
        assert!(node.mempool(&watched).is_err(), "{garbage}");
    }
}

// ---------------------------------------------------------------------------------------------
// A lagging node, failed EVM transactions, BIP125 in the mempool, the node's network, block time
// ---------------------------------------------------------------------------------------------

#[test]
fn a_node_behind_the_cursor_on_our_chain_is_not_a_reorg() {
    let chain = hashes("a", 6);
    let mut adapter = evm(chain.clone());
    let watched = Watched::new([ALICE], true);
    let recent: Vec<BlockRef> = (0..6).map(|h| BlockRef { height: h, hash: format!("0xa{h}") }).collect();
    let input = PollInput { cursor: Some(recent[5].clone()), recent: recent.clone(), start_height: None, rescan_from: Some(2), max_blocks: 100 };
    // a load-balanced node one block behind: its best block is our block 4
    chain.lock().unwrap().truncate(5);
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!(r.tip, BlockRef { height: 4, hash: "0xa4".into() });
    assert_eq!((r.fork_height, r.behind), (None, true));
    assert!(r.blocks.is_empty() && r.transfers.is_empty(), "nothing scanned, nothing reverted");
    assert_eq!(r.mempool.map(|m| m.len()), Some(1), "the mempool as read");
    // no block kept at its height: we cannot tell, so it is waited for, not reverted
    let sparse = PollInput { recent: vec![recent[5].clone()], ..input.clone() };
    let r = poll(&mut adapter, &sparse, &watched).unwrap();
    assert_eq!((r.fork_height, r.behind, r.blocks.len()), (None, true, 0));
    // caught up: an ordinary poll again
    chain.lock().unwrap().extend(["0xa5".to_string(), "0xa6".to_string()]);
    let r = poll(&mut adapter, &PollInput { rescan_from: None, ..input }, &watched).unwrap();
    assert_eq!((r.fork_height, r.behind), (None, false));
    assert_eq!(r.blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![6]);
}

#[test]
fn a_node_behind_the_cursor_on_another_chain_is_a_reorg() {
    let chain = hashes("a", 6);
    let mut adapter = evm(chain.clone());
    let watched = Watched::new([ALICE], true);
    let recent: Vec<BlockRef> = (0..6).map(|h| BlockRef { height: h, hash: format!("0xa{h}") }).collect();
    let input = PollInput { cursor: Some(recent[5].clone()), recent, start_height: None, rescan_from: None, max_blocks: 100 };
    // its best block is at height 4 but not ours: blocks 3.. were replaced
    *chain.lock().unwrap() = vec!["0xa0".into(), "0xa1".into(), "0xa2".into(), "0xc3".into(), "0xc4".into()];
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!((r.fork_height, r.behind), (Some(2), false));
    assert_eq!(r.blocks.iter().map(|b| b.hash.as_str()).collect::<Vec<_>>(), vec!["0xc3", "0xc4"]);
}

/// An EVM node whose block 1 pays ALICE in two transactions, 0x01 (succeeded) and 0x02
/// (reverted), and someone else in 0x03; `receipts` records the txids asked for.
fn evm_with_a_failed_transaction(receipts: Arc<Mutex<Vec<String>>>, missing: bool) -> Evm {
    let node = Fake::boxed(move |method, params| match method {
        "eth_getBlockByNumber" => {
            let tag = params[0].as_str().unwrap();
            let h = if tag == "latest" { 1 } else { u64::from_str_radix(&tag[2..], 16).unwrap() };
            let txs = if h == 1 {
                json!([{"hash": "0x01", "to": ALICE, "value": "0x1"},
                       {"hash": "0x02", "to": ALICE, "value": "0x2"},
                       {"hash": "0x03", "to": "0x0000000000000000000000000000000000000009", "value": "0x3"}])
            } else {
                json!([])
            };
            json!({"number": format!("0x{h:x}"), "hash": format!("0xb{h}"), "timestamp": "0x64", "transactions": txs})
        }
        "eth_getTransactionReceipt" => {
            let txid = params[0].as_str().unwrap().to_string();
            receipts.lock().unwrap().push(txid.clone());
            match txid.as_str() {
                "0x02" if missing => Value::Null,
                "0x02" => json!({"transactionHash": txid, "status": "0x0"}),
                _ => json!({"transactionHash": txid, "status": "0x1"}),
            }
        }
        _ => json!({"__error": -32601}),
    });
    Evm::new(node, "ETH", vec![])
}

#[test]
fn failed_evm_transactions_never_credit() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut adapter = evm_with_a_failed_transaction(asked.clone(), false);
    let watched = Watched::new([ALICE], true);
    let input = PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 };
    let r = poll(&mut adapter, &input, &watched).unwrap();
    assert_eq!(r.transfers.iter().map(|t| t.txid.as_str()).collect::<Vec<_>>(), vec!["0x01"], "the reverted 0x02 is dropped");
    assert_eq!(r.transfers[0].block_time, Some(100));
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, vec!["0x01", "0x02"], "receipts only for the transfers to watched addresses");
}

#[test]
fn a_missing_evm_receipt_is_an_error_not_a_credit() {
    let mut adapter = evm_with_a_failed_transaction(Arc::new(Mutex::new(Vec::new())), true);
    let watched = Watched::new([ALICE], true);
    let input = PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 };
    let e = poll(&mut adapter, &input, &watched).unwrap_err();
    assert!(matches!(&e, RpcError::Malformed(m) if m.contains("no receipt")), "{e}");
}

#[test]
fn bitcoin_replaceable_mempool_transactions_count_only_once_mined() {
    let pay = |txid: &str, sequences: &[u64]| {
        json!({"txid": txid, "vin": sequences.iter().map(|s| json!({"txid": "00", "vout": 0, "sequence": s})).collect::<Vec<_>>(),
               "vout": [{"n": 0, "value": serde_json::from_str::<Value>("0.5").unwrap(), "scriptPubKey": {"address": BOB}}]})
    };
    let final_tx = pay("final", &[0xffff_ffff, 0xffff_ffff]);
    let rbf_tx = pay("rbf", &[0xffff_ffff, 0xffff_fffd]);
    let fetched = Arc::new(Mutex::new(0));
    let counter = fetched.clone();
    let node = Fake::boxed(move |method, params| match method {
        "getblockchaininfo" => json!({"chain": "regtest", "blocks": 1, "bestblockhash": "h1"}),
        "getblockhash" => json!(format!("h{}", params[0])),
        // the replaceable transaction, once mined, counts
        "getblock" => json!({"hash": params[0], "time": 7, "tx": if params[0] == "h1" { json!([rbf_tx.clone()]) } else { json!([]) }}),
        "getrawmempool" => json!(["final", "rbf"]),
        "getrawtransaction" => {
            *counter.lock().unwrap() += 1;
            if params[0] == "final" { final_tx.clone() } else { rbf_tx.clone() }
        }
        _ => json!({"__error": -32601}),
    });
    let mut adapter = Bitcoin::new(node, "BTC");
    let watched = Watched::new([BOB], false);
    let input = PollInput { cursor: None, recent: vec![], start_height: Some(1), rescan_from: None, max_blocks: 10 };
    for _ in 0..2 {
        let r = poll(&mut adapter, &input, &watched).unwrap();
        let mempool = r.mempool.unwrap();
        assert_eq!(mempool.iter().map(|t| t.txid.as_str()).collect::<Vec<_>>(), vec!["final"]);
        assert_eq!((r.transfers.len(), r.transfers[0].txid.as_str(), r.transfers[0].block_time), (1, "rbf", Some(7)));
    }
    assert_eq!(*fetched.lock().unwrap(), 2, "the flag is cached with the outputs: nothing fetched twice");
    assert!(bitcoin::signals_rbf(&json!({"vin": [{"coinbase": "03", "sequence": 4294967295u64}]})) == Ok(false));
    assert!(bitcoin::signals_rbf(&json!({"vin": [{"sequence": 4294967294u64}]})) == Ok(false), "0xfffffffe is final");
    assert!(bitcoin::signals_rbf(&json!({"vin": [{"txid": "00"}]})).is_err());
    assert!(bitcoin::signals_rbf(&json!({"vout": []})).is_err());
}

#[test]
fn a_bitcoin_node_must_be_on_the_configured_network() {
    let chain = Arc::new(Mutex::new("test".to_string()));
    let on = chain.clone();
    let node = move || {
        let on = on.clone();
        Fake::boxed(move |method, _| match method {
            "getblockchaininfo" => json!({"chain": on.lock().unwrap().clone(), "blocks": 3, "bestblockhash": "h3"}),
            _ => json!({"__error": -32601}),
        })
    };
    let mut wrong = Bitcoin::new(node(), "BTC").with_network("mainnet");
    for _ in 0..2 {
        let e = wrong.tip().unwrap_err();
        assert_eq!(e, RpcError::Malformed("the node is on chain test, the chain is configured as mainnet".into()), "checked every time until it matches");
    }
    let mut right = Bitcoin::new(node(), "BTC").with_network("testnet");
    assert_eq!(right.tip().unwrap().height, 3);
    *chain.lock().unwrap() = "main".to_string();
    assert!(right.tip().is_ok(), "checked until it matched once, like the EVM chain id");
    assert!(wrong.tip().is_ok(), "a node that moved to the configured network is accepted");
    assert!(Bitcoin::new(node(), "BTC").tip().is_ok(), "no network given: not checked");
    for (network, chain, ok) in [("mainnet", "main", true), ("testnet", "test", true), ("testnet", "testnet", true),
                                 ("testnet", "testnet4", true), ("regtest", "regtest", true), ("simnet", "simnet", true),
                                 ("devnet", "simnet", true), ("mainnet", "test", false), ("testnet", "main", false),
                                 ("testnet", "signet", false), ("mainnet", "signet", false), ("regtest", "signet", false),
                                 ("regtest", "main", false), ("simnet", "regtest", false), ("main", "main", false)] {
        assert_eq!(bitcoin::network_matches(network, chain), ok, "{network} / {chain}");
    }
}

#[test]
fn a_kaspa_node_must_be_on_the_configured_network() {
    let tag = Arc::new(Mutex::new("a".to_string()));
    let mut wrong = kaspa::Kaspa::new(kaspad(tag.clone(), 15), "KAS").with_network("mainnet");
    for _ in 0..2 {
        assert_eq!(wrong.tip().unwrap_err(), RpcError::Malformed("the node is on chain simnet, the chain is configured as mainnet".into()));
    }
    let mut right = kaspa::Kaspa::new(kaspad(tag, 15), "KAS").with_network("simnet");
    assert_eq!(right.tip().unwrap().height, 15);
    assert_eq!(right.tip().unwrap().height, 15);
    for (network, node, ok) in [("mainnet", "mainnet", true), ("mainnet", "kaspa-mainnet", true), ("testnet", "testnet-10", true),
                                ("testnet", "kaspa-testnet-11", true), ("simnet", "simnet", true), ("simnet", "kaspa-simnet", true),
                                ("devnet", "devnet", true), ("devnet", "kaspa-devnet", true), ("regtest", "simnet", true),
                                ("mainnet", "testnet-10", false), ("testnet", "mainnet", false), ("simnet", "devnet", false),
                                ("devnet", "simnet", false), ("simnet", "mainnet", false), ("testnet", "testnetx", false)] {
        assert_eq!(kaspa::network_matches(network, node), ok, "{network} / {node}");
    }
}

#[test]
fn the_json_of_a_transfer_and_a_poll() {
    let t = Transfer {
        txid: "t".into(),
        index: 0,
        address: BOB.into(),
        asset: "BTC".into(),
        amount_base: "1".into(),
        amount: "0.00000001".parse().unwrap(),
        block: Some(BlockRef { height: 2, hash: "h2".into() }),
        block_time: Some(1_700_000_000),
    };
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json, json!({"txid": "t", "index": 0, "address": BOB, "asset": "BTC", "amount_base": "1", "amount": "0.00000001",
                            "block": {"height": 2, "hash": "h2"}, "block_time": 1_700_000_000}));
    let pending = serde_json::to_value(Transfer { block: None, block_time: None, ..t.clone() }).unwrap();
    assert_eq!((&pending["block"], &pending["block_time"]), (&Value::Null, &Value::Null));
    let r = PollResult { tip: BlockRef { height: 2, hash: "h2".into() }, fork_height: None, blocks: vec![], transfers: vec![t], mempool: None, behind: true };
    assert_eq!(serde_json::to_value(&r).unwrap()["behind"], json!(true));
}
