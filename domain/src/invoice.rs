//! Validation and pricing of a new invoice. The SQL function `invoices.create_invoice` gathers
//! its named parameters into one JSON object, this module checks every field (reporting all bad
//! fields at once), computes the totals, and returns the normalized invoice the SQL inserts.

use crate::error::{DomainError, FieldErrors};
use crate::money::{
    self, check_scale, currency, format_amount, parse_decimal_json, Currency, CurrencyKind,
};
use crate::totals::{self, LineInput, TotalsError};
use crate::validate::{is_email, is_http_url, parse_iso_date};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

pub const MAX_LINES: usize = 100;
pub const DEFAULT_EXPIRY_MINUTES: i64 = 30;

/// Fields `create_invoice` understands (besides aliases resolved in SQL).
const FIELDS: &[&str] = &[
    "lines",
    "currency",
    "tax_rate",
    "discount_amount",
    "customer_email",
    "customer_name",
    "customer_company",
    "customer_address",
    "issue_date",
    "due_date",
    "notes",
    "metadata",
    "order_id",
    "asset",
    "markup_percent",
    "confirmations",
    "expiry_minutes",
    "pause_minutes",
    "callback_url",
    "callback_secret",
    "attempts_callback",
    "success_url",
    "failed_url",
];

const LINE_FIELDS: &[&str] = &["description", "quantity", "unit_price"];

fn is_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Reads an optional text field: trims, treats "" as absent, enforces a maximum length.
fn text(p: &Map<String, Value>, key: &str, max: usize, errs: &mut FieldErrors) -> Option<String> {
    match p.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else if t.chars().count() > max {
                errs.add(key, format!("must be at most {max} characters"));
                None
            } else {
                Some(t.to_string())
            }
        }
        Some(_) => {
            errs.add(key, "must be a string");
            None
        }
    }
}

