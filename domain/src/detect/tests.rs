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
            json!({"number": format!("0x{h:x}"), "hash": hash, "transactions": txs})
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
            _ => json!({"__error": -32601}),
        }
    })
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
    let usdc = &r.transfers[1];
    assert_eq!((usdc.txid.as_str(), usdc.index, usdc.asset.as_str()), ("0xdd", 3, "USDC"));
    assert_eq!((usdc.amount_base.as_str(), usdc.amount.to_string().as_str()), ("25000000", "25"));
    let mempool = r.mempool.unwrap();
    assert_eq!(mempool.len(), 1);
    assert_eq!((mempool[0].amount.to_string().as_str(), mempool[0].block.is_none()), ("1", true));
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
    assert_eq!((r.fork_height, r.blocks.len()), (Some(2), 1));
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
            json!({"hash": hash, "tx": txs})
        }
        "getrawtransaction" => if params[0] == "t2" { tx.clone() } else {
            json!({"txid": "m1", "vout": [{"n": 0, "value": serde_json::from_str::<Value>("1.23456789").unwrap(), "scriptPubKey": {"address": BOB}}]})
        },
        "getrawmempool" => json!(["m1"]),
        _ => json!({"__error": -32601}),
    })
}

const BOB: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

#[test]
fn bitcoin_outputs_are_read_exactly_with_or_without_verbosity_2() {
    for verbose in [true, false] {
        let mut adapter = Bitcoin::new(bitcoin_node(verbose), "BTC");
        let watched = Watched::new([BOB], false);
        let r = poll(&mut adapter, &PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 }, &watched).unwrap();
        assert_eq!(r.blocks.len(), 3);
        let got: Vec<(i64, String, String)> = r.transfers.iter().map(|t| (t.index, t.amount.to_string(), t.amount_base.clone())).collect();
        assert_eq!(got, vec![(0, "0.1".into(), "10000000".into()), (1, "0.2".into(), "20000000".into())]);
        let sum: Decimal = r.transfers.iter().map(|t| t.amount).sum();
        assert_eq!(sum.to_string(), "0.3", "no float on the way");
        let mempool = r.mempool.unwrap();
        assert_eq!((mempool[0].txid.as_str(), mempool[0].amount_base.as_str()), ("m1", "123456789"));
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
        "getblock" => json!({"hash": params[0], "tx": if params[0] == "h1" { json!(["t1"]) } else { json!([]) }}),
        "getrawtransaction" => tx.clone(),
        "getrawmempool" => json!([]),
        _ => json!({"__error": -32601}),
    });
    let mut adapter = Bitcoin::new(node, "BTC");
    let watched = Watched::new([BOB], false);
    let r = poll(&mut adapter, &PollInput { cursor: None, recent: vec![], start_height: Some(0), rescan_from: None, max_blocks: 10 }, &watched).unwrap();
    assert_eq!(r.transfers.len(), 1);
    assert_eq!((r.transfers[0].address.as_str(), r.transfers[0].amount_base.as_str()), (BOB, "50000000"));
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
                "getBlockDagInfo" => json!({"pruningPointHash": chash(&tag, 10), "sink": chash(&tag, tip), "virtualDaaScore": tip}),
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
                            json!({"chainBlockHeader": {"hash": chash(&tag, s), "blueScore": s, "daaScore": s - 1}, "acceptedTransactions": txs})
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
    let mempool = r.mempool.unwrap();
    assert_eq!(mempool.len(), 1);
    assert_eq!((mempool[0].amount_base.as_str(), mempool[0].block.clone()), ("2", None));
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
