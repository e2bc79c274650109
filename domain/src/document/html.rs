//! The hosted invoice page: one self-contained HTML document (inline CSS, inline SVG QR code,
//! a small inline script; no external scripts, fonts or images). The script records the view
//! (`POST rpc/invoice_viewed`), counts down to the quote deadline, refreshes the status by
//! polling `rpc/invoice_status`, and follows the invoice's success / failed URL once it is paid
//! or has expired.

use super::{amount_json, dec, qr, short_time, InvoiceDoc};
use rust_decimal::Decimal;
use serde_json::json;

/// Where the page's script finds the API, relative to the page (`<base>/i/<slug>` →
/// `<base>/rpc/`), and how often it polls.
pub struct PageOptions<'a> {
    pub api_base: &'a str,
    pub pdf_url: Option<&'a str>,
    pub poll_ms: u32,
    /// The server's clock (Unix milliseconds): the countdown corrects the browser's by it.
    pub now_ms: i64,
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Only http(s) URLs become links or redirects.
fn safe_url(u: Option<&str>) -> Option<&str> {
    u.filter(|u| crate::validate::is_http_url(u))
}

/// Human status line.
pub fn status_text(status: &str) -> &'static str {
    match status {
        "draft" => "Not issued yet",
        "pending" => "Waiting for payment",
        "partial" => "Partially paid",
        "paid" => "Payment received, waiting for confirmations",
        "confirmed" => "Paid. Thank you!",
        "expired" => "This invoice has expired",
        "overdue" => "Overdue: waiting for payment",
        "cancelled" => "This invoice was cancelled",
        "void" => "This invoice was voided",
        "uncollectible" => "This invoice is marked uncollectible",
        _ => "Unknown status",
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}body{margin:0;background:#f3f4f6;color:#111827;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:460px;margin:32px auto;background:#fff;border-radius:14px;box-shadow:0 2px 14px rgba(0,0,0,.08);overflow:hidden}
#copy-amount{margin-top:8px}[data-status=paid] #copy-amount,[data-status=confirmed] #copy-amount,[data-status=expired] #copy-amount,[data-status=cancelled] #copy-amount,[data-status=void] #copy-amount{display:none}
.requote{display:none;padding:0 24px 16px;text-align:center}[data-status=expired] .requote{display:block}
.network{margin:8px 0;padding:8px 10px;background:#fef3c7;border-radius:8px;color:#78350f}
@media print{body{background:#fff}main{box-shadow:none;margin:0;max-width:none}button,.btn{display:none}details{display:block}details>*{display:block}}
header{padding:20px 24px;border-bottom:1px solid #e5e7eb}.merchant{font-weight:700;font-size:18px}.number{color:#6b7280;font-size:13px}
.status{padding:12px 24px;font-weight:600;background:#eff6ff;color:#1d4ed8}
[data-status=partial] .status,[data-status=overdue] .status{background:#fffbeb;color:#b45309}
[data-status=paid] .status,[data-status=confirmed] .status{background:#ecfdf5;color:#047857}
[data-status=expired] .status,[data-status=cancelled] .status{background:#fef2f2;color:#b91c1c}
.amount{padding:18px 24px 6px;text-align:center}.big{font-size:26px;font-weight:700;letter-spacing:.2px}.fiat{color:#6b7280;font-size:13px;margin-top:2px}
.pay{padding:8px 24px 18px;text-align:center}.qr{display:inline-block;padding:6px;border:1px solid #e5e7eb;border-radius:8px;margin:8px 0}
.qr svg{display:block;width:220px;height:220px}.label{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.6px;margin-top:10px}
.addr{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;word-break:break-all;background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:8px 10px;margin-top:4px}
button,.btn{font:inherit;font-size:13px;border:1px solid #d1d5db;background:#fff;border-radius:8px;padding:6px 12px;margin-top:8px;cursor:pointer;color:#111827;text-decoration:none;display:inline-block}
.btn.primary{background:#111827;color:#fff;border-color:#111827}.countdown{font-variant-numeric:tabular-nums;font-weight:600}
.done{display:none;padding:24px;text-align:center;font-size:16px}
[data-status=paid] .pay,[data-status=confirmed] .pay,[data-status=expired] .pay,[data-status=cancelled] .pay,[data-status=draft] .pay{display:none}
[data-status=paid] .done,[data-status=confirmed] .done,[data-status=expired] .done,[data-status=cancelled] .done{display:block}
details{border-top:1px solid #e5e7eb;padding:12px 24px}summary{cursor:pointer;color:#374151;font-weight:600}
table{width:100%;border-collapse:collapse;margin-top:8px;font-size:13px}td,th{padding:4px 0;text-align:left}td.n,th.n{text-align:right}
tr.total td{font-weight:700;border-top:1px solid #e5e7eb}footer{padding:12px 24px 18px;color:#6b7280;font-size:12px;text-align:center}
"#;

const SCRIPT: &str = r#"
(function(){
  var C = JSON.parse(document.getElementById('invoice-config').textContent);
  var root = document.querySelector('main');
  var skew = C.now_ms - Date.now();
  var deadline = C.expires_at ? Date.parse(C.expires_at) : null;
  var texts = C.texts, finalStates = {confirmed:1, expired:1, cancelled:1};
  function $(id){ return document.getElementById(id); }
  // the live state in words: seen in the mempool, in a block (n of N), what is left to send
  // a decimal string without its trailing zeros (text, never a float)
  function trim(d){ return String(d).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, ''); }
  function line(s){
    var t = texts[s.status] || s.status, p = s.payment;
    if ((s.status === 'pending' || s.status === 'overdue') && p && p.state === 'mempool') t = 'Payment seen, waiting for a block';
    if (s.status === 'paid' && p) t = p.state === 'mempool' ? 'Payment received, waiting for a block'
      : 'Payment in a block: ' + p.confirmations + ' of ' + p.required + ' confirmations';
    if (s.status === 'partial' && s.asset_due) t = 'Partially paid: send the remaining ' + trim(s.asset_due) + ' ' + s.asset;
    if ((s.status === 'paid' || s.status === 'confirmed') && s.overpaid) t += ' (over-paid)';
    return t;
  }
  function show(s){
    if (!s || !s.status) return;
    root.setAttribute('data-status', s.status);
    $('status').textContent = line(s);
    $('done').textContent = line(s);
    if (s.asset_paid !== undefined && s.asset_amount && s.asset && Number(s.asset_paid) > 0) {
      $('paid').textContent = 'Received ' + trim(s.asset_paid) + ' of ' + trim(s.asset_amount) + ' ' + s.asset;
    }
    if ((s.status === 'paid' || s.status === 'confirmed') && C.success_url) {
      setTimeout(function(){ location.href = C.success_url; }, 2500);
    } else if ((s.status === 'expired' || s.status === 'cancelled') && C.failed_url) {
      setTimeout(function(){ location.href = C.failed_url; }, 2500);
    }
  }
  function tick(){
    if (!deadline || !$('countdown')) return;
    var left = Math.max(0, Math.floor((deadline - (Date.now() + skew)) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
    $('countdown').textContent = (h ? h + ':' + (m < 10 ? '0' : '') : '') + m + ':' + (s < 10 ? '0' : '') + s;
    if (left > 0) setTimeout(tick, 1000);
  }
  function poll(){
    if (finalStates[root.getAttribute('data-status')] && root.getAttribute('data-redirected')) return;
    fetch(C.api + 'invoice_status?ref=' + encodeURIComponent(C.slug), {headers: {Accept: 'application/json'}})
      .then(function(r){ return r.ok ? r.json() : null; })
      .then(function(s){ show(s); if (!(s && finalStates[s.status])) setTimeout(poll, C.poll_ms); })
      .catch(function(){ setTimeout(poll, C.poll_ms * 2); });
  }
  var requote = $('requote');
  if (requote && C.requote) requote.addEventListener('click', function(){
    requote.disabled = true;
    fetch(C.api + 'requote_expired', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({slug: C.slug})})
      .then(function(r){ if (r.ok) location.reload(); else requote.textContent = 'A new quote is not possible now'; });
  });
  var copyAmount = $('copy-amount');
  if (copyAmount) copyAmount.addEventListener('click', function(){
    var a = $('amount').textContent.split(' ')[0];
    if (navigator.clipboard) navigator.clipboard.writeText(a).then(function(){ copyAmount.textContent = 'Copied'; });
  });
  var copy = $('copy');
  if (copy) copy.addEventListener('click', function(){
    var a = $('address').textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(a).then(function(){ copy.textContent = 'Copied'; });
  });
  fetch(C.api + 'invoice_viewed', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({slug: C.slug})}).catch(function(){});
  tick();
  show({status: C.status});
  if (!finalStates[C.status]) poll();
})();
"#;

/// Renders the page.
pub fn render(doc: &InvoiceDoc, opts: &PageOptions) -> String {
    let merchant = doc.merchant_name();
    let title = format!(
        "Invoice {}{}",
        doc.invoice_number,
        if merchant.is_empty() { String::new() } else { format!(" · {merchant}") }
    );
    let uri = doc.payment_uri();
    let asset_money = doc.asset_money();
    let headline = asset_money.clone().unwrap_or_else(|| doc.money(&doc.total));
    let mut fiat = Vec::new();
    if asset_money.is_some() && doc.asset.as_deref() != Some(doc.currency.as_str()) {
        fiat.push(doc.money(&doc.total));
    }
    if let Some(r) = doc.rate_text() {
        fiat.push(r);
    }
    let remaining = match (dec(&doc.asset_amount), dec(&doc.asset_paid)) {
        (Some(a), Some(p)) if p > Decimal::ZERO && p < a => Some(format!(
            "Received {} of {} {}: {} {} left to pay",
            p.normalize(),
            a.normalize(),
            doc.asset.as_deref().unwrap_or(""),
            (a - p).normalize(),
            doc.asset.as_deref().unwrap_or("")
        )),
        _ => None,
    };

    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'\">");
    h.push_str(&format!("<title>{}</title><style>{}</style></head>\n", esc(&title), STYLE));
    h.push_str(&format!("<body><main data-status=\"{}\">", esc(&doc.status)));
    h.push_str(&format!(
        "<header><div class=\"merchant\">{}</div><div class=\"number\">Invoice {}{}</div></header>",
        esc(if merchant.is_empty() { "Invoice" } else { &merchant }),
        esc(&doc.invoice_number),
        doc.due_date.as_deref().map(|d| format!(" · due {}", esc(d))).unwrap_or_default()
    ));
    h.push_str(&format!("<div class=\"status\" id=\"status\" role=\"status\">{}</div>", esc(status_text(&doc.status))));
    h.push_str(&format!(
        "<section class=\"amount\"><div class=\"big\" id=\"amount\">{}</div><div class=\"fiat\">{}</div><div class=\"fiat\" id=\"paid\">{}</div>{}</section>",
        esc(&headline),
        esc(&fiat.join(" · ")),
        esc(remaining.as_deref().unwrap_or("")),
        if doc.address.as_deref().is_some_and(|a| !a.is_empty()) {
            "<button type=\"button\" id=\"copy-amount\">Copy amount</button>"
        } else {
            ""
        }
    ));
    if let Some(address) = doc.address.as_deref().filter(|a| !a.is_empty()) {
        h.push_str("<section class=\"pay\">");
        if let Some(svg) = uri.as_deref().and_then(|u| qr::svg(u, 220)) {
            h.push_str(&format!("<div class=\"qr\">{svg}</div>"));
        }
        let network = doc.network_label();
        if let Some(n) = &network {
            h.push_str(&format!("<div class=\"network\" id=\"network\">Network: <strong>{}</strong></div>", esc(n)));
        }
        h.push_str(&format!(
            "<div class=\"label\">Send {}{} to this address</div><div class=\"addr\" id=\"address\">{}</div>",
            esc(doc.asset.as_deref().unwrap_or("")),
            esc(&network.map(|n| format!(" on {n}")).unwrap_or_default()),
            esc(address)
        ));
        h.push_str("<button type=\"button\" id=\"copy\">Copy address</button> ");
        if let Some(u) = &uri {
            h.push_str(&format!("<a class=\"btn primary\" id=\"wallet\" href=\"{}\">Open in wallet</a>", esc(u)));
        }
        if let Some(exp) = &doc.expires_at {
            h.push_str(&format!(
                "<div class=\"label\">Time left</div><div class=\"countdown\" id=\"countdown\" title=\"{}\">{}</div>",
                esc(&short_time(exp)),
                esc(&short_time(exp))
            ));
        }
        h.push_str("</section>");
    }
    if let Some(bank) = doc.bank_instructions() {
        h.push_str(&format!(
            "<section class=\"pay\" id=\"wire\"><div class=\"label\">Or pay by bank transfer</div><div class=\"addr\">{}</div></section>",
            esc(bank).replace('\n', "<br>")
        ));
    }
    h.push_str(&format!("<div class=\"done\" id=\"done\">{}</div>", esc(status_text(&doc.status))));
    if doc.public_requote {
        h.push_str("<div class=\"requote\"><button type=\"button\" id=\"requote\">Get a new quote</button></div>");
    }

    // details: lines and totals
    h.push_str("<details><summary>Invoice details</summary><table><tr><th>Description</th><th class=\"n\">Qty</th><th class=\"n\">Amount</th></tr>");
    for l in &doc.lines {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&l.description),
            esc(&super::dec_text(&l.quantity)),
            esc(&amount_json(&l.amount))
        ));
    }
    for (k, v, strong) in doc.total_rows() {
        h.push_str(&format!(
            "<tr{}><td colspan=\"2\">{}</td><td class=\"n\">{}</td></tr>",
            if strong { " class=\"total\"" } else { "" },
            esc(&k),
            esc(&v)
        ));
    }
    h.push_str("</table></details><footer>");
    if let Some(pdf) = safe_url(opts.pdf_url).or(opts.pdf_url.filter(|p| p.starts_with('/') || p.starts_with("../"))) {
        h.push_str(&format!("<a class=\"btn\" href=\"{}\">Download PDF</a><br>", esc(pdf)));
    }
    h.push_str("Payments are detected automatically; this page updates by itself.</footer></main>\n");

    let texts: serde_json::Map<String, serde_json::Value> = ["draft", "pending", "partial", "paid", "confirmed", "expired", "overdue", "cancelled", "void", "uncollectible"]
        .iter()
        .map(|s| (s.to_string(), json!(status_text(s))))
        .collect();
    let config = json!({
        "slug": doc.slug,
        "status": doc.status,
        "api": opts.api_base,
        "poll_ms": opts.poll_ms,
        "now_ms": opts.now_ms,
        "expires_at": doc.expires_at,
        "requote": doc.public_requote,
        "success_url": safe_url(doc.success_url.as_deref()),
        "failed_url": safe_url(doc.failed_url.as_deref()),
        "texts": texts,
    });
    // JSON inside <script>: "<" escaped so no "</script>" can end the element early
    let config = config.to_string().replace('<', "\\u003c");
    h.push_str(&format!(
        "<script type=\"application/json\" id=\"invoice-config\">{config}</script><script>{SCRIPT}</script></body></html>\n"
    ));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(status: &str) -> InvoiceDoc {
        InvoiceDoc::from_json(&json!({
            "invoice_number": "INV-0007", "slug": "s1ug", "status": status, "currency": "USD",
            "subtotal": "100.00", "total": "100.00", "tax_amount": "0", "discount_amount": "0",
            "lines": [{"description": "<b>Widget</b> & \"co\"", "quantity": "1", "unit_price": "100", "amount": "100.00"}],
            "merchant": {"name": "Shop </script><script>alert(1)</script>"},
            "asset": "ETH", "asset_amount": "0.05", "asset_paid": "0.02", "rate": "2000",
            "address": "0x56a0ECBb629cd15e21F87693346126B071BE8ceA", "expires_at": "2026-11-25T09:00:00+00:00",
            "success_url": "https://shop.example/thanks", "failed_url": "javascript:alert(1)",
            "payment_chain": {"chain_id": 8453}
        }))
        .unwrap()
    }

    fn page(status: &str) -> String {
        render(&doc(status), &PageOptions { api_base: "../rpc/", pdf_url: Some("https://x.example/rpc/invoice_pdf?ref=s1ug"), poll_ms: 3000, now_ms: 0 })
    }

    #[test]
    fn shows_what_a_payer_needs() {
        let p = page("partial");
        assert!(p.contains("0.05 ETH") && p.contains("100.00 USD") && p.contains("1 ETH = 2,000.00 USD"));
        assert!(p.contains("0x56a0ECBb629cd15e21F87693346126B071BE8ceA"));
        assert!(p.contains("ethereum:0x56a0ECBb629cd15e21F87693346126B071BE8ceA@8453?value=50000000000000000"));
        assert!(p.contains("<svg") && p.contains("0.03 ETH left to pay"));
        assert!(p.contains("data-status=\"partial\"") && p.contains("Partially paid"));
        assert!(p.contains("https://shop.example/thanks"));
    }

    #[test]
    fn escapes_and_refuses_script_urls() {
        let p = page("pending");
        assert!(!p.contains("<b>Widget</b>") && p.contains("&lt;b&gt;Widget&lt;/b&gt; &amp; &quot;co&quot;"));
        assert!(!p.contains("</script><script>alert(1)"));
        assert!(!p.contains("javascript:alert"));
        // nothing is loaded from elsewhere
        assert!(!p.contains("src=\"http") && !p.contains("<link") && !p.contains("@import"));
        assert_eq!(p.matches("<script").count(), 2);
    }

    #[test]
    fn final_states_hide_the_payment_panel_text() {
        assert!(page("confirmed").contains("Paid. Thank you!"));
        assert!(page("expired").contains("This invoice has expired"));
    }
}
