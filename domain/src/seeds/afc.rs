//! apiforcrypto (`POST /api/v1/wallets/{wallet id}/invoices`, `GET
//! /api/v1/wallets/invoices/{UUID}`): one invoice per payment, on a named blockchain, for an
//! amount in the crypto asset (`value`) or in fiat (`fiatCurrency`, with a `percent` markup),
//! payable for 15 to 40 minutes (`expiry`), paid after `confirmations`, its address kept out of
//! the carousel for `pause` minutes after. Changes are posted to `url_callback` (retried
//! `attempts_callback` times) with the caller's `secret_key`, which no answer ever carries; the
//! public read by UUID also leaves out the wallet and `url_callback`.

use super::{object, only_fields};
use crate::error::{DomainError, FieldErrors};
use crate::money::CurrencyKind;
use crate::status::Status;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::str::FromStr;

const FIELDS: &[&str] = &[
    "blockchain", "symbol", "value", "fiatCurrency", "expiry", "confirmations", "pause",
    "secret_key", "order_id", "title", "description", "url_callback", "attempts_callback",
    "url_success", "url_failed", "user_data", "data",
];
const FIAT_FIELDS: &[&str] = &["currency", "value", "percent"];
/// The assets an invoice can be paid in.
pub const SYMBOLS: &[&str] = &["BTC", "ETH", "USDC", "KAS"];

/// A field that is present and not `null`.
fn given<'a>(body: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    body.get(k).filter(|v| !v.is_null())
}

/// An optional string (blank is absent); another type is named.
fn optional_str<'a>(body: &'a Map<String, Value>, k: &str, name: &str, errs: &mut FieldErrors) -> Option<&'a str> {
    match given(body, k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        None | Some(Value::String(_)) => None,
        Some(_) => {
            errs.add(name, "must be a string");
            None
        }
    }
}

/// A whole number (a JSON integer) from `min` to `max`; `None` when absent, or bad (named).
fn int(body: &Map<String, Value>, k: &str, min: i64, max: i64, required: bool, errs: &mut FieldErrors) -> Option<i64> {
    match given(body, k) {
        None => {
            if required {
                errs.add(k, "is required");
            }
            None
        }
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                errs.add(k, format!("must be a whole number from {min} to {max}"));
                None
            }
        },
    }
}

/// A decimal (a JSON number or string) that is more than `above`, with at most `scale` decimals.
fn decimal(v: &Value, name: &str, above: Decimal, scale: u32, errs: &mut FieldErrors) -> Option<Decimal> {
    match crate::money::parse_decimal_json(v).and_then(|d| crate::money::check_scale(d, scale)) {
        Ok(d) if d > above => Some(d),
        Ok(_) => {
            errs.add(name, format!("must be more than {above}"));
            None
        }
        Err(e) => {
            errs.add(name, e.message());
            None
        }
    }
}

