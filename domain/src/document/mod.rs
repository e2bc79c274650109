//! What people look at: the invoice as a PDF, as the hosted HTML page, and as an e-mail.
//!
//! Everything renders from one [`InvoiceDoc`]: the invoice object the SQL functions return
//! (`invoices_internal.invoice_document`), plus what the payment URI needs (the chain id and
//! token contract of an ERC-20). Rendering is pure: no I/O, no clock; the caller passes `now`
//! where a page needs it.

pub mod html;
pub mod payuri;
pub mod pdf;
pub mod qr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;

use crate::{DomainError, FieldErrors};

/// One line of the invoice as shown.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Line {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub quantity: Option<Value>,
    #[serde(default)]
    pub unit_price: Option<Value>,
    #[serde(default)]
    pub amount: Option<Value>,
}

/// A party block (merchant snapshot).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Party {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// How to pay by bank transfer, when the invoice takes a wire (BTPay's `payment_methods`):
    /// the merchant's instructions, copied onto the invoice when it was made.
    #[serde(default)]
    pub bank_instructions: Option<String>,
}

/// Where the asset lives, for the payment URI (EIP-681 needs the chain id and, for a token,
/// its contract and decimals).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PaymentChain {
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub chain_id: Option<u64>,
    #[serde(default)]
    pub token_contract: Option<String>,
    #[serde(default)]
    pub token_decimals: Option<u32>,
    /// mainnet, testnet, regtest, devnet or simnet
    #[serde(default)]
    pub network: Option<String>,
}

impl PaymentChain {
    /// The network a payer must send on, in words: "Base (chain id 8453)", "Ethereum (chain id
    /// 1)", "Bitcoin", "Bitcoin regtest", "Kaspa testnet". Sending on the wrong network loses the
    /// money, so every document says it beside the amount.
    pub fn label(&self) -> Option<String> {
        let net = self.network.as_deref().filter(|n| *n != "mainnet");
        let with_net = |name: &str| match net {
            Some(n) => format!("{name} {n}"),
            None => name.to_string(),
        };
        match self.family.as_deref()? {
            "evm" => {
                let id = self.chain_id?;
                let name = match id {
                    1 => "Ethereum",
                    10 => "OP Mainnet",
                    137 => "Polygon",
                    8453 => "Base",
                    42161 => "Arbitrum One",
                    84532 => "Base Sepolia",
                    11155111 => "Sepolia",
                    _ => "EVM chain",
                };
                Some(format!("{name} (chain id {id})"))
            }
            "bitcoin" => Some(with_net("Bitcoin")),
            "kaspa" => Some(with_net("Kaspa")),
            _ => None,
        }
    }
}

/// The invoice object, as far as documents show it. Numbers may come as JSON numbers or strings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvoiceDoc {
    /// The merchant lets a payer ask for a new quote once the invoice expired (the checkout's
    /// "Get a new quote").
    #[serde(default)]
    pub public_requote: bool,
    #[serde(default)]
    pub invoice_number: String,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub subtotal: Option<Value>,
    #[serde(default)]
    pub tax_rate: Option<Value>,
    #[serde(default)]
    pub tax_amount: Option<Value>,
    #[serde(default)]
    pub discount_amount: Option<Value>,
    #[serde(default)]
    pub total: Option<Value>,
    #[serde(default)]
    pub amount_paid: Option<Value>,
    #[serde(default)]
    pub amount_due: Option<Value>,
    #[serde(default)]
    pub lines: Vec<Line>,
    #[serde(default)]
    pub merchant: Option<Party>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub customer_company: Option<String>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_address: Option<String>,
    #[serde(default)]
    pub issue_date: Option<String>,
    #[serde(default)]
    pub due_date: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub hosted_url: Option<String>,
    #[serde(default)]
    pub asset: Option<String>,
    #[serde(default)]
    pub asset_amount: Option<Value>,
    #[serde(default)]
    pub asset_paid: Option<Value>,
    #[serde(default)]
    pub rate: Option<Value>,
    #[serde(default)]
    pub markup_percent: Option<Value>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub paid_at: Option<String>,
    #[serde(default)]
    pub overpaid: bool,
    #[serde(default)]
    pub paid_late: bool,
    #[serde(default)]
    pub success_url: Option<String>,
    #[serde(default)]
    pub failed_url: Option<String>,
    #[serde(default)]
    pub payment_chain: Option<PaymentChain>,
    /// A reminder e-mail's schedule entry: days relative to the due date (negative: before).
    #[serde(default)]
    pub reminder_days: Option<i64>,
    /// Set for a receipt (receipt_pdf): the payments that paid the invoice.
    #[serde(default)]
    pub receipt_payments: Option<Vec<ReceiptPayment>>,
}

