//! Webhook bodies in a seed's format, chosen per endpoint (`webhook_endpoints.format`). The
//! worker signs whatever body it is given; which headers carry the signature is
//! [`signature_header`]'s business.
//!
//! - `invoices`: the project's own `{"id", "event", "timestamp", "data"}`.
//! - `living_invoices`: `{"event", "timestamp", "invoice": {"id", "status", "amount": {"total",
//!   "currency"}, "payment": {"kas_amount", "tx_id"}}}` (the invoice's `id` is its number,
//!   as Living Invoices prints it), signed in `X-Webhook-Signature`.
//! - `btpay`: `{"event", "data": {invoice_number, status, total, amount_paid, currency,
//!   btc_amount}, "timestamp"}`, with `X-BTPay-Event` and `X-BTPay-Signature`.
//! - `kibble` (a Kibble invoice's callback to its `webhook_url`, sent when it is paid or
//!   partial): `{"event": "paid" | "partial" | "excess", "invoice_id", "invoice_number",
//!   "status", "total_amount", "amount_paid", "deposit_address", "timestamp"}`.
//! - `apiforcrypto` (an apiforcrypto invoice's callback to its `url_callback`): the invoice as
//!   apiforcrypto shows it (`id`, `blockchain`, `symbol`, `address`, `value`, `status`
//!   NOT_PAID…PAID, `txs`, `order_id`, `data`, `wallet_id`) with the event and its `secret_key`.

use serde_json::{json, Value};

/// The formats an endpoint can choose.
pub const FORMATS: &[&str] = &["invoices", "living_invoices", "btpay", "kibble", "apiforcrypto"];

/// A decimal kept exact as a JSON number (Living Invoices prints amounts as numbers).
fn number(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_number)
            .unwrap_or(Value::Null),
        Some(n @ Value::Number(_)) => n.clone(),
        _ => Value::Null,
    }
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// The body of one delivery. `envelope` is the project's own body, with, for the seed formats,
/// `latest_txid` (the invoice's latest payment) and `asset_amount` (its quote) added beside
/// `data`. An unknown format gets the project's own body.
pub fn body(format: &str, envelope: &Value) -> Value {
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    let d = |k: &str| data.get(k);
    let timestamp = envelope
        .get("timestamp")
        .and_then(Value::as_str)
        .map(|t| match t.find('.') {
            // whole seconds, as both documents print them
            Some(dot) if t.ends_with('Z') => format!("{}Z", &t[..dot]),
            _ => t.to_string(),
        })
        .map(Value::String)
        .unwrap_or(Value::Null);
    match format {
        "living_invoices" => json!({
            "event": envelope.get("event").cloned().unwrap_or(Value::Null),
            "timestamp": timestamp,
            "invoice": {
                "id": d("invoice_number").cloned().unwrap_or(Value::Null),
                "status": d("status").cloned().unwrap_or(Value::Null),
                "amount": { "total": number(d("total")), "currency": d("currency").cloned().unwrap_or(Value::Null) },
                "payment": {
                    "kas_amount": number(d("asset_paid")),
                    "tx_id": envelope.get("latest_txid").cloned().unwrap_or(Value::Null),
                },
            },
        }),
        "btpay" => json!({
            "event": envelope.get("event").cloned().unwrap_or(Value::Null),
            "data": {
                "invoice_number": d("invoice_number").cloned().unwrap_or(Value::Null),
                "status": d("status").cloned().unwrap_or(Value::Null),
                "total": text(d("total")),
                "amount_paid": text(d("amount_paid")),
                "currency": d("currency").cloned().unwrap_or(Value::Null),
                "btc_amount": text(envelope.get("asset_amount")),
            },
            "timestamp": timestamp,
        }),
        "kibble" => {
            let status = d("status").and_then(Value::as_str).unwrap_or("");
            let overpaid = d("overpaid").and_then(Value::as_bool).unwrap_or(false);
            json!({
                "event": super::kibble::webhook_event(status, overpaid),
                "invoice_id": d("id").cloned().unwrap_or(Value::Null),
                "invoice_number": d("invoice_number").cloned().unwrap_or(Value::Null),
                "status": d("status").cloned().unwrap_or(Value::Null),
                "total_amount": super::kibble::amount(d("total")),
                "amount_paid": super::kibble::amount(d("amount_paid")),
                "deposit_address": d("address").cloned().unwrap_or(Value::Null),
                "timestamp": timestamp,
            })
        }
        "apiforcrypto" => {
            let meta = d("metadata").cloned().unwrap_or(Value::Null);
            let status = d("status").and_then(Value::as_str).unwrap_or("");
            // a payment event says where its payment is; a status event knows the status alone
            let payments = match d("payment") {
                Some(p) => json!([p]),
                None => json!([]),
            };
            let txs: Vec<Value> = envelope.get("latest_txid").filter(|t| !t.is_null()).cloned().into_iter().collect();
            json!({
                "event": envelope.get("event").cloned().unwrap_or(Value::Null),
                "id": d("id").cloned().unwrap_or(Value::Null),
                "blockchain": meta.get("blockchain").cloned().unwrap_or(Value::Null),
                "wallet_id": meta.get("wallet_id").cloned().unwrap_or(Value::Null),
                "symbol": d("asset").cloned().unwrap_or(Value::Null),
                "address": d("address").cloned().unwrap_or(Value::Null),
                "value": text(envelope.get("asset_amount")),
                "paid": text(d("asset_paid")),
                "status": super::afc::status_name(status, &payments),
                "txs": txs,
                "order_id": d("order_id").cloned().unwrap_or(Value::Null),
                "data": meta.get("data").cloned().unwrap_or(Value::Null),
                "secret_key": envelope.get("secret_key").cloned().unwrap_or(Value::Null),
                "timestamp": timestamp,
            })
        }
        _ => {
            let mut own = envelope.clone();
            if let Some(o) = own.as_object_mut() {
                o.remove("latest_txid");
                o.remove("asset_amount");
                o.remove("secret_key");
            }
            own
        }
    }
}