/// `POST /api/v1/wallets/{wallet id}/invoices`: `{"invoice": <the arguments of
/// invoices.create_invoice, by name>, "blockchain": <chain id>}`, plus `"fiat_view":
/// <currency>` for a crypto invoice that asks for its amount in a fiat currency too.
///
/// Required: `blockchain` (the id of a configured chain: the SQL side checks it), `symbol`
/// (BTC, ETH, USDC or KAS; any case), `expiry` (15 to 40 minutes) and `confirmations` (0 to
/// 1000); and the amount, one way: `value` (the crypto amount, more than 0, in the asset's
/// decimals; `fiatCurrency` may then carry only `currency`) or `fiatCurrency` with `currency`
/// (a fiat code) and `value` (more than 0, in the currency's decimals), and optionally
/// `percent` (markup, above -100 and at most 100). Optional: `pause` (10 to 43200 minutes),
/// `secret_key`, `order_id`, `title`, `description`, `url_callback`, `url_success`,
/// `url_failed` (http(s) URLs), `attempts_callback` (0 to 20), `user_data` (a string) and
/// `data` (any JSON). `title`, `user_data` and `data` are kept in the invoice's metadata; the
/// invoice is issued at once (`send`).
pub fn create_args(body: &Value) -> Result<Value, DomainError> {
    let body = object(body)?;
    let mut errs = FieldErrors::new();
    only_fields(body, FIELDS, &mut errs);

    let blockchain = match given(body, "blockchain") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
        None | Some(Value::String(_)) => {
            errs.add("blockchain", "is required");
            None
        }
        Some(_) => {
            errs.add("blockchain", "must be a string: the id of a blockchain");
            None
        }
    };
    let symbol = match given(body, "symbol") {
        None => {
            errs.add("symbol", "is required");
            None
        }
        Some(v) => {
            let s = v.as_str().map(|s| s.trim().to_ascii_uppercase());
            match s {
                Some(s) if SYMBOLS.contains(&s.as_str()) => Some(s),
                _ => {
                    errs.add("symbol", "must be BTC, ETH, USDC or KAS");
                    None
                }
            }
        }
    };
    // the asset's decimals bound a crypto amount (18 until the symbol is known)
    let asset_exponent = symbol
        .as_deref()
        .and_then(crate::money::currency)
        .map_or(18, |c| c.exponent);

    let fiat = match given(body, "fiatCurrency") {
        None => None,
        Some(Value::Object(f)) => {
            for k in f.keys() {
                if !FIAT_FIELDS.contains(&k.as_str()) {
                    errs.add(format!("fiatCurrency.{k}"), "is not a field of fiatCurrency");
                }
            }
            Some(f)
        }
        Some(_) => {
            errs.add("fiatCurrency", "must be an object with currency, value and percent");
            None
        }
    };
    let fiat_currency = fiat.and_then(|f| match given(f, "currency") {
        None => None,
        Some(v) => {
            let code = v.as_str().map(|s| s.trim().to_ascii_uppercase());
            let known = code
                .as_deref()
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .and_then(crate::money::currency)
                .filter(|c| c.kind == CurrencyKind::Fiat);
            if known.is_none() {
                errs.add("fiatCurrency.currency", "must be a fiat currency code such as USD");
            }
            known.map(|c| c.code)
        }
    });

    let mut invoice = Map::new();
    let mut fiat_view = None;
    let unit_price = match given(body, "value") {
        Some(v) => {
            decimal(v, "value", Decimal::ZERO, asset_exponent, &mut errs);
            if let Some(f) = fiat {
                if given(f, "value").is_some() {
                    errs.add("fiatCurrency.value", "give value (crypto) or fiatCurrency.value (fiat), not both");
                }
                if given(f, "percent").is_some() {
                    errs.add("fiatCurrency.percent", "is a markup on a fiat amount: it needs fiatCurrency.value, not value");
                }
            }
            fiat_view = fiat_currency;
            if let Some(s) = &symbol {
                invoice.insert("currency".into(), json!(s));
            }
            Some(v)
        }
        None => match fiat {
            None => {
                errs.add("value", "is required (or fiatCurrency with currency and value)");
                None
            }
            Some(f) => {
                if given(f, "currency").is_none() {
                    errs.add("fiatCurrency.currency", "is required for an invoice in fiat");
                }
                let exponent = fiat_currency
                    .and_then(crate::money::currency)
                    .map_or(2, |c| c.exponent);
                let value = given(f, "value");
                match value {
                    None => errs.add("fiatCurrency.value", "is required (or value, in crypto)"),
                    Some(v) => {
                        decimal(v, "fiatCurrency.value", Decimal::ZERO, exponent, &mut errs);
                    }
                }
                if let Some(p) = given(f, "percent") {
                    let hundred = Decimal::from(100);
                    if let Some(d) = decimal(p, "fiatCurrency.percent", -hundred, 8, &mut errs) {
                        if d > hundred {
                            errs.add("fiatCurrency.percent", "must be at most 100");
                        }
                    }
                    invoice.insert("markup_percent".into(), p.clone());
                }
                if let Some(c) = fiat_currency {
                    invoice.insert("currency".into(), json!(c));
                }
                value
            }
        },
    };

    let expiry = int(body, "expiry", 15, 40, true, &mut errs);
    let confirmations = int(body, "confirmations", 0, 1000, true, &mut errs);
    let pause = int(body, "pause", 10, 43_200, false, &mut errs);
    let attempts = int(body, "attempts_callback", 0, 20, false, &mut errs);

    let mut strings = Map::new();
    for k in ["secret_key", "order_id", "title", "description", "user_data"] {
        if let Some(s) = optional_str(body, k, k, &mut errs) {
            strings.insert(k.to_string(), json!(s));
        }
    }
    for k in ["url_callback", "url_success", "url_failed"] {
        if let Some(u) = optional_str(body, k, k, &mut errs) {
            if crate::validate::is_http_url(u) {
                strings.insert(k.to_string(), json!(u));
            } else {
                errs.add(k, "must be an http(s) URL, with http:// or https://");
            }
        }
    }
    errs.finish("invoice")?;

    let title = strings.get("title").cloned();
    invoice.insert("asset".into(), json!(symbol));
    invoice.insert(
        "lines".into(),
        json!([{
            "description": title.clone().unwrap_or_else(|| json!("Invoice")),
            "quantity": 1,
            "unit_price": unit_price,
        }]),
    );
    invoice.insert("expiry_minutes".into(), json!(expiry));
    invoice.insert("confirmations".into(), json!(confirmations));
    if let Some(p) = pause {
        invoice.insert("pause_minutes".into(), json!(p));
    }
    if let Some(a) = attempts {
        invoice.insert("attempts_callback".into(), json!(a));
    }
    for (from, to) in [
        ("url_callback", "callback_url"),
        ("secret_key", "callback_secret"),
        ("url_success", "success_url"),
        ("url_failed", "failed_url"),
        ("order_id", "order_id"),
        ("description", "notes"),
    ] {
        if let Some(v) = strings.get(from) {
            invoice.insert(to.into(), v.clone());
        }
    }
    let mut metadata = Map::new();
    if let Some(t) = title {
        metadata.insert("title".into(), t);
    }
    if let Some(u) = strings.get("user_data") {
        metadata.insert("user_data".into(), u.clone());
    }
    if let Some(d) = given(body, "data") {
        metadata.insert("data".into(), d.clone());
    }
    if !metadata.is_empty() {
        invoice.insert("metadata".into(), Value::Object(metadata));
    }
    invoice.insert("send".into(), json!(true));

    let mut out = json!({"invoice": invoice, "blockchain": blockchain});
    if let Some(c) = fiat_view {
        out["fiat_view"] = json!(c);
    }
    Ok(out)
}

