//! Kibble (`POST /api/invoices`): USDC invoices on Base. The merchant and vendor are given by
//! value on every call (the merchant's name, e-mail and address are a snapshot printed on the
//! invoice), 1 to 30 line items, an issue date (today by default) and a required due date, and
//! the receiving wallet: `privy` (the merchant's managed wallet: the engine provisions the
//! deposit address) or `byo` (the merchant's own EVM address, in EIP-55 checksum form). The
//! vendor is e-mailed unless `send_now` is false. Errors name Kibble's fields (`line_items[0]`,
//! `wallet_address`), every bad field at once.

use super::{object, only_fields};
use crate::error::{DomainError, FieldErrors};
use serde_json::{json, Map, Value};

const FIELDS: &[&str] = &[
    "merchant_email", "merchant_name", "merchant_address", "vendor_email", "vendor_name",
    "vendor_address", "line_items", "issue_date", "due_date", "wallet_type", "wallet_address",
    "notes", "webhook_url", "send_now",
];

/// Kibble's line-item limit.
pub const MAX_LINE_ITEMS: usize = 30;

/// A field that is present and not `null`.
fn given<'a>(body: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    body.get(k).filter(|v| !v.is_null())
}

/// A required string: missing, `null` or blank is "is required"; another type is named.
fn required_str<'a>(body: &'a Map<String, Value>, k: &str, errs: &mut FieldErrors) -> Option<&'a str> {
    match given(body, k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        None | Some(Value::String(_)) => {
            errs.add(k, "is required");
            None
        }
        Some(_) => {
            errs.add(k, "must be a string");
            None
        }
    }
}

/// An optional string: missing, `null` or blank is absent; another type is named.
fn optional_str<'a>(body: &'a Map<String, Value>, k: &str, errs: &mut FieldErrors) -> Option<&'a str> {
    match given(body, k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        None | Some(Value::String(_)) => None,
        Some(_) => {
            errs.add(k, "must be a string");
            None
        }
    }
}

/// A date field as `YYYY-MM-DD` → its (year, month, day), or the field named.
fn date(s: &str, k: &str, errs: &mut FieldErrors) -> Option<(i32, u32, u32)> {
    let d = crate::validate::parse_iso_date(s);
    if d.is_none() {
        errs.add(k, "must be a date, YYYY-MM-DD");
    }
    d
}

/// An EVM address in EIP-55 checksum form (`0x` + 40 hex digits, the letters in the case the
/// checksum gives them); an all-lower-case or all-upper-case copy of a mixed-case address is
/// refused, as is any other case change. `Err` says what is wrong.
pub fn checksummed_address(s: &str) -> Result<String, String> {
    let hex_part = s
        .strip_prefix("0x")
        .ok_or_else(|| "must be an EVM address: 0x followed by 40 hex digits".to_string())?;
    let bytes = hex::decode(hex_part)
        .ok()
        .filter(|b| b.len() == 20)
        .ok_or_else(|| "must be an EVM address: 0x followed by 40 hex digits".to_string())?;
    let expected = crate::addresses::evm::checksum(&bytes);
    if expected != s {
        return Err(format!(
            "must be in EIP-55 checksum format (expected {expected}); copy it from the wallet unchanged"
        ));
    }
    Ok(expected)
}

