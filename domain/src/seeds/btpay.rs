//! BTPay's other calls: payment links (`/api/v1/payment-links`), rates (`/api/v1/rates`) and
//! webhook endpoints (`/api/v1/webhooks`), over the engine's payment links, rate medians and
//! webhook endpoints. (Its invoice calls are in `v1`.)

use super::{invalid, object, only_fields};
use crate::error::{DomainError, FieldErrors};
use serde_json::{json, Map, Value};

fn string_field(body: &Map<String, Value>, k: &str, errs: &mut FieldErrors) {
    if body.get(k).is_some_and(|v| !v.is_null() && !v.is_string()) {
        errs.add(k, "must be a string");
    }
}

/// The asset a BTPay `payment_methods` list pays on chain in: BTC unless the list leaves out
/// `onchain_btc` (then `None`: paid by wire, outside the chain).
fn asset_of(methods: Option<&Value>, errs: &mut FieldErrors) -> Option<&'static str> {
    match methods {
        None | Some(Value::Null) => Some("BTC"),
        Some(Value::Array(m)) => {
            let mut onchain = false;
            for (i, v) in m.iter().enumerate() {
                match v.as_str() {
                    Some("onchain_btc") => onchain = true,
                    Some("wire") => {}
                    _ => errs.add(format!("payment_methods[{i}]"), "must be onchain_btc or wire"),
                }
            }
            if m.is_empty() {
                errs.add("payment_methods", "must name at least one method");
            }
            onchain.then_some("BTC")
        }
        Some(_) => {
            errs.add("payment_methods", "must be an array such as [\"onchain_btc\"]");
            None
        }
    }
}

/// `POST /api/v1/payment-links`: the arguments of `invoices.create_payment_link`.
pub fn payment_link_args(body: &Value) -> Result<Value, DomainError> {
    let body = object(body)?;
    let mut errs = FieldErrors::new();
    only_fields(
        body,
        &["title", "slug", "description", "amount", "currency", "payment_methods", "redirect_url", "metadata"],
        &mut errs,
    );
    if body.get("title").is_none_or(Value::is_null) {
        errs.add("title", "is required");
    }
    for k in ["title", "slug", "description", "currency", "redirect_url"] {
        string_field(body, k, &mut errs);
    }
    if let Some(v) = body.get("amount").filter(|v| !v.is_null()) {
        if crate::money::parse_decimal_json(v).is_err() {
            errs.add("amount", "must be a decimal number, or null for an amount the payer chooses");
        }
    }
    if body.get("metadata").is_some_and(|v| !v.is_null() && !v.is_object()) {
        errs.add("metadata", "must be an object");
    }
    let asset = asset_of(body.get("payment_methods"), &mut errs);
    errs.finish("payment link")?;
    let mut args = Map::new();
    for k in ["title", "slug", "description", "amount", "currency", "redirect_url", "metadata"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            args.insert(k.into(), v.clone());
        }
    }
    if let Some(a) = asset {
        args.insert("asset".into(), json!(a));
    }
    Ok(Value::Object(args))
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// A payment link in BTPay's shape, from a row of `invoices.payment_links` (with
/// `created_unix`) and the public base URL.
pub fn payment_link(row: &Value, base_url: &str) -> Value {
    let get = |k: &str| row.get(k).cloned().unwrap_or(Value::Null);
    let slug = row.get("slug").and_then(Value::as_str).unwrap_or("");
    json!({
        "ref": get("id"),
        "slug": get("slug"),
        "title": get("title"),
        "description": get("description"),
        "amount": text(row.get("amount")),
        "currency": get("currency"),
        "asset": get("asset"),
        "redirect_url": get("redirect_url"),
        "metadata": get("metadata"),
        "is_active": get("active"),
        "invoices_created": get("invoices_created"),
        "url": format!("{}/rpc/pay_payment_link?slug={slug}", base_url.trim_end_matches('/')),
        "created_at": get("created_unix"),
    })
}