/// The header that carries the hex HMAC-SHA256 of the body, and the one that names the event,
/// for a format.
pub fn signature_header(format: &str) -> (&'static str, &'static str) {
    match format {
        "btpay" => ("X-BTPay-Signature", "X-BTPay-Event"),
        _ => ("X-Webhook-Signature", "X-Webhook-Event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Value {
        serde_json::from_str(r#"{"id": "e", "event": "invoice.paid", "timestamp": "2026-01-15T10:30:00.123456Z",
            "data": {"invoice_number": "INV-0001", "status": "paid", "total": "500.00", "currency": "USD",
                     "amount_paid": "500.00", "asset_paid": "4166.67"},
            "latest_txid": "abc123", "asset_amount": "0.00310521"}"#).unwrap()
    }

    #[test]
    fn living_invoices_payload() {
        let b = body("living_invoices", &envelope());
        assert_eq!(b.to_string(), serde_json::to_string(&serde_json::from_str::<Value>(
            r#"{"event": "invoice.paid", "timestamp": "2026-01-15T10:30:00Z", "invoice": {"id": "INV-0001",
                "status": "paid", "amount": {"total": 500.00, "currency": "USD"},
                "payment": {"kas_amount": 4166.67, "tx_id": "abc123"}}}"#).unwrap()).unwrap());
    }

    #[test]
    fn btpay_payload() {
        let b = body("btpay", &envelope());
        assert_eq!(b["data"]["btc_amount"], "0.00310521");
        assert_eq!(b["data"]["total"], "500.00");
        assert_eq!(b["timestamp"], "2026-01-15T10:30:00Z");
        assert_eq!(signature_header("btpay"), ("X-BTPay-Signature", "X-BTPay-Event"));
    }

    #[test]
    fn kibble_callback() {
        let mut e = envelope();
        e["data"]["overpaid"] = json!(true);
        assert_eq!(body("kibble", &e)["event"], "excess");
        e["data"]["status"] = json!("partial");
        e["data"]["overpaid"] = json!(false);
        assert_eq!(body("kibble", &e)["event"], "partial");
    }

    #[test]
    fn apiforcrypto_callback() {
        let mut e = envelope();
        e["data"]["status"] = json!("paid");
        e["data"]["asset"] = json!("USDC");
        e["data"]["metadata"] = json!({"blockchain": "base", "wallet_id": "w", "data": {"cart": 1}});
        e["secret_key"] = json!("my-secret");
        let b = body("apiforcrypto", &e);
        assert_eq!((b["status"].as_str(), b["blockchain"].as_str(), b["secret_key"].as_str()),
                   (Some("IN_BLOCK"), Some("base"), Some("my-secret")));
        assert_eq!(b["txs"], json!(["abc123"]));
        assert!(body("invoices", &e).get("secret_key").is_none());
    }

    #[test]
    fn own_payload_unchanged() {
        let b = body("invoices", &envelope());
        assert!(b.get("latest_txid").is_none() && b.get("asset_amount").is_none());
        assert_eq!(b["timestamp"], "2026-01-15T10:30:00.123456Z");
    }
}
