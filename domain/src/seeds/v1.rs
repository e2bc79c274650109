//! `/api/v1/invoices`: Living Invoices (Kaspa) and BTPay (Bitcoin) print the same paths. A
//! request takes the union of their fields; its own field names decide whose rules it follows:
//! `items`, `to_email` or `to_name` make it a Living Invoices request (`to_email` and `items`
//! required, `quantity` 1 by default, due in 7 days, paid in KAS), `lines` a BTPay request (only
//! `lines` required, each with its `quantity`; paid on chain in BTC unless `payment_methods`
//! leaves `onchain_btc` out). Answers are a superset of both documents' shapes.

use super::{invalid, object, only_fields};
use crate::error::{DomainError, FieldErrors};
use crate::status::Status;
use serde_json::{json, Map, Value};
use std::str::FromStr;

const LIVING_FIELDS: &[&str] = &["to_email", "to_name", "items", "due_date", "notes", "send"];
const BTPAY_FIELDS: &[&str] = &[
    "lines", "customer_email", "customer_name", "customer_company", "currency", "notes",
    "tax_rate", "discount_amount", "payment_methods", "metadata",
];

/// Whose rules a create request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    LivingInvoices,
    Btpay,
}

pub fn dialect(body: &Map<String, Value>) -> Option<Dialect> {
    if ["items", "to_email", "to_name"].iter().any(|k| body.contains_key(*k)) {
        Some(Dialect::LivingInvoices)
    } else if body.contains_key("lines") {
        Some(Dialect::Btpay)
    } else {
        None
    }
}

/// `POST /api/v1/invoices`: the arguments of `invoices.create_invoice`, by name.
/// `default_due_date` is today + 7 days (YYYY-MM-DD), Living Invoices' default.
pub fn create_args(body: &Value, default_due_date: &str) -> Result<Value, DomainError> {
    let body = object(body)?;
    let mut errs = FieldErrors::new();
    let known: Vec<&str> = LIVING_FIELDS.iter().chain(BTPAY_FIELDS).copied().collect();
    only_fields(body, &known, &mut errs);
    let Some(dialect) = dialect(body) else {
        return Err(invalid(
            "lines",
            "is required (BTPay: lines; Living Invoices: items and to_email)",
        ));
    };
    if body.contains_key("lines") && body.contains_key("items") {
        errs.add("items", "is Living Invoices' name for lines: give one of them");
    }
    let mut args = Map::new();
    let copy = |args: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            args.insert(to.to_string(), v.clone());
        }
    };
    match dialect {
        Dialect::LivingInvoices => {
            match body.get("to_email") {
                None | Some(Value::Null) => errs.add("to_email", "is required"),
                Some(_) => {}
            }
            match body.get("items") {
                Some(Value::Array(items)) => {
                    let lines: Vec<Value> = items
                        .iter()
                        .map(|item| match item {
                            Value::Object(o) if !o.contains_key("quantity") => {
                                let mut o = o.clone();
                                o.insert("quantity".into(), json!(1));
                                Value::Object(o)
                            }
                            other => other.clone(),
                        })
                        .collect();
                    args.insert("lines".into(), Value::Array(lines));
                }
                None | Some(Value::Null) => errs.add("items", "is required"),
                Some(_) => errs.add("items", "must be an array of line items"),
            }
            copy(&mut args, "lines", "lines");
            args.insert("asset".into(), json!("KAS"));
            let due = body.get("due_date").filter(|v| !v.is_null()).cloned();
            args.insert("due_date".into(), due.unwrap_or_else(|| json!(default_due_date)));
        }
        Dialect::Btpay => {
            match body.get("lines") {
                Some(Value::Array(lines)) => {
                    for (i, line) in lines.iter().enumerate() {
                        if line.as_object().is_some_and(|l| !l.contains_key("quantity")) {
                            errs.add(format!("lines[{i}].quantity"), "is required");
                        }
                    }
                    args.insert("lines".into(), Value::Array(lines.clone()));
                }
                _ => errs.add("lines", "must be an array of line items"),
            }
            let methods = match body.get("payment_methods") {
                None | Some(Value::Null) => vec!["onchain_btc".to_string()],
                Some(Value::Array(m)) => {
                    let mut out = Vec::new();
                    for (i, v) in m.iter().enumerate() {
                        match v.as_str() {
                            Some(s @ ("onchain_btc" | "wire")) => out.push(s.to_string()),
                            _ => errs.add(format!("payment_methods[{i}]"), "must be onchain_btc or wire"),
                        }
                    }
                    if m.is_empty() {
                        errs.add("payment_methods", "must name at least one method");
                    }
                    out
                }
                Some(_) => {
                    errs.add("payment_methods", "must be an array such as [\"onchain_btc\", \"wire\"]");
                    Vec::new()
                }
            };
            if methods.iter().any(|m| m == "onchain_btc") {
                args.insert("asset".into(), json!("BTC"));
            }
            if body.contains_key("payment_methods") {
                args.insert("payment_methods".into(), json!(methods));
            }
            copy(&mut args, "due_date", "due_date");
        }
    }
    // types first, so no cast in SQL fails without naming its field
    for k in ["tax_rate", "discount_amount"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            if crate::money::parse_decimal_json(v).is_err() {
                errs.add(k, "must be a decimal number");
            }
        }
    }
    if let Some(v) = body.get("due_date").filter(|v| !v.is_null()) {
        if v.as_str().and_then(crate::validate::parse_iso_date).is_none() {
            errs.add("due_date", "must be a date, YYYY-MM-DD");
        }
    }
    for k in ["to_email", "to_name", "customer_email", "customer_name", "customer_company", "currency", "notes"] {
        if body.get(k).is_some_and(|v| !v.is_null() && !v.is_string()) {
            errs.add(k, "must be a string");
        }
    }
    if body.get("metadata").is_some_and(|v| !v.is_null() && !v.is_object()) {
        errs.add("metadata", "must be an object");
    }
    copy(&mut args, "to_email", "customer_email");
    copy(&mut args, "to_name", "customer_name");
    for k in ["customer_email", "customer_name", "customer_company", "currency", "notes", "tax_rate", "discount_amount", "metadata"] {
        copy(&mut args, k, k);
    }
    match body.get("send") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            args.insert("send".into(), json!(b));
        }
        Some(_) => errs.add("send", "must be true or false"),
    }
    errs.finish("invoice")?;
    args.insert(
        "dialect".into(),
        json!(match dialect { Dialect::LivingInvoices => "living_invoices", Dialect::Btpay => "btpay" }),
    );
    Ok(Value::Object(args))
}