/// An amount as apiforcrypto prints it here: a string, with the engine's scale.
fn amount(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// apiforcrypto's status of an invoice from the engine's status and its payments (`[{txid,
/// status: mempool | in_block | confirmed | reverted, amount, confirmations}]`; reverted ones do
/// not count): `confirmed` is PAID; `paid` is IN_BLOCK once every payment is in a block, else
/// IN_MEMPOOL; `partial` is PARTIALLY_PAID; `pending`, `overdue` and `draft` are IN_MEMPOOL
/// while a payment waits in the mempool, else NOT_PAID; `expired` and `cancelled` are EXPIRED
/// and CANCELLED ([`Status::apiforcrypto_name`]). `None` for an unknown status.
pub fn status_name(status: &str, payments: &Value) -> Option<&'static str> {
    let status = Status::from_str(status).ok()?;
    let counted: Vec<&str> = payments
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("status").and_then(Value::as_str))
                .filter(|s| *s != "reverted")
                .collect()
        })
        .unwrap_or_default();
    let in_mempool = counted.iter().any(|s| *s == "mempool");
    Some(match status {
        Status::Paid if in_mempool => "IN_MEMPOOL",
        Status::Paid => "IN_BLOCK",
        Status::Draft | Status::Pending | Status::Overdue if in_mempool => "IN_MEMPOOL",
        other => other.apiforcrypto_name(),
    })
}