/// Reads an optional integer within `range`.
fn integer(
    p: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    errs: &mut FieldErrors,
) -> Option<i64> {
    let v = p.get(key)?;
    if v.is_null() {
        return None;
    }
    let parsed = match v {
        Value::Number(n) => n.to_string().parse::<i64>().ok(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(i) if range.contains(&i) => Some(i),
        _ => {
            errs.add(
                key,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// Reads an optional decimal within [min, max] with at most `scale` decimals.
fn decimal_in(
    p: &Map<String, Value>,
    key: &str,
    min: Decimal,
    max: Decimal,
    scale: u32,
    errs: &mut FieldErrors,
) -> Option<Decimal> {
    let v = p.get(key)?;
    if v.is_null() {
        return None;
    }
    match parse_decimal_json(v).and_then(|d| check_scale(d, scale)) {
        Ok(d) if d >= min && d <= max => Some(d),
        Ok(_) => {
            errs.add(key, format!("must be between {min} and {max}"));
            None
        }
        Err(e) => {
            errs.add(key, e.message());
            None
        }
    }
}

fn url(p: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<String> {
    let u = text(p, key, 2048, errs)?;
    if is_http_url(&u) {
        Some(u)
    } else {
        errs.add(key, "must be an absolute http:// or https:// URL");
        None
    }
}

fn date(
    p: &Map<String, Value>,
    key: &str,
    errs: &mut FieldErrors,
) -> Option<(String, (i32, u32, u32))> {
    let s = text(p, key, 32, errs)?;
    match parse_iso_date(&s) {
        Some(ymd) => Some((s, ymd)),
        None => {
            errs.add(key, "must be a calendar date in YYYY-MM-DD format");
            None
        }
    }
}

/// Validates one line; pushes field errors named `lines[i].field`.
fn line(i: usize, v: &Value, c: &Currency, errs: &mut FieldErrors) -> Option<LineInput> {
    let name = |f: &str| format!("lines[{i}].{f}");
    let Value::Object(o) = v else {
        errs.add(
            format!("lines[{i}]"),
            "must be an object with description, quantity and unit_price",
        );
        return None;
    };
    for k in o.keys() {
        if !LINE_FIELDS.contains(&k.as_str()) {
            errs.add(
                name(k),
                "is not a line field (use description, quantity, unit_price)",
            );
        }
    }
    let description = match o.get("description") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.trim().chars().count() <= 500 => {
            Some(s.trim().to_string())
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            errs.add(name("description"), "must be at most 500 characters");
            None
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errs.add(name("description"), "is required");
            None
        }
        Some(_) => {
            errs.add(name("description"), "must be a string");
            None
        }
    };
    let quantity = match o.get("quantity") {
        None | Some(Value::Null) => Some(Decimal::ONE),
        Some(q) => match parse_decimal_json(q).and_then(|d| check_scale(d, 6)) {
            Ok(d) if d > Decimal::ZERO && d <= Decimal::from(1_000_000_000) => Some(d),
            Ok(_) => {
                errs.add(
                    name("quantity"),
                    "must be greater than 0 and at most 1000000000",
                );
                None
            }
            Err(e) => {
                errs.add(name("quantity"), e.message());
                None
            }
        },
    };
    let price_scale = c.exponent.max(12);
    let unit_price = match o.get("unit_price") {
        None | Some(Value::Null) => {
            errs.add(name("unit_price"), "is required");
            None
        }
        Some(p) => match parse_decimal_json(p).and_then(|d| check_scale(d, price_scale)) {
            Ok(d) if d < Decimal::ZERO => {
                errs.add(name("unit_price"), "must not be negative");
                None
            }
            Ok(d) if d > totals::max_units(c.exponent) => {
                errs.add(
                    name("unit_price"),
                    format!("must be at most {}", totals::max_units(c.exponent)),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.add(name("unit_price"), e.message());
                None
            }
        },
    };
    Some(LineInput {
        description: description?,
        quantity: quantity?,
        unit_price: unit_price?,
    })
}

/// Validates a `create_invoice` payload and prices it. Returns the normalized invoice:
/// amounts as strings with the currency's exponent, dates as `YYYY-MM-DD`. The callback_url
/// must point to a public address (see `destination`).
pub fn prepare(payload: &Value) -> Result<Value, DomainError> {
    prepare_with(payload, false)
}

/// `prepare`, where `allow_private_destinations` lets the callback_url point to loopback or a
/// private network (local development and tests).
pub fn prepare_with(payload: &Value, allow_private_destinations: bool) -> Result<Value, DomainError> {
    let mut errs = FieldErrors::new();
    let Value::Object(p) = payload else {
        errs.add("body", "must be a JSON object");
        errs.finish("invoice")?;
        unreachable!()
    };
    for k in p.keys() {
        if !FIELDS.contains(&k.as_str()) {
            errs.add(k.as_str(), "is not a create_invoice parameter");
        }
    }

    // Currency first: it decides the exponent every amount is checked against.
    let cur: Option<&'static Currency> = match p.get("currency") {
        None | Some(Value::Null) => {
            errs.add("currency", "is required");
            None
        }
        Some(Value::String(code)) => {
            let c = currency(code);
            if c.is_none() {
                errs.add("currency", format!("is not a known currency code: \"{code}\" (use an ISO 4217 code such as USD, or BTC, ETH, USDC, KAS)"));
            }
            c
        }
        Some(_) => {
            errs.add("currency", "must be a currency code string");
            None
        }
    };

    let mut lines = Vec::new();
    match p.get("lines") {
        None | Some(Value::Null) => errs.add("lines", "is required: give at least one line item"),
        Some(Value::Array(a)) if a.is_empty() => {
            errs.add("lines", "must contain at least one line item")
        }
        Some(Value::Array(a)) if a.len() > MAX_LINES => errs.add(
            "lines",
            format!(
                "must contain at most {MAX_LINES} line items (got {})",
                a.len()
            ),
        ),
        Some(Value::Array(a)) => {
            if let Some(c) = cur {
                for (i, v) in a.iter().enumerate() {
                    if let Some(l) = line(i, v, c, &mut errs) {
                        lines.push(l);
                    }
                }
            }
        }
        Some(_) => errs.add("lines", "must be an array of line items"),
    }

    let exponent = cur.map_or(2, |c| c.exponent);
    let tax_rate = decimal_in(
        p,
        "tax_rate",
        Decimal::ZERO,
        Decimal::ONE_HUNDRED,
        4,
        &mut errs,
    )
    .unwrap_or(Decimal::ZERO);
    let discount = decimal_in(
        p,
        "discount_amount",
        Decimal::ZERO,
        totals::max_units(exponent),
        exponent,
        &mut errs,
    )
    .unwrap_or(Decimal::ZERO);

    let customer_email = text(p, "customer_email", 254, &mut errs);
    if let Some(e) = &customer_email {
        if !is_email(e) {
            errs.add(
                "customer_email",
                "must be a valid e-mail address such as alice@example.com",
            );
        }
    }
    let customer_name = text(p, "customer_name", 200, &mut errs);
    let customer_company = text(p, "customer_company", 200, &mut errs);
    let customer_address = text(p, "customer_address", 1000, &mut errs);
    let notes = text(p, "notes", 5000, &mut errs);
    let order_id = text(p, "order_id", 200, &mut errs);

    let issue = date(p, "issue_date", &mut errs);
    let due = date(p, "due_date", &mut errs);
    if let (Some((_, i)), Some((_, d))) = (&issue, &due) {
        if d < i {
            errs.add("due_date", "must not be before issue_date");
        }
    }

    let metadata = match p.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(m)) => {
            if m.len() > 50 {
                errs.add("metadata", "must have at most 50 keys");
            } else if m.keys().any(|k| k.is_empty() || k.chars().count() > 40) {
                errs.add("metadata", "keys must be 1 to 40 characters");
            } else if Value::Object(m.clone()).to_string().len() > 8192 {
                errs.add("metadata", "must be at most 8 KiB of JSON");
            }
            Value::Object(m.clone())
        }
        Some(_) => {
            errs.add("metadata", "must be a JSON object");
            Value::Null
        }
    };

    // Payment settings (used by quotes, addresses and callbacks).
    let asset = match text(p, "asset", 16, &mut errs) {
        None => cur
            .filter(|c| c.kind == CurrencyKind::Crypto)
            .map(|c| c.code.to_string()),
        Some(a) => match currency(&a) {
            Some(c) if c.kind == CurrencyKind::Crypto => {
                if let Some(cc) =
                    cur.filter(|cc| cc.kind == CurrencyKind::Crypto && cc.code != c.code)
                {
                    errs.add(
                        "asset",
                        format!(
                            "a {} invoice is paid in {}; leave asset empty or set it to {}",
                            cc.code, cc.code, cc.code
                        ),
                    );
                }
                Some(c.code.to_string())
            }
            _ => {
                errs.add("asset", "must be one of BTC, ETH, USDC, KAS");
                None
            }
        },
    };
    let markup = decimal_in(
        p,
        "markup_percent",
        Decimal::new(-9999, 2),
        Decimal::ONE_HUNDRED,
        4,
        &mut errs,
    );
    let confirmations = integer(p, "confirmations", 0..=1000, &mut errs);
    let expiry_minutes =
        integer(p, "expiry_minutes", 1..=43_200, &mut errs).unwrap_or(DEFAULT_EXPIRY_MINUTES);
    // at least 10 minutes (as apiforcrypto): a shorter pause hands the address to the next
    // invoice while payments for this one may still arrive
    let pause_minutes = integer(p, "pause_minutes", 10..=43_200, &mut errs);
    let callback_url = text(p, "callback_url", 2048, &mut errs).filter(|u| {
        match crate::destination::url_problem(u, allow_private_destinations) {
            Some(problem) => {
                errs.add("callback_url", problem);
                false
            }
            None => true,
        }
    });
    let callback_secret = text(p, "callback_secret", 256, &mut errs);
    if callback_secret.as_ref().is_some_and(|s| s.len() < 8) {
        errs.add("callback_secret", "must be at least 8 characters");
    }
    if callback_secret.is_some() && is_absent(p.get("callback_url")) {
        errs.add("callback_secret", "needs a callback_url");
    }
    let attempts_callback = integer(p, "attempts_callback", 0..=20, &mut errs);
    let success_url = url(p, "success_url", &mut errs);
    let failed_url = url(p, "failed_url", &mut errs);

    // Totals only when every line parsed, so errors above are reported together.
    let mut priced = None;
    if errs.is_empty() {
        if let Some(c) = cur {
            match totals::compute(&lines, c.exponent, tax_rate, discount) {
                Ok(t) => priced = Some(t),
                Err(TotalsError::LineTooLarge(i)) => errs.add(
                    format!("lines[{i}].unit_price"),
                    "quantity × unit_price is too large",
                ),
                Err(TotalsError::SubtotalTooLarge) => {
                    errs.add("lines", "the invoice total is too large")
                }
                Err(TotalsError::DiscountAboveSubtotal) => errs.add(
                    "discount_amount",
                    "must not exceed the subtotal of the lines",
                ),
            }
        }
    }
    errs.finish("invoice")?;
    let (Some(c), Some(t)) = (cur, priced) else {
        unreachable!("validated above")
    };
    let e = c.exponent;
    let lines_json: Vec<Value> = t
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "position": i + 1,
                "description": l.description,
                "quantity": l.quantity.normalize().to_string(),
                "unit_price": l.unit_price.to_string(),
                "amount": format_amount(l.amount, e),
            })
        })
        .collect();
    Ok(json!({
        "currency": c.code,
        "currency_kind": c.kind.as_str(),
        "exponent": e,
        "lines": lines_json,
        "subtotal": format_amount(t.subtotal, e),
        "discount_amount": format_amount(t.discount_amount, e),
        "tax_rate": t.tax_rate.normalize().to_string(),
        "tax_amount": format_amount(t.tax_amount, e),
        "total": format_amount(t.total, e),
        "customer_email": customer_email,
        "customer_name": customer_name,
        "customer_company": customer_company,
        "customer_address": customer_address,
        "issue_date": issue.map(|d| d.0),
        "due_date": due.map(|d| d.0),
        "notes": notes,
        "metadata": metadata,
        "order_id": order_id,
        "asset": asset,
        "markup_percent": markup.map(|m| m.normalize().to_string()),
        "confirmations": confirmations,
        "expiry_minutes": expiry_minutes,
        "pause_minutes": pause_minutes,
        "callback_url": callback_url,
        "callback_secret": callback_secret,
        "attempts_callback": attempts_callback,
        "success_url": success_url,
        "failed_url": failed_url,
    }))
}