/// A payment as a receipt lists it: when, on which chain, which transaction, how much.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReceiptPayment {
    #[serde(default)]
    pub detected_at: Option<String>,
    #[serde(default)]
    pub chain: String,
    #[serde(default)]
    pub txid: String,
    #[serde(default)]
    pub asset: String,
    #[serde(default)]
    pub amount: Option<Value>,
    #[serde(default)]
    pub status: String,
}

impl InvoiceDoc {
    /// Reads the document from the jsonb the SQL side builds.
    pub fn from_json(value: &Value) -> Result<InvoiceDoc, DomainError> {
        InvoiceDoc::deserialize(value).map_err(|e| {
            let mut errors = FieldErrors::new();
            errors.add("invoice", format!("cannot be rendered: {e}"));
            errors.finish("invoice document").unwrap_err()
        })
    }

    /// The payment URI of the deposit (BIP21, EIP-681, kaspa:), when the invoice has one.
    pub fn payment_uri(&self) -> Option<String> {
        let asset = self.asset.as_deref()?;
        let address = self.address.as_deref().filter(|a| !a.is_empty())?;
        let amount = dec(&self.asset_amount);
        let label = self.merchant.as_ref().and_then(|m| m.name.clone());
        payuri::payment_uri(&payuri::PaymentRequest {
            asset,
            address,
            amount,
            chain: self.payment_chain.clone().unwrap_or_default(),
            label: label.as_deref(),
            message: Some(&self.invoice_number),
        })
    }

    /// The stamp a paid, expired or cancelled invoice carries (none while it waits for payment).
    pub fn stamp(&self) -> Option<&'static str> {
        match self.status.as_str() {
            "paid" | "confirmed" => Some("PAID"),
            "partial" => Some("PARTIALLY PAID"),
            "expired" => Some("EXPIRED"),
            "overdue" => Some("OVERDUE"),
            "cancelled" => Some("CANCELLED"),
            "void" => Some("VOID"),
            "uncollectible" => Some("UNCOLLECTIBLE"),
            "draft" => Some("DRAFT"),
            _ => None,
        }
    }

    /// Whether the invoice still waits for (more) payment.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "partial" | "overdue")
    }

    /// "Bill to" lines: name, company, address lines, e-mail.
    pub fn customer_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in [&self.customer_name, &self.customer_company] {
            if let Some(s) = v.as_deref().filter(|s| !s.trim().is_empty()) {
                out.push(s.trim().to_string());
            }
        }
        if let Some(a) = &self.customer_address {
            out.extend(a.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
        }
        if let Some(e) = self.customer_email.as_deref().filter(|s| !s.is_empty()) {
            out.push(e.to_string());
        }
        out
    }

    /// "From" lines: the merchant snapshot.
    pub fn merchant_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = &self.merchant {
            if let Some(n) = m.name.as_deref().filter(|s| !s.trim().is_empty()) {
                out.push(n.trim().to_string());
            }
            if let Some(a) = &m.address {
                out.extend(a.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
            }
            if let Some(e) = m.email.as_deref().filter(|s| !s.is_empty()) {
                out.push(e.to_string());
            }
        }
        out
    }

    /// The bank-transfer instructions, when the invoice takes a wire.
    pub fn bank_instructions(&self) -> Option<&str> {
        self.merchant.as_ref()?.bank_instructions.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// The network the payment goes on (see [`PaymentChain::label`]).
    pub fn network_label(&self) -> Option<String> {
        self.payment_chain.as_ref()?.label()
    }

    pub fn merchant_name(&self) -> String {
        self.merchant.as_ref().and_then(|m| m.name.clone()).unwrap_or_default()
    }

    /// "220.00 USD"
    pub fn money(&self, v: &Option<Value>) -> String {
        match dec(v) {
            Some(d) => format!("{} {}", amount_text(d), self.currency),
            None => String::new(),
        }
    }

    /// The totals block both documents show: (label, amount, emphasized). Discount and tax only
    /// when there are any; amount paid and due once something was paid.
    pub fn total_rows(&self) -> Vec<(String, String, bool)> {
        let nonzero = |v: &Option<Value>| dec(v).is_some_and(|d| d != Decimal::ZERO);
        let mut rows = vec![("Subtotal".to_string(), self.money(&self.subtotal), false)];
        if nonzero(&self.discount_amount) {
            rows.push(("Discount".into(), format!("-{}", self.money(&self.discount_amount)), false));
        }
        if nonzero(&self.tax_amount) {
            rows.push((format!("Tax ({}%)", dec_text(&self.tax_rate)), self.money(&self.tax_amount), false));
        }
        rows.push(("Total".into(), self.money(&self.total), true));
        if nonzero(&self.amount_paid) {
            rows.push(("Amount paid".into(), self.money(&self.amount_paid), false));
            rows.push(("Amount due".into(), self.money(&self.amount_due), true));
        }
        rows
    }

    /// "0.0123 BTC"
    pub fn asset_money(&self) -> Option<String> {
        let a = self.asset.as_deref()?;
        let d = dec(&self.asset_amount)?;
        Some(format!("{} {}", group(&d.normalize().to_string()), a))
    }

    /// "1 BTC = 65,000.00 USD"
    pub fn rate_text(&self) -> Option<String> {
        let a = self.asset.as_deref()?;
        let r = dec(&self.rate)?;
        Some(format!("1 {} = {} {}", a, amount_text(r), self.currency))
    }
}