/// One invoice in apiforcrypto's shape, from the engine's invoice object (a row of
/// `invoices.invoices`; the SQL adds `wallet_id`), its chain (`{"id", "tokens": {"USDC":
/// {"contract", "decimals"}}}`) and its payments (see [`status_name`]): `id`, `blockchain`,
/// `symbol`, `address`, `contract_address` (the token's contract, null for the chain's own
/// coin), `active` (still waiting for money: pending, partial, overdue), `value` (the crypto
/// amount, a string), `created`, `expiry`, `status`, `confirmations` (required), `fiat_currency`
/// (`{currency, value, percent}` for an invoice in fiat, else null), `txs` (the txids, reverted
/// ones left out), `data`, `url_pay`, `order_id`, `title` and `description`. Not `public`
/// (the wallet owner's read) adds `wallet_id` and `url_callback`. `secret_key` is in no answer:
/// only callbacks carry it ([`callback_body`]).
pub fn invoice(obj: &Value, chain: &Value, payments: &Value, public: bool) -> Value {
    let get = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
    let status = obj.get("status").and_then(Value::as_str).unwrap_or("");
    let asset = obj.get("asset").and_then(Value::as_str).unwrap_or("");
    let contract = chain
        .get("tokens")
        .and_then(|t| t.get(asset))
        .and_then(|t| t.get("contract"))
        .cloned()
        .unwrap_or(Value::Null);
    let fiat = obj
        .get("currency")
        .and_then(Value::as_str)
        .and_then(crate::money::currency)
        .is_some_and(|c| c.kind == CurrencyKind::Fiat);
    let fiat_currency = if fiat {
        json!({
            "currency": get("currency"),
            "value": amount(obj.get("total")),
            "percent": get("markup_percent"),
        })
    } else {
        Value::Null
    };
    let txs: Vec<Value> = payments
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p.get("status").and_then(Value::as_str) != Some("reverted"))
                .filter_map(|p| p.get("txid").cloned())
                .collect()
        })
        .unwrap_or_default();
    let metadata = |k: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut body = json!({
        "id": get("id"),
        "blockchain": chain.get("id").cloned().unwrap_or(Value::Null),
        "symbol": get("asset"),
        "address": get("address"),
        "contract_address": contract,
        "active": Status::from_str(status).is_ok_and(Status::is_open),
        "value": amount(obj.get("asset_amount")),
        "created": get("created_at"),
        "expiry": get("expires_at"),
        "status": status_name(status, payments),
        "confirmations": get("confirmations"),
        "fiat_currency": fiat_currency,
        "txs": txs,
        "data": metadata("data"),
        "url_pay": get("hosted_url"),
        "order_id": get("order_id"),
        "title": metadata("title"),
        "description": get("notes"),
    });
    if !public {
        body["wallet_id"] = get("wallet_id");
        body["url_callback"] = get("callback_url");
    }
    body
}