/// `POST /api/invoices`: `{"invoice": <the arguments of invoices.create_invoice, by name>,
/// "merchant": {"name", "email", "address"}, "send_now": bool, "wallet": {"type": "privy" |
/// "byo", "address": <checksummed address or null>}}`. `today` (YYYY-MM-DD) is the default
/// issue date.
///
/// Required: `merchant_email` and `vendor_email` (e-mails), `merchant_name`,
/// `merchant_address`, `vendor_name`, `line_items` (1 to 30 objects; what is in each is the
/// engine's to check), `due_date` (YYYY-MM-DD, not before the issue date) and `wallet_type`
/// (`privy` or `byo`). `wallet_address` is required with `byo` and refused with `privy`.
/// Optional: `vendor_address`, `issue_date`, `notes`, `webhook_url` (http(s)) and `send_now`
/// (default true). The invoice is in USDC (`currency` = `asset` = USDC: no exchange rate);
/// sending is left to the caller (`send_now`), after the wallet is settled.
pub fn create_args(body: &Value, today: &str) -> Result<Value, DomainError> {
    let body = object(body)?;
    let mut errs = FieldErrors::new();
    only_fields(body, FIELDS, &mut errs);

    let merchant_email = required_str(body, "merchant_email", &mut errs);
    if merchant_email.is_some_and(|e| !crate::validate::is_email(e)) {
        errs.add("merchant_email", "must be an e-mail address");
    }
    let merchant_name = required_str(body, "merchant_name", &mut errs);
    let merchant_address = required_str(body, "merchant_address", &mut errs);
    let vendor_email = required_str(body, "vendor_email", &mut errs);
    if vendor_email.is_some_and(|e| !crate::validate::is_email(e)) {
        errs.add("vendor_email", "must be an e-mail address");
    }
    let vendor_name = required_str(body, "vendor_name", &mut errs);
    let vendor_address = optional_str(body, "vendor_address", &mut errs);

    let lines = match given(body, "line_items") {
        None => {
            errs.add("line_items", "is required");
            None
        }
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > MAX_LINE_ITEMS {
                errs.add("line_items", format!("must have between 1 and {MAX_LINE_ITEMS} items"));
            }
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    errs.add(
                        format!("line_items[{i}]"),
                        "must be an object with description, quantity and unit_price",
                    );
                }
            }
            Some(items)
        }
        Some(_) => {
            errs.add("line_items", "must be an array of line items");
            None
        }
    };

    let issue_date = optional_str(body, "issue_date", &mut errs).unwrap_or(today);
    let issue = date(issue_date, "issue_date", &mut errs);
    let due_date = required_str(body, "due_date", &mut errs);
    let due = due_date.and_then(|d| date(d, "due_date", &mut errs));
    if let (Some(issue), Some(due)) = (issue, due) {
        if due < issue {
            errs.add("due_date", "must not be before issue_date");
        }
    }

    let wallet_type = match required_str(body, "wallet_type", &mut errs) {
        Some(t @ ("privy" | "byo")) => Some(t),
        Some(_) => {
            errs.add("wallet_type", "must be \"privy\" or \"byo\"");
            None
        }
        None => None,
    };
    let wallet_address = match (wallet_type, optional_str(body, "wallet_address", &mut errs)) {
        (Some("privy"), Some(_)) => {
            errs.add("wallet_address", "is only for wallet_type \"byo\": a privy wallet is Kibble's");
            None
        }
        (Some("byo"), None) => {
            errs.add("wallet_address", "is required when wallet_type is \"byo\"");
            None
        }
        (_, Some(a)) => match checksummed_address(a) {
            Ok(a) => Some(a),
            Err(message) => {
                errs.add("wallet_address", message);
                None
            }
        },
        (_, None) => None,
    };

    let notes = optional_str(body, "notes", &mut errs);
    let webhook_url = optional_str(body, "webhook_url", &mut errs);
    if webhook_url.is_some_and(|u| !crate::validate::is_http_url(u)) {
        errs.add("webhook_url", "must be an http(s) URL");
    }
    let send_now = match given(body, "send_now") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errs.add("send_now", "must be true or false");
            true
        }
    };
    errs.finish("invoice")?;

    let mut invoice = Map::new();
    invoice.insert("lines".into(), Value::Array(lines.cloned().unwrap_or_default()));
    invoice.insert("currency".into(), json!("USDC"));
    invoice.insert("asset".into(), json!("USDC"));
    invoice.insert("customer_email".into(), json!(vendor_email));
    invoice.insert("customer_name".into(), json!(vendor_name));
    if let Some(a) = vendor_address {
        invoice.insert("customer_address".into(), json!(a));
    }
    invoice.insert("issue_date".into(), json!(issue_date));
    invoice.insert("due_date".into(), json!(due_date));
    if let Some(n) = notes {
        invoice.insert("notes".into(), json!(n));
    }
    if let Some(u) = webhook_url {
        invoice.insert("callback_url".into(), json!(u));
    }
    Ok(json!({
        "invoice": invoice,
        "merchant": {"name": merchant_name, "email": merchant_email, "address": merchant_address},
        "send_now": send_now,
        "wallet": {"type": wallet_type, "address": wallet_address},
    }))
}

/// An amount as Kibble prints it: a string with cents, and more decimals only where the amount
/// has them (USDC has 6: `1500.000000` is `"1500.00"`, `0.123400` is `"0.1234"`).
pub(crate) fn amount(v: Option<&Value>) -> Value {
    let text = match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Value::Null,
    };
    match crate::money::parse_decimal_str(&text) {
        Ok(d) => {
            let d = d.normalize();
            let scale = d.scale().max(2);
            Value::String(crate::money::format_amount(d, scale))
        }
        Err(_) => Value::String(text),
    }
}