/// The invoice e-mail: subject and plain-text body (the PDF goes along as an attachment).
pub fn email_text(doc: &InvoiceDoc) -> (String, String) {
    let merchant = doc.merchant_name();
    let from = if merchant.is_empty() { String::new() } else { format!(" from {merchant}") };
    let due = if dec(&doc.amount_due).is_some() { &doc.amount_due } else { &doc.total };
    let mut body = String::new();
    let greeting = doc.customer_name.as_deref().filter(|n| !n.trim().is_empty()).unwrap_or("there");
    body.push_str(&format!("Hello {greeting},\n\n"));
    let subject = match doc.reminder_days {
        None => {
            body.push_str(&format!(
                "{} sent you invoice {} for {}.\n",
                if merchant.is_empty() { "We" } else { &merchant },
                doc.invoice_number,
                doc.money(&doc.total)
            ));
            if let Some(due) = &doc.due_date {
                body.push_str(&format!("It is due on {due}.\n"));
            }
            format!("Invoice {}{} - {}", doc.invoice_number, from, doc.money(due))
        }
        Some(days) => {
            let when = reminder_when(days);
            let on = doc.due_date.as_deref().map(|d| format!(" (due date {d})")).unwrap_or_default();
            body.push_str(&format!(
                "A reminder: invoice {}{} {when}{on}, and {} is still open.\n",
                doc.invoice_number,
                from,
                doc.money(due)
            ));
            format!("Reminder: invoice {}{} {when} - {}", doc.invoice_number, from, doc.money(due))
        }
    };
    if let (Some(asset_money), Some(address)) = (doc.asset_money(), doc.address.as_deref().filter(|a| !a.is_empty())) {
        let on = doc.network_label().map(|n| format!(" on {n}")).unwrap_or_default();
        body.push_str(&format!("\nPay {asset_money}{on} to\n  {address}\n"));
        if let Some(exp) = &doc.expires_at {
            body.push_str(&format!("before {} (the quoted rate holds until then).\n", short_time(exp)));
        }
    }
    if let Some(url) = &doc.hosted_url {
        body.push_str(&format!("\nView and pay the invoice online:\n  {url}\n"));
    }
    body.push_str("\nThe invoice is attached as a PDF.\n");
    if let Some(notes) = doc.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        body.push_str(&format!("\n{notes}\n"));
    }
    if !merchant.is_empty() {
        body.push_str(&format!("\n-- \n{merchant}\n"));
    }
    (subject, body)
}

/// When a reminder's invoice is due, from its schedule entry: "is due in 3 days", "is due
/// today", "was due 7 days ago".
pub fn reminder_when(days: i64) -> String {
    let n = days.unsigned_abs();
    let unit = if n == 1 { "day" } else { "days" };
    match days {
        0 => "is due today".to_string(),
        d if d < 0 => format!("is due in {n} {unit}"),
        _ => format!("was due {n} {unit} ago"),
    }
}

/// A decimal from a JSON number or string (exact: never through a float).
pub fn dec(v: &Option<Value>) -> Option<Decimal> {
    let text = match v.as_ref()? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
}

/// An amount as shown: grouped, without trailing zeros beyond two decimals ("1,200.00",
/// "0.00366154", "0.40").
pub fn amount_text(d: Decimal) -> String {
    let mut n = d.normalize();
    if n.scale() < 2 {
        n.rescale(2);
    }
    group(&n.to_string())
}

/// `amount_text` of a JSON value ("" when absent).
pub fn amount_json(v: &Option<Value>) -> String {
    dec(v).map(amount_text).unwrap_or_default()
}

/// Plain text of a decimal from JSON, as given ("2", "0.5").
pub fn dec_text(v: &Option<Value>) -> String {
    dec(v).map(|d| group(&d.normalize().to_string())).unwrap_or_default()
}