/// The invoice object of a new invoice, from `prepare`'s output, in the shape of the invoice object
/// every function returns (a row of the `invoices` view with its amounts as strings in the
/// currency's exponent, `invoices_internal.invoice_object`; see docs/money.md): the lines
/// without their position, and the amounts and payment fields every new
/// invoice starts with. What the database assigns (id, number, slug, status, merchant, URLs,
/// timestamps) is added by `create_invoice`; the prepared fields stay, so the same value also
/// fills the row (keys that are not columns are ignored there).
pub fn new_invoice_object(mut prepared: Value) -> Value {
    let Some(obj) = prepared.as_object_mut() else {
        return prepared;
    };
    if let Some(Value::Array(lines)) = obj.get_mut("lines") {
        for line in lines.iter_mut().filter_map(Value::as_object_mut) {
            line.remove("position");
        }
    }
    let exponent = obj.get("exponent").and_then(Value::as_u64).unwrap_or(0) as u32;
    let total = obj.get("total").cloned().unwrap_or(Value::Null);
    obj.insert("amount_paid".into(), json!(format_amount(Decimal::ZERO, exponent)));
    obj.insert("amount_due".into(), total);
    obj.insert("asset_paid".into(), json!(0));
    obj.insert("overpaid".into(), json!(false));
    obj.insert("paid_late".into(), json!(false));
    for key in [
        "asset_amount", "rate", "address", "expires_at", "partially_paid_at", "paid_at",
        "confirmed_at", "expired_at", "overdue_at", "cancelled_at", "sent_at",
    ] {
        obj.insert(key.into(), Value::Null);
    }
    prepared
}