/// The 201 answer to `POST /api/invoices`, from the engine's invoice object: `invoice_id`,
/// `invoice_number`, `slug`, `invoice_url` (the hosted page), `pdf_url` (Kibble's path,
/// `{base_url}/api/invoices/{id}/pdf`), `deposit_address`, `total_amount` (a string),
/// `sent_at` (null when not sent) and `webhook_secret` only when one was made (a
/// `webhook_url` was given): it is shown this once.
pub fn created(obj: &Value, base_url: &str, webhook_secret: Option<&str>) -> Value {
    let get = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
    let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
    let mut body = json!({
        "invoice_id": get("id"),
        "invoice_number": get("invoice_number"),
        "slug": get("slug"),
        "invoice_url": get("hosted_url"),
        "pdf_url": format!("{}/api/invoices/{id}/pdf", base_url.trim_end_matches('/')),
        "deposit_address": get("address"),
        "total_amount": amount(obj.get("total")),
        "sent_at": get("sent_at"),
    });
    if let Some(secret) = webhook_secret {
        body["webhook_secret"] = json!(secret);
    }
    body
}

/// The event Kibble posts to `webhook_url` for an invoice status: it posts "when the invoice
/// reaches paid, partial, or excess status". `paid` and `confirmed` are `paid` (`excess` when
/// more than the total came in), `partial` is `partial`; any other status posts nothing. The
/// caller posts once per event (a `paid` invoice becoming `confirmed` is not paid again).
pub fn webhook_event(status: &str, overpaid: bool) -> Option<&'static str> {
    match status {
        "paid" | "confirmed" if overpaid => Some("excess"),
        "paid" | "confirmed" => Some("paid"),
        "partial" => Some("partial"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: &str = "2026-04-28";
    /// The deposit address of Kibble's example response: a checksummed address.
    const ADDRESS: &str = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B";

    /// Kibble's example request, with an issue date.
    fn example() -> Value {
        json!({
            "merchant_email": "you@acme.com",
            "merchant_name": "Acme SaaS",
            "merchant_address": "123 Main St, San Francisco, CA 94105",
            "vendor_email": "vendor@example.com",
            "vendor_name": "Vendor Co",
            "vendor_address": "456 Market Ave, New York, NY 10001",
            "line_items": [
                {"description": "Consulting — April", "quantity": 10, "unit_price": "150.00"}
            ],
            "issue_date": "2026-04-28",
            "due_date": "2026-05-28",
            "notes": "Net 30",
            "wallet_type": "privy",
            "webhook_url": "https://your-app.com/webhooks/kibble",
            "send_now": true
        })
    }

    fn with(changes: Value) -> Value {
        let mut body = example();
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
        create_args(&body, TODAY)
            .unwrap_err()
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect()
    }

    #[test]
    fn the_example_request() {
        let a = create_args(&example(), TODAY).unwrap();
        assert_eq!(
            a["invoice"],
            json!({
                "lines": [{"description": "Consulting — April", "quantity": 10, "unit_price": "150.00"}],
                "currency": "USDC",
                "asset": "USDC",
                "customer_email": "vendor@example.com",
                "customer_name": "Vendor Co",
                "customer_address": "456 Market Ave, New York, NY 10001",
                "issue_date": "2026-04-28",
                "due_date": "2026-05-28",
                "notes": "Net 30",
                "callback_url": "https://your-app.com/webhooks/kibble",
            })
        );
        assert_eq!(
            a["merchant"],
            json!({"name": "Acme SaaS", "email": "you@acme.com",
                   "address": "123 Main St, San Francisco, CA 94105"})
        );
        assert_eq!(a["send_now"], true);
        assert_eq!(a["wallet"], json!({"type": "privy", "address": null}));
    }

    #[test]
    fn defaults() {
        let a = create_args(
            &with(json!({"issue_date": null, "send_now": null, "vendor_address": null,
                         "notes": null, "webhook_url": null})),
            TODAY,
        )
        .unwrap();
        assert_eq!(a["invoice"]["issue_date"], TODAY);
        assert_eq!(a["send_now"], true);
        assert!(a["invoice"].get("customer_address").is_none());
        assert!(a["invoice"].get("callback_url").is_none());
        let a = create_args(&with(json!({"send_now": false})), TODAY).unwrap();
        assert_eq!(a["send_now"], false);
    }

    #[test]
    fn every_required_field_is_named_at_once() {
        assert_eq!(
            fields(json!({})),
            ["merchant_email", "merchant_name", "merchant_address", "vendor_email", "vendor_name",
             "line_items", "due_date", "wallet_type"]
        );
        assert_eq!(fields(json!({"merchant_name": "  ", "due_date": null})).len(), 8);
    }

    #[test]
    fn types_and_formats() {
        assert_eq!(
            fields(with(json!({"merchant_email": "you", "vendor_email": "a@b", "line_items": {},
                               "issue_date": "28/04/2026", "due_date": "2026-02-30",
                               "wallet_type": "metamask", "notes": 5, "webhook_url": "ftp://x.io",
                               "send_now": "yes", "amount": 1}))),
            ["amount", "merchant_email", "vendor_email", "line_items", "issue_date", "due_date",
             "wallet_type", "notes", "webhook_url", "send_now"]
        );
    }

    #[test]
    fn due_date_not_before_issue_date() {
        assert_eq!(fields(with(json!({"due_date": "2026-04-27"}))), ["due_date"]);
        // the default issue date is today
        assert_eq!(fields(with(json!({"issue_date": null, "due_date": "2026-04-01"}))), ["due_date"]);
        assert!(create_args(&with(json!({"due_date": "2026-04-28"})), TODAY).is_ok());
    }

    #[test]
    fn line_item_count_and_shape() {
        let item = json!({"description": "x", "quantity": 1, "unit_price": "1.00"});
        assert_eq!(fields(with(json!({"line_items": vec![item.clone(); 31]}))), ["line_items"]);
        assert!(create_args(&with(json!({"line_items": vec![item.clone(); 30]})), TODAY).is_ok());
        assert_eq!(fields(with(json!({"line_items": []}))), ["line_items"]);
        assert_eq!(
            fields(with(json!({"line_items": [item, "x", 3]}))),
            ["line_items[1]", "line_items[2]"]
        );
    }

    #[test]
    fn bring_your_own_wallet() {
        let a = create_args(&with(json!({"wallet_type": "byo", "wallet_address": ADDRESS})), TODAY).unwrap();
        assert_eq!(a["wallet"], json!({"type": "byo", "address": ADDRESS}));
        // required with byo, refused with privy
        assert_eq!(fields(with(json!({"wallet_type": "byo"}))), ["wallet_address"]);
        assert_eq!(fields(with(json!({"wallet_address": ADDRESS}))), ["wallet_address"]);
        // lower case, a changed case, a wrong length, no 0x
        let lower = ADDRESS.to_lowercase();
        let flipped = ADDRESS.replacen("Ab58", "aB58", 1);
        for bad in [lower.as_str(), flipped.as_str(), &ADDRESS[..41], &ADDRESS[2..], "0xZZ5801a7D398351b8bE11C439e05C5B3259aeC9B"] {
            let e = create_args(&with(json!({"wallet_type": "byo", "wallet_address": bad})), TODAY).unwrap_err();
            assert_eq!(e.fields.len(), 1, "{bad}");
            assert_eq!(e.fields[0].field, "wallet_address", "{bad}");
        }
        let e = create_args(&with(json!({"wallet_type": "byo", "wallet_address": lower})), TODAY).unwrap_err();
        assert!(e.fields[0].message.contains(ADDRESS), "{}", e.fields[0].message);
        // the EIP-55 examples, including an all-lower-case one that is its own checksum form
        for a in ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xde709f2102306220921060314715629080e2fb77"] {
            assert_eq!(checksummed_address(a).unwrap(), a);
        }
    }

    #[test]
    fn the_created_answer() {
        let obj: Value = serde_json::from_str(
            r#"{"id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "invoice_number": "INV-0001",
                "slug": "abc12345", "hosted_url": "https://pay.kibble.sh/i/abc12345",
                "pdf_url": "https://elsewhere/x.pdf",
                "address": "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B", "total": 1500.00,
                "sent_at": "2026-04-28T12:00:00Z", "status": "pending"}"#,
        )
        .unwrap();
        assert_eq!(
            created(&obj, "https://pay.kibble.sh/", Some("whs_abc123")),
            json!({
                "invoice_id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                "invoice_number": "INV-0001",
                "slug": "abc12345",
                "invoice_url": "https://pay.kibble.sh/i/abc12345",
                "pdf_url": "https://pay.kibble.sh/api/invoices/a1b2c3d4-e5f6-7890-abcd-ef1234567890/pdf",
                "deposit_address": "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B",
                "total_amount": "1500.00",
                "sent_at": "2026-04-28T12:00:00Z",
                "webhook_secret": "whs_abc123",
            })
        );
        let mut unsent = obj.clone();
        unsent["sent_at"] = Value::Null;
        let body = created(&unsent, "https://pay.kibble.sh", None);
        assert!(body.get("webhook_secret").is_none());
        assert!(body["sent_at"].is_null());
        assert_eq!(body["total_amount"], "1500.00");
    }

    #[test]
    fn webhook_events() {
        assert_eq!(webhook_event("paid", false), Some("paid"));
        assert_eq!(webhook_event("confirmed", false), Some("paid"));
        assert_eq!(webhook_event("paid", true), Some("excess"));
        assert_eq!(webhook_event("confirmed", true), Some("excess"));
        assert_eq!(webhook_event("partial", false), Some("partial"));
        for s in ["draft", "pending", "overdue", "expired", "cancelled"] {
            assert_eq!(webhook_event(s, false), None, "{s}");
        }
    }
}