/// Groups thousands: "1234567.50" → "1,234,567.50".
pub fn group(text: &str) -> String {
    let (sign, rest) = text.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", text));
    let (int, frac) = rest.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((rest, None));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// "2026-11-25T08:02:41.76+00:00" → "2026-11-25 08:02 UTC" (timestamps come in UTC from SQL).
pub fn short_time(ts: &str) -> String {
    if ts.len() >= 16 && ts.as_bytes().get(10) == Some(&b'T') {
        format!("{} {} UTC", &ts[..10], &ts[11..16])
    } else {
        ts.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grouping() {
        assert_eq!(group("1234567.50"), "1,234,567.50");
        assert_eq!(group("-1000"), "-1,000");
        assert_eq!(group("999"), "999");
        assert_eq!(group("0.00012"), "0.00012");
    }

    #[test]
    fn reads_the_invoice_object() {
        let doc = InvoiceDoc::from_json(&json!({
            "invoice_number": "INV-0001", "status": "paid", "currency": "USD",
            "total": 220.00, "asset": "BTC", "asset_amount": "0.00338462", "rate": 65000,
            "address": "bcrt1qxyz", "lines": [{"description": "Work", "quantity": "2", "unit_price": "100", "amount": "200.00"}],
            "merchant": {"name": "Acme", "email": null, "address": "1 Road\nTown"},
            "customer_name": "Bob", "customer_email": "bob@example.com"
        }))
        .unwrap();
        assert_eq!(doc.stamp(), Some("PAID"));
        assert_eq!(doc.asset_money().unwrap(), "0.00338462 BTC");
        assert_eq!(doc.rate_text().unwrap(), "1 BTC = 65,000.00 USD");
        assert_eq!(doc.money(&doc.total), "220.00 USD");
        assert_eq!(amount_text(Decimal::from_str("0.400000000000000000").unwrap()), "0.40");
        assert_eq!(doc.merchant_lines(), vec!["Acme", "1 Road", "Town"]);
        assert_eq!(doc.customer_lines(), vec!["Bob", "bob@example.com"]);
        assert!(doc.payment_uri().unwrap().starts_with("bitcoin:bcrt1qxyz?amount=0.00338462"));
        assert!(InvoiceDoc::from_json(&json!({"lines": 3})).is_err());
        let (subject, body) = email_text(&doc);
        assert_eq!(subject, "Invoice INV-0001 from Acme - 220.00 USD");
        assert!(body.starts_with("Hello Bob,") && body.contains("Pay 0.00338462 BTC to\n  bcrt1qxyz"));
        let mut on_chain = doc.clone();
        on_chain.payment_chain = Some(PaymentChain { family: Some("bitcoin".into()), network: Some("regtest".into()), ..Default::default() });
        assert!(email_text(&on_chain).1.contains("Pay 0.00338462 BTC on Bitcoin regtest to\n  bcrt1qxyz"));
    }

    #[test]
    fn reminder_emails_say_when_the_invoice_is_due() {
        let doc = InvoiceDoc::from_json(&serde_json::json!({
            "invoice_number": "INV-0007", "currency": "EUR", "total": "120.00", "amount_due": "20.00",
            "due_date": "2026-12-10", "customer_name": "Dana", "merchant": {"name": "Acme"}, "reminder_days": -3
        }))
        .unwrap();
        let (subject, body) = email_text(&doc);
        assert_eq!(subject, "Reminder: invoice INV-0007 from Acme is due in 3 days - 20.00 EUR");
        assert!(body.contains("A reminder: invoice INV-0007 from Acme is due in 3 days (due date 2026-12-10), and 20.00 EUR is still open."), "{body}");
        assert_eq!(reminder_when(0), "is due today");
        assert_eq!(reminder_when(1), "was due 1 day ago");
        assert_eq!(reminder_when(-1), "is due in 1 day");
        // the invoice e-mail itself is unchanged
        let invoice = InvoiceDoc { reminder_days: None, ..doc };
        assert!(email_text(&invoice).0.starts_with("Invoice INV-0007 from Acme"));
    }

    #[test]
    fn network_labels() {
        let c = |family: &str, network: &str, id: Option<u64>| PaymentChain {
            family: Some(family.into()), network: Some(network.into()), chain_id: id, ..Default::default()
        }.label();
        assert_eq!(c("evm", "mainnet", Some(8453)).as_deref(), Some("Base (chain id 8453)"));
        assert_eq!(c("evm", "mainnet", Some(1)).as_deref(), Some("Ethereum (chain id 1)"));
        assert_eq!(c("evm", "devnet", Some(31337)).as_deref(), Some("EVM chain (chain id 31337)"));
        assert_eq!(c("bitcoin", "mainnet", None).as_deref(), Some("Bitcoin"));
        assert_eq!(c("bitcoin", "regtest", None).as_deref(), Some("Bitcoin regtest"));
        assert_eq!(c("kaspa", "testnet", None).as_deref(), Some("Kaspa testnet"));
        assert_eq!(c("evm", "mainnet", None), None);
    }

    #[test]
    fn short_times() {
        assert_eq!(short_time("2026-11-25T08:02:41.762811+00:00"), "2026-11-25 08:02 UTC");
        assert_eq!(short_time("soon"), "soon");
    }
}