/// `GET /api/v1/invoices`: `{status, limit, offset, page}`. Living Invoices pages (`page` from
/// 1, 20 a page by default), BTPay offsets (50 by default); `limit` is at most 100. A request
/// with neither `page` nor `offset` gets BTPay's 50: a Living Invoices client that sends
/// neither gets more rows, never fewer.
pub fn list_params(query: &Map<String, Value>) -> Result<Value, DomainError> {
    let mut errs = FieldErrors::new();
    only_fields(query, &["status", "limit", "page", "offset"], &mut errs);
    let int = |errs: &mut FieldErrors, k: &str, min: i64, max: i64| -> Option<i64> {
        let v = query.get(k)?.as_str()?;
        match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                errs.add(k, format!("must be a whole number from {min} to {max}"));
                None
            }
        }
    };
    let page = int(&mut errs, "page", 1, 1_000_000);
    let limit = int(&mut errs, "limit", 1, 100).unwrap_or(if page.is_some() { 20 } else { 50 });
    let offset = int(&mut errs, "offset", 0, 100_000_000);
    if page.is_some() && offset.is_some() {
        errs.add("page", "give page or offset, not both");
    }
    let status = match query.get("status").and_then(Value::as_str) {
        None | Some("") => None,
        Some(s) => match Status::from_str(s) {
            Ok(st) => Some(st.as_str()),
            Err(_) => {
                errs.add("status", "must be one of draft, pending, partial, paid, confirmed, overdue, expired, cancelled");
                None
            }
        },
    };
    errs.finish("query")?;
    let offset = offset.unwrap_or_else(|| (page.unwrap_or(1) - 1) * limit);
    Ok(json!({ "status": status, "limit": limit, "offset": offset, "page": offset / limit + 1 }))
}