/// The body posted to `url_callback`: the invoice as its owner reads it ([`invoice`], not
/// public) without `url_callback`, and with `secret_key` when the invoice has one: the one
/// place it is sent, so the receiver can tell the call is genuine.
pub fn callback_body(invoice: &Value, secret_key: Option<&str>) -> Value {
    let mut body = invoice.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("url_callback");
        o.remove("secret_key");
        if let Some(k) = secret_key {
            o.insert("secret_key".into(), json!(k));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fiat_request() -> Value {
        json!({
            "blockchain": "ethereum",
            "symbol": "USDC",
            "fiatCurrency": {"currency": "EUR", "value": "100.50", "percent": 2.5},
            "expiry": 30,
            "confirmations": 12,
            "pause": 1440,
            "secret_key": "s3cret",
            "order_id": "ORDER-42",
            "title": "Pro plan",
            "description": "One month of Pro",
            "url_callback": "https://shop.example/cb",
            "attempts_callback": 5,
            "url_success": "https://shop.example/ok",
            "url_failed": "https://shop.example/failed",
            "user_data": "customer 7",
            "data": {"cart": [1, 2]}
        })
    }

    fn crypto_request() -> Value {
        json!({"blockchain": "bitcoin", "symbol": "btc", "value": 0.0015, "expiry": 15,
               "confirmations": 1})
    }

    fn with(base: Value, changes: Value) -> Value {
        let mut body = base;
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    }

    fn fields(body: Value) -> Vec<String> {
        create_args(&body).unwrap_err().fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn an_invoice_in_fiat() {
        let a = create_args(&fiat_request()).unwrap();
        assert_eq!(a["blockchain"], "ethereum");
        assert!(a.get("fiat_view").is_none());
        assert_eq!(
            a["invoice"],
            json!({
                "asset": "USDC",
                "currency": "EUR",
                "lines": [{"description": "Pro plan", "quantity": 1, "unit_price": "100.50"}],
                "markup_percent": 2.5,
                "expiry_minutes": 30,
                "confirmations": 12,
                "pause_minutes": 1440,
                "callback_url": "https://shop.example/cb",
                "callback_secret": "s3cret",
                "attempts_callback": 5,
                "success_url": "https://shop.example/ok",
                "failed_url": "https://shop.example/failed",
                "order_id": "ORDER-42",
                "notes": "One month of Pro",
                "metadata": {"title": "Pro plan", "user_data": "customer 7", "data": {"cart": [1, 2]}},
                "send": true,
            })
        );
    }

    #[test]
    fn an_invoice_in_crypto() {
        let a = create_args(&crypto_request()).unwrap();
        assert_eq!(
            a,
            json!({"blockchain": "bitcoin", "invoice": {
                "asset": "BTC", "currency": "BTC",
                "lines": [{"description": "Invoice", "quantity": 1, "unit_price": 0.0015}],
                "expiry_minutes": 15, "confirmations": 1, "send": true}})
        );
        // a fiat currency alongside value only asks for a converted view
        let a = create_args(&with(crypto_request(), json!({"fiatCurrency": {"currency": "usd"}}))).unwrap();
        assert_eq!(a["fiat_view"], "USD");
        assert_eq!(a["invoice"]["currency"], "BTC");
        assert!(a["invoice"].get("markup_percent").is_none());
    }

    #[test]
    fn required_fields_are_named_at_once() {
        assert_eq!(fields(json!({})), ["blockchain", "symbol", "value", "expiry", "confirmations"]);
        assert_eq!(
            fields(json!({"fiatCurrency": {"percent": 1}})),
            ["blockchain", "symbol", "fiatCurrency.currency", "fiatCurrency.value", "expiry", "confirmations"]
        );
    }

    #[test]
    fn limits() {
        assert_eq!(fields(with(crypto_request(), json!({"expiry": 14}))), ["expiry"]);
        assert_eq!(fields(with(crypto_request(), json!({"expiry": 41}))), ["expiry"]);
        assert_eq!(fields(with(crypto_request(), json!({"expiry": "30"}))), ["expiry"]);
        assert!(create_args(&with(crypto_request(), json!({"expiry": 40}))).is_ok());
        assert_eq!(fields(with(crypto_request(), json!({"attempts_callback": 21}))), ["attempts_callback"]);
        assert!(create_args(&with(crypto_request(), json!({"attempts_callback": 0}))).is_ok());
        assert_eq!(fields(with(crypto_request(), json!({"pause": 9}))), ["pause"]);
        assert_eq!(fields(with(crypto_request(), json!({"confirmations": 1001}))), ["confirmations"]);
        assert_eq!(fields(with(crypto_request(), json!({"confirmations": -1}))), ["confirmations"]);
    }

    #[test]
    fn one_way_to_give_the_amount() {
        assert_eq!(
            fields(with(crypto_request(), json!({"fiatCurrency": {"currency": "USD", "value": 10}}))),
            ["fiatCurrency.value"]
        );
        assert_eq!(
            fields(with(crypto_request(), json!({"fiatCurrency": {"currency": "USD", "percent": 3}}))),
            ["fiatCurrency.percent"]
        );
        assert_eq!(fields(with(fiat_request(), json!({"fiatCurrency": {"value": 10}}))), ["fiatCurrency.currency"]);
        assert_eq!(
            fields(with(fiat_request(), json!({"fiatCurrency": {"currency": "BTC", "value": 10, "rate": 1}}))),
            ["fiatCurrency.rate", "fiatCurrency.currency"]
        );
        assert_eq!(fields(with(fiat_request(), json!({"fiatCurrency": "USD"}))), ["fiatCurrency", "value"]);
    }

    #[test]
    fn amounts_and_formats() {
        for bad in [json!(0), json!("-1"), json!("abc"), json!(0.0000000001), json!(true)] {
            assert_eq!(fields(with(crypto_request(), json!({"value": bad}))), ["value"], "{bad}");
        }
        assert!(create_args(&with(crypto_request(), json!({"value": "0.00000001"}))).is_ok());
        for (p, ok) in [(json!(-99.9), true), (json!(-100), false), (json!(100), true), (json!("100.01"), false)] {
            let body = with(fiat_request(), json!({"fiatCurrency": {"currency": "EUR", "value": 10, "percent": p}}));
            assert_eq!(create_args(&body).is_ok(), ok, "{p}");
        }
        assert_eq!(
            fields(with(fiat_request(), json!({"fiatCurrency": {"currency": "EUR", "value": "10.001"}}))),
            ["fiatCurrency.value"]
        );
        assert_eq!(
            fields(with(crypto_request(), json!({"symbol": "DOGE", "blockchain": 5, "url_callback": "shop.example/cb",
                                                 "url_failed": "ftp://x.io", "title": 3, "wallet": "w"}))),
            ["wallet", "blockchain", "symbol", "title", "url_callback", "url_failed"]
        );
    }

    const ETH_CHAIN: &str = r#"{"id": "ethereum", "tokens": {"USDC": {"contract": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "decimals": 6}}}"#;

    fn owner_object() -> Value {
        serde_json::from_str(
            r#"{"id": "f4ae3bd1-a031-4b4c-84cb-96a425aab4c8", "wallet_id": "w-1", "status": "pending",
                "currency": "EUR", "total": 100.50, "markup_percent": 2.50, "asset": "USDC",
                "asset_amount": 110.250000, "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "created_at": "2026-04-28T12:00:00+00:00", "expires_at": "2026-04-28T12:30:00+00:00",
                "confirmations": 12, "hosted_url": "https://pay.example/i/abc", "order_id": "ORDER-42",
                "notes": "One month of Pro", "callback_url": "https://shop.example/cb",
                "callback_secret": "s3cret",
                "metadata": {"title": "Pro plan", "user_data": "customer 7", "data": {"cart": [1, 2]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_invoice_shape() {
        let chain: Value = serde_json::from_str(ETH_CHAIN).unwrap();
        let payments = json!([
            {"txid": "0xaa", "status": "reverted", "amount": "110.25", "confirmations": 0},
            {"txid": "0xbb", "status": "mempool", "amount": "50", "confirmations": 0}
        ]);
        let inv = invoice(&owner_object(), &chain, &payments, false);
        assert_eq!(
            inv,
            json!({
                "id": "f4ae3bd1-a031-4b4c-84cb-96a425aab4c8",
                "blockchain": "ethereum",
                "symbol": "USDC",
                "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "contract_address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                "active": true,
                "value": "110.250000",
                "created": "2026-04-28T12:00:00+00:00",
                "expiry": "2026-04-28T12:30:00+00:00",
                "status": "IN_MEMPOOL",
                "confirmations": 12,
                "fiat_currency": {"currency": "EUR", "value": "100.50", "percent": serde_json::from_str::<Value>("2.50").unwrap()},
                "txs": ["0xbb"],
                "data": {"cart": [1, 2]},
                "url_pay": "https://pay.example/i/abc",
                "order_id": "ORDER-42",
                "title": "Pro plan",
                "description": "One month of Pro",
                "wallet_id": "w-1",
                "url_callback": "https://shop.example/cb",
            })
        );
        // the chain's own coin has no contract; an invoice in the asset has no fiat view
        let mut eth: Value = owner_object();
        eth["asset"] = json!("ETH");
        eth["currency"] = json!("ETH");
        eth["status"] = json!("expired");
        eth["metadata"] = json!({});
        let inv = invoice(&eth, &chain, &json!([]), true);
        assert!(inv["contract_address"].is_null());
        assert!(inv["fiat_currency"].is_null());
        assert!(inv["data"].is_null() && inv["title"].is_null());
        assert_eq!(inv["active"], false);
        assert_eq!(inv["status"], "EXPIRED");
    }

    #[test]
    fn the_public_shape_hides_the_owner_fields() {
        let chain: Value = serde_json::from_str(ETH_CHAIN).unwrap();
        let public = invoice(&owner_object(), &chain, &json!([]), true);
        for k in ["wallet_id", "url_callback", "secret_key", "callback_secret"] {
            assert!(public.get(k).is_none(), "{k}");
        }
        let owner = invoice(&owner_object(), &chain, &json!([]), false);
        assert!(owner.get("secret_key").is_none());
        assert!(!owner.to_string().contains("s3cret"));
        assert!(!public.to_string().contains("s3cret"));
    }

    #[test]
    fn the_callback_body() {
        let chain: Value = serde_json::from_str(ETH_CHAIN).unwrap();
        let owner = invoice(&owner_object(), &chain, &json!([]), false);
        let cb = callback_body(&owner, Some("s3cret"));
        assert_eq!(cb["secret_key"], "s3cret");
        assert_eq!(cb["wallet_id"], "w-1");
        assert!(cb.get("url_callback").is_none());
        assert_eq!(cb["status"], "NOT_PAID");
        let cb = callback_body(&owner, None);
        assert!(cb.get("secret_key").is_none());
    }

    #[test]
    fn status_derivation() {
        let p = |statuses: &[&str]| -> Value {
            statuses
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"txid": format!("t{i}"), "status": s, "amount": "1", "confirmations": 0}))
                .collect()
        };
        let table: &[(&str, &[&str], &str)] = &[
            ("confirmed", &["confirmed"], "PAID"),
            ("paid", &["in_block", "confirmed"], "IN_BLOCK"),
            ("paid", &["in_block", "mempool"], "IN_MEMPOOL"),
            ("paid", &["in_block", "reverted"], "IN_BLOCK"),
            ("paid", &[], "IN_BLOCK"),
            ("partial", &["mempool"], "PARTIALLY_PAID"),
            ("partial", &["in_block"], "PARTIALLY_PAID"),
            ("pending", &[], "NOT_PAID"),
            ("pending", &["mempool"], "IN_MEMPOOL"),
            ("pending", &["reverted"], "NOT_PAID"),
            ("overdue", &["mempool"], "IN_MEMPOOL"),
            ("overdue", &[], "NOT_PAID"),
            ("draft", &["mempool"], "IN_MEMPOOL"),
            ("draft", &[], "NOT_PAID"),
            ("expired", &[], "EXPIRED"),
            ("cancelled", &[], "CANCELLED"),
        ];
        for (status, payments, expected) in table {
            assert_eq!(status_name(status, &p(payments)), Some(*expected), "{status} {payments:?}");
        }
        assert_eq!(status_name("lost", &json!([])), None);
        // the derived names agree with the status module's where no payment decides
        for s in crate::status::ALL {
            if s != Status::Paid {
                assert_eq!(status_name(s.as_str(), &json!([])), Some(s.apiforcrypto_name()));
            }
        }
    }
}