/// `POST /api/v1/webhooks`: `{url, events, description}` (events default `["*"]`).
pub fn webhook_args(body: &Value) -> Result<Value, DomainError> {
    let body = object(body)?;
    let mut errs = FieldErrors::new();
    only_fields(body, &["url", "events", "description"], &mut errs);
    match body.get("url") {
        None | Some(Value::Null) => errs.add("url", "is required"),
        Some(Value::String(_)) => {}
        Some(_) => errs.add("url", "must be a string"),
    }
    string_field(body, "description", &mut errs);
    let events = match body.get("events") {
        None | Some(Value::Null) => json!(["*"]),
        Some(Value::Array(e)) if e.iter().all(Value::is_string) => Value::Array(e.clone()),
        Some(_) => {
            errs.add("events", "must be an array of event names such as [\"invoice.paid\"]");
            Value::Null
        }
    };
    errs.finish("webhook")?;
    Ok(json!({
        "url": body.get("url").cloned().unwrap_or(Value::Null),
        "events": events,
        "description": body.get("description").cloned().unwrap_or(Value::Null),
    }))
}

/// A webhook endpoint in BTPay's shape (the secret only when given: at creation).
pub fn webhook(row: &Value, secret: Option<&str>) -> Value {
    let get = |k: &str| row.get(k).cloned().unwrap_or(Value::Null);
    let mut w = json!({
        "id": get("id"),
        "url": get("url"),
        "events": get("events"),
        "is_active": get("active"),
        "description": get("description"),
        "format": get("format"),
    });
    if let Some(s) = secret {
        w["secret"] = json!(s);
    }
    w
}

/// `DELETE /api/v1/webhooks/<id>`: the id must be one (a UUID here; BTPay's are numbers).
pub fn webhook_id(id: &str) -> Result<String, DomainError> {
    let ok = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() }
        });
    if ok {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(invalid("id", "is not a webhook id (the id POST /api/v1/webhooks returned)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<Value, DomainError>) -> Vec<String> {
        r.unwrap_err().fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn payment_links() {
        let a = payment_link_args(&json!({"title": "Donate", "slug": "donate",
            "description": "Support our project", "amount": null, "currency": "USD"})).unwrap();
        assert_eq!(a, json!({"title": "Donate", "slug": "donate", "description": "Support our project",
                             "currency": "USD", "asset": "BTC"}));
        let wire = payment_link_args(&json!({"title": "Wire", "payment_methods": ["wire"]})).unwrap();
        assert!(wire.get("asset").is_none());
        assert_eq!(fields(payment_link_args(&json!({"amount": "lots", "color": "red"}))), ["color", "title", "amount"]);
        let row: Value = serde_json::from_str(r#"{"id": "u", "slug": "donate", "title": "Donate",
            "amount": 25.00, "currency": "USD", "active": true, "created_unix": 1710345600}"#).unwrap();
        let l = payment_link(&row, "http://h/");
        assert_eq!((l["amount"].as_str(), l["is_active"].as_bool()), (Some("25.00"), Some(true)));
        assert_eq!(l["url"], "http://h/rpc/pay_payment_link?slug=donate");
    }

    #[test]
    fn webhooks() {
        assert_eq!(webhook_args(&json!({"url": "https://x.example/h"})).unwrap()["events"], json!(["*"]));
        assert_eq!(fields(webhook_args(&json!({"events": "all"}))), ["url", "events"]);
        let w = webhook(&json!({"id": "i", "url": "u", "events": ["*"], "active": true}), Some("whsec_x"));
        assert_eq!(w["secret"], "whsec_x");
        assert!(webhook(&w, None).get("secret").is_none());
        assert!(webhook_id("01a2348a-94ab-701c-b7a2-a0b0d24dfe24").is_ok());
        assert!(webhook_id("1").is_err());
    }
}