/// An amount as the seeds print it: a string in the currency's exponent (`"220.00"`).
fn amount(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// One invoice in the union of both documents' shapes, from the engine's invoice object (a row
/// of `invoices.invoices`, with `created_unix` added): BTPay's fields (`ref`, `btc_rate`,
/// `btc_amount`, `created_at` in Unix seconds, `lines`…), Living Invoices' (`id`, the shareable
/// `url`, `to_email`, `to_name`, `due_date`) and the payment terms.
pub fn invoice(obj: &Value) -> Value {
    let get = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
    let btc = obj.get("asset").and_then(Value::as_str) == Some("BTC");
    let lines: Vec<Value> = obj
        .get("lines")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .map(|l| json!({
                    "description": l.get("description").cloned().unwrap_or(Value::Null),
                    "quantity": amount(l.get("quantity")),
                    "unit_price": amount(l.get("unit_price")),
                    "amount": amount(l.get("amount")),
                }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "ref": get("id"),
        "id": get("id"),
        "invoice_number": get("invoice_number"),
        "slug": get("slug"),
        "status": get("status"),
        "url": get("hosted_url"),
        "pdf_url": get("pdf_url"),
        "customer_email": get("customer_email"),
        "customer_name": get("customer_name"),
        "customer_company": get("customer_company"),
        "to_email": get("customer_email"),
        "to_name": get("customer_name"),
        "currency": get("currency"),
        "subtotal": amount(obj.get("subtotal")),
        "tax_amount": amount(obj.get("tax_amount")),
        "discount_amount": amount(obj.get("discount_amount")),
        "total": amount(obj.get("total")),
        "amount_paid": amount(obj.get("amount_paid")),
        "amount_due": amount(obj.get("amount_due")),
        "btc_rate": if btc { amount(obj.get("rate")) } else { Value::Null },
        "btc_amount": if btc { amount(obj.get("asset_amount")) } else { Value::Null },
        "asset": get("asset"),
        "asset_amount": amount(obj.get("asset_amount")),
        "rate": amount(obj.get("rate")),
        "address": get("address"),
        "expires_at": get("expires_at"),
        "issue_date": get("issue_date"),
        "due_date": get("due_date"),
        "notes": obj.get("notes").filter(|v| !v.is_null()).cloned().unwrap_or(json!("")),
        "metadata": get("metadata"),
        "created_at": get("created_unix"),
        "lines": lines,
    })
}

/// `GET /api/v1/invoices/<ref>/status`: the light answer for polling.
pub fn status(obj: &Value) -> Value {
    json!({
        "invoice_number": obj.get("invoice_number").cloned().unwrap_or(Value::Null),
        "status": obj.get("status").cloned().unwrap_or(Value::Null),
        "total": amount(obj.get("total")),
        "amount_paid": amount(obj.get("amount_paid")),
        "amount_due": amount(obj.get("amount_due")),
        "currency": obj.get("currency").cloned().unwrap_or(Value::Null),
    })
}

/// `GET /api/v1/invoices/<ref>?include_payments=true`: whether to add the payments.
pub fn include_payments(query: &Map<String, Value>) -> Result<bool, DomainError> {
    let mut errs = FieldErrors::new();
    only_fields(query, &["include_payments"], &mut errs);
    let v = match query.get("include_payments").and_then(Value::as_str) {
        None | Some("false") | Some("0") | Some("") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            errs.add("include_payments", "must be true or false");
            false
        }
    };
    errs.finish("query")?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(body: Value) -> Value {
        create_args(&body, "2026-12-09").unwrap()
    }

    fn fields(body: Value) -> Vec<String> {
        create_args(&body, "2026-12-09")
            .unwrap_err()
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect()
    }

    #[test]
    fn living_invoices_quick_start_and_example() {
        let a = args(json!({"to_email": "customer@example.com",
                            "items": [{"description": "Web Design", "unit_price": 500}]}));
        assert_eq!(a["customer_email"], "customer@example.com");
        assert_eq!(a["lines"][0]["quantity"], 1);
        assert_eq!(a["asset"], "KAS");
        assert_eq!(a["due_date"], "2026-12-09");
        assert!(a.get("send").is_none());
        let a = args(json!({"to_email": "alice@example.com", "to_name": "Alice Smith",
            "items": [{"description": "Logo Design", "unit_price": 300},
                      {"description": "Business Cards (500)", "unit_price": 75, "quantity": 2}],
            "notes": "Thank you for your business!", "send": true}));
        assert_eq!(a["customer_name"], "Alice Smith");
        assert_eq!(a["lines"][1]["quantity"], 2);
        assert_eq!(a["send"], true);
    }

    #[test]
    fn living_invoices_rules() {
        assert_eq!(fields(json!({"items": [{"description": "x", "unit_price": 1}]})), ["to_email"]);
        assert_eq!(fields(json!({"to_email": "a@b.co"})), ["items"]);
        assert_eq!(fields(json!({"to_email": "a@b.co", "items": 3})), ["items"]);
        assert_eq!(fields(json!({"to_email": "a@b.co", "items": [], "send": "yes"})), ["send"]);
    }

    #[test]
    fn btpay_example() {
        let a = args(json!({"customer_email": "alice@example.com", "customer_name": "Alice",
            "customer_company": "Acme Inc", "currency": "USD", "tax_rate": 10,
            "lines": [{"description": "Consulting (1 hour)", "quantity": 1, "unit_price": "150.00"},
                      {"description": "Hardware wallet setup", "quantity": 2, "unit_price": "25.00"}],
            "notes": "Payment due within 30 days"}));
        assert_eq!(a["asset"], "BTC");
        assert_eq!(a["customer_company"], "Acme Inc");
        assert!(a.get("due_date").is_none(), "BTPay has no due date default");
        assert!(a.get("send").is_none(), "BTPay creates drafts");
        let wire = args(json!({"lines": [{"description": "x", "quantity": 1, "unit_price": 1}],
                               "payment_methods": ["wire"]}));
        assert!(wire.get("asset").is_none());
    }

    #[test]
    fn btpay_rules() {
        assert_eq!(fields(json!({"lines": [{"description": "x", "unit_price": 1}]})), ["lines[0].quantity"]);
        assert_eq!(
            fields(json!({"lines": [{"description": "x", "quantity": 1, "unit_price": 1}],
                          "payment_methods": ["cash"]})),
            ["payment_methods[0]"]
        );
        // an empty list is the engine's to refuse (it names lines)
        assert!(create_args(&json!({"lines": []}), "2026-12-09").is_ok());
    }

    #[test]
    fn types_are_named() {
        assert_eq!(
            fields(json!({"lines": [{"description": "x", "quantity": 1, "unit_price": 1}],
                          "tax_rate": "ten", "due_date": "tomorrow", "notes": 5, "metadata": []})),
            ["tax_rate", "due_date", "notes", "metadata"]
        );
    }

    #[test]
    fn neither_or_both_or_unknown() {
        assert_eq!(fields(json!({"customer_email": "a@b.co"})), ["lines"]);
        assert_eq!(
            fields(json!({"to_email": "a@b.co", "items": [], "lines": []})),
            ["items"]
        );
        assert_eq!(
            fields(json!({"to_email": "a@b.co", "items": [], "amount": 5})),
            ["amount"]
        );
        assert!(create_args(&json!([1]), "2026-12-09").is_err());
    }

    #[test]
    fn list_parameters() {
        let q = |s: &str| list_params(&super::super::query(s));
        assert_eq!(q("").unwrap(), json!({"status": null, "limit": 50, "offset": 0, "page": 1}));
        assert_eq!(q("status=pending&limit=10").unwrap()["limit"], 10);
        assert_eq!(q("limit=10&page=3").unwrap()["offset"], 20);
        assert_eq!(q("page=2").unwrap(), json!({"status": null, "limit": 20, "offset": 20, "page": 2}));
        assert_eq!(q("offset=5").unwrap()["offset"], 5);
        for bad in ["limit=101", "limit=0", "page=0", "offset=-1", "status=lost", "limit=ten", "sort=asc", "page=1&offset=0"] {
            assert!(q(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shapes() {
        // as PostgreSQL's to_jsonb writes numeric: the scale is kept (arbitrary_precision)
        let obj: Value = serde_json::from_str(r#"{"id": "u", "invoice_number": "INV-0001", "slug": "s",
            "status": "pending", "hosted_url": "http://h/i/s", "currency": "USD", "subtotal": 200.00,
            "tax_amount": 20.00, "discount_amount": 0, "total": 220.00, "amount_paid": 0,
            "amount_due": 220.00, "asset": "BTC", "rate": 70862.71, "asset_amount": 0.00310521,
            "created_unix": 1710345600, "notes": null,
            "lines": [{"description": "W", "quantity": "2", "unit_price": "49.99", "amount": "99.98"}]}"#).unwrap();
        let inv = invoice(&obj);
        assert_eq!(inv["ref"], "u");
        assert_eq!(inv["btc_amount"], "0.00310521");
        assert_eq!(inv["created_at"], 1710345600);
        assert_eq!(inv["notes"], "");
        assert_eq!(inv["url"], "http://h/i/s");
        assert_eq!(inv["lines"][0]["amount"], "99.98");
        assert_eq!(status(&obj)["amount_due"], "220.00");
    }
}