/// Validates `create_merchant`'s input; returns the normalized merchant.
pub fn prepare_merchant(payload: &Value) -> Result<Value, DomainError> {
    let mut errs = FieldErrors::new();
    let empty = Map::new();
    let p = payload.as_object().unwrap_or(&empty);
    let name = text(p, "name", 200, &mut errs);
    if name.is_none() && errs.is_empty() {
        errs.add("name", "is required");
    }
    let email = text(p, "email", 254, &mut errs);
    if email.as_ref().is_some_and(|e| !is_email(e)) {
        errs.add("email", "must be a valid e-mail address");
    }
    let address = text(p, "address", 1000, &mut errs);
    let default_currency = match text(p, "default_currency", 8, &mut errs) {
        None => Some("USD"),
        Some(code) => match money::currency(&code) {
            Some(c) => Some(c.code),
            None => {
                errs.add(
                    "default_currency",
                    format!("is not a known currency code: \"{code}\""),
                );
                None
            }
        },
    };
    let prefix = text(p, "invoice_prefix", 16, &mut errs).unwrap_or_else(|| "INV".into());
    if !crate::validate::is_invoice_prefix(&prefix) {
        errs.add(
            "invoice_prefix",
            "must be 1 to 16 letters, digits, '-' or '_', starting with a letter or digit",
        );
    }
    errs.finish("merchant")?;
    Ok(json!({
        "name": name,
        "email": email,
        "address": address,
        "default_currency": default_currency,
        "invoice_prefix": prefix,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn fields(e: &DomainError) -> Vec<String> {
        e.fields.iter().map(|f| f.field.clone()).collect()
    }

    #[test]
    fn new_invoice_object_has_the_object_shape_and_zero_payments() {
        let out = new_invoice_object(
            prepare(&json!({"currency": "JPY", "lines": [{"description": "A", "unit_price": 1000}]})).unwrap(),
        );
        assert_eq!(out["lines"], json!([{"description": "A", "quantity": "1", "unit_price": "1000", "amount": "1000"}]));
        assert_eq!(out["amount_paid"], "0");
        assert_eq!(out["amount_due"], "1000");
        assert_eq!(out["asset_paid"], 0);
        assert_eq!(out["paid_at"], Value::Null);
        assert_eq!(out["total"], "1000", "prepared fields stay");
        let usd = new_invoice_object(prepare(&json!({"currency": "USD", "lines": [{"description": "A", "unit_price": 1}]})).unwrap());
        assert_eq!(usd["amount_paid"], "0.00");
    }

    #[test]
    fn btpay_example_prices_to_220() {
        let out = prepare(&json!({
            "currency": "USD", "tax_rate": 10, "customer_email": "alice@example.com",
            "lines": [
                {"description": "Consulting (1 hour)", "quantity": 1, "unit_price": "150.00"},
                {"description": "Hardware wallet setup", "quantity": 2, "unit_price": "25.00"}
            ]
        }))
        .unwrap();
        assert_eq!(out["total"], "220.00");
        assert_eq!(out["subtotal"], "200.00");
        assert_eq!(out["tax_amount"], "20.00");
        assert_eq!(out["lines"][1]["amount"], "50.00");
        assert_eq!(out["asset"], Value::Null);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let e = prepare(&json!({
            "currency": "USD",
            "customer_email": "not-an-email",
            "issue_date": "2026-05-10", "due_date": "2026-05-01",
            "lines": [
                {"description": "ok", "unit_price": "1"},
                {"description": "", "quantity": -1, "unit_price": "abc"},
            ]
        }))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(
            fields(&e),
            [
                "lines[1].description",
                "lines[1].quantity",
                "lines[1].unit_price",
                "customer_email",
                "due_date"
            ]
        );
    }

    #[test]
    fn missing_and_too_many_lines() {
        let e = prepare(&json!({"currency": "USD"})).unwrap_err();
        assert_eq!(fields(&e), ["lines"]);
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"description": "x", "unit_price": 1}))
            .collect();
        let e = prepare(&json!({"currency": "USD", "lines": many})).unwrap_err();
        assert!(e.message.contains("at most 100"), "{}", e.message);
    }

    #[test]
    fn unknown_currency_and_discount_above_subtotal() {
        let e =
            prepare(&json!({"currency": "XXX", "lines": [{"description": "a", "unit_price": 1}]}))
                .unwrap_err();
        assert_eq!(fields(&e), ["currency"]);
        let e = prepare(&json!({"currency": "USD", "discount_amount": "10.01", "lines": [{"description": "a", "unit_price": 10}]}))
            .unwrap_err();
        assert_eq!(fields(&e), ["discount_amount"]);
    }

    #[test]
    fn discount_with_more_decimals_than_the_currency_is_refused() {
        let e = prepare(&json!({"currency": "JPY", "discount_amount": "1.5", "lines": [{"description": "a", "unit_price": 10}]}))
            .unwrap_err();
        assert_eq!(fields(&e), ["discount_amount"]);
    }

    #[test]
    fn crypto_invoice_defaults_its_asset() {
        let out = prepare(
            &json!({"currency": "btc", "lines": [{"description": "a", "unit_price": "0.001"}]}),
        )
        .unwrap();
        assert_eq!(out["currency"], "BTC");
        assert_eq!(out["asset"], "BTC");
        assert_eq!(out["total"], "0.00100000");
    }

    #[test]
    fn unknown_parameters_and_line_fields_are_named() {
        let e = prepare(&json!({"currency": "USD", "colour": "red", "lines": [{"description": "a", "unit_prise": 1}]}))
            .unwrap_err();
        assert_eq!(
            fields(&e),
            ["colour", "lines[0].unit_prise", "lines[0].unit_price"]
        );
    }

    #[test]
    fn merchant_defaults_and_validation() {
        let m = prepare_merchant(&json!({"name": "Acme"})).unwrap();
        assert_eq!(m["invoice_prefix"], "INV");
        assert_eq!(m["default_currency"], "USD");
        let e = prepare_merchant(&json!({"name": "", "email": "x", "invoice_prefix": "a b"}))
            .unwrap_err();
        assert_eq!(fields(&e), ["name", "email", "invoice_prefix"]);
    }
}
