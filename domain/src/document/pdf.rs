//! The invoice as a PDF (A4), written with `pdf-writer` and the standard fonts every reader has
//! (Helvetica, Courier: nothing embedded, text extractable). Text outside Windows-1252 shows
//! as `?`. Long line tables continue on further pages.

use super::{amount_json, dec, dec_text, qr, short_time, InvoiceDoc};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use rust_decimal::Decimal;

const W: f32 = 595.0;
const H: f32 = 842.0;
const LEFT: f32 = 50.0;
const RIGHT: f32 = 545.0;
const BOTTOM: f32 = 70.0;

#[derive(Clone, Copy)]
enum Font {
    Regular,
    Bold,
    Mono,
}

impl Font {
    fn name(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
            Font::Mono => Name(b"F3"),
        }
    }
}

// Advance widths (1/1000 em) of ASCII 32..=126 in Helvetica and Helvetica-Bold (Adobe AFM).
const HELV: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667,
    556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556,
    556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722,
    500, 500, 500, 334, 260, 334, 584,
];
const HELV_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722,
    611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556,
    611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778,
    556, 556, 500, 389, 280, 389, 584,
];

/// Width of `text` in points at `size`.
fn width(text: &str, font: Font, size: f32) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match font {
            Font::Mono => 600,
            Font::Regular | Font::Bold => {
                let table = if matches!(font, Font::Bold) { &HELV_BOLD } else { &HELV };
                let code = c as u32;
                if (32..=126).contains(&code) {
                    table[(code - 32) as usize] as u32
                } else {
                    556
                }
            }
        })
        .sum();
    units as f32 * size / 1000.0
}

/// Windows-1252 bytes of `text` (what WinAnsiEncoding shows); anything else becomes `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '–' => 0x96,
            '—' => 0x97,
            '•' => 0x95,
            _ => b'?',
        })
        .collect()
}

/// Splits `text` into lines no wider than `max` points (words first, then hard breaks).
fn wrap(text: &str, font: Font, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if width(&candidate, font, size) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // a word wider than the column is cut
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if width(&piece, font, size) > max {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

struct Writer {
    pages: Vec<Content>,
    y: f32,
}

impl Writer {
    fn new() -> Writer {
        Writer { pages: vec![Content::new()], y: H - 50.0 }
    }

    fn page(&mut self) -> &mut Content {
        self.pages.last_mut().expect("a page")
    }

    /// Starts a new page unless `needed` points still fit above the bottom margin.
    fn room(&mut self, needed: f32) {
        if self.y - needed < BOTTOM {
            self.pages.push(Content::new());
            self.y = H - 50.0;
        }
    }

    fn text(&mut self, x: f32, y: f32, text: &str, font: Font, size: f32) {
        let bytes = win_ansi(text);
        let c = self.page();
        c.begin_text();
        c.set_font(font.name(), size);
        c.next_line(x, y);
        c.show(Str(&bytes));
        c.end_text();
    }

    fn text_right(&mut self, right: f32, y: f32, text: &str, font: Font, size: f32) {
        let w = width(text, font, size);
        self.text(right - w, y, text, font, size);
    }

    fn fill(&mut self, x: f32, y: f32, w: f32, h: f32, rgb: (f32, f32, f32)) {
        let c = self.page();
        c.set_fill_rgb(rgb.0, rgb.1, rgb.2);
        c.rect(x, y, w, h);
        c.fill_nonzero();
        c.set_fill_rgb(0.0, 0.0, 0.0);
    }

    fn hline(&mut self, y: f32, gray: f32) {
        let c = self.page();
        c.set_stroke_rgb(gray, gray, gray);
        c.set_line_width(0.5);
        c.move_to(LEFT, y);
        c.line_to(RIGHT, y);
        c.stroke();
    }
}

/// Renders the invoice. Never fails: missing fields are left out.
pub fn render(doc: &InvoiceDoc) -> Vec<u8> {
    let mut w = Writer::new();

    // header: merchant name left, INVOICE and its number right
    // a receipt (receipt_pdf) is the same document, titled RECEIPT, with the payments that
    // paid it instead of the payment instructions
    let receipt = doc.receipt_payments.as_ref();
    let merchant = doc.merchant_name();
    w.text(LEFT, w.y, if merchant.is_empty() { "Invoice" } else { &merchant }, Font::Bold, 18.0);
    let top = w.y;
    w.text_right(RIGHT, top, if receipt.is_some() { "RECEIPT" } else { "INVOICE" }, Font::Bold, 22.0);
    let number = if receipt.is_some() { format!("for invoice {}", doc.invoice_number) } else { doc.invoice_number.clone() };
    w.text_right(RIGHT, top - 18.0, &number, Font::Regular, 12.0);
    if let Some(stamp) = doc.stamp() {
        let color = match stamp {
            "PAID" => (0.10, 0.55, 0.25),
            "PARTIALLY PAID" => (0.85, 0.50, 0.05),
            "DRAFT" => (0.45, 0.45, 0.45),
            _ => (0.80, 0.10, 0.10),
        };
        let size = 16.0;
        let tw = width(stamp, Font::Bold, size);
        let (x, y) = (RIGHT - tw - 16.0, top - 58.0);
        let c = w.page();
        c.set_stroke_rgb(color.0, color.1, color.2);
        c.set_line_width(2.0);
        c.rect(x, y, tw + 16.0, 26.0);
        c.stroke();
        c.set_fill_rgb(color.0, color.1, color.2);
        let bytes = win_ansi(stamp);
        c.begin_text();
        c.set_font(Font::Bold.name(), size);
        c.next_line(x + 8.0, y + 8.0);
        c.show(Str(&bytes));
        c.end_text();
        c.set_fill_rgb(0.0, 0.0, 0.0);
    }

    // parties and dates
    w.y = top - 90.0;
    let block_top = w.y;
    let mut lowest = block_top;
    let columns: [(f32, &str, Vec<String>); 2] = [
        (LEFT, "From", doc.merchant_lines()),
        (220.0, "Bill to", doc.customer_lines()),
    ];
    for (x, title, lines) in columns {
        w.text(x, block_top, title, Font::Bold, 9.0);
        let mut y = block_top - 14.0;
        for l in lines.iter().take(8) {
            for part in wrap(l, Font::Regular, 10.0, 160.0) {
                w.text(x, y, &part, Font::Regular, 10.0);
                y -= 13.0;
            }
        }
        lowest = lowest.min(y);
    }
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some(d) = &doc.issue_date {
        facts.push(("Issue date", d.clone()));
    }
    if let Some(d) = &doc.due_date {
        facts.push(("Due date", d.clone()));
    }
    facts.push(("Status", doc.status.clone()));
    let mut y = block_top;
    for (k, v) in facts {
        w.text(400.0, y, k, Font::Bold, 9.0);
        w.text_right(RIGHT, y, &v, Font::Regular, 10.0);
        y -= 14.0;
    }
    w.y = lowest.min(y) - 16.0;

    // line table
    let header = |w: &mut Writer| {
        w.fill(LEFT, w.y - 5.0, RIGHT - LEFT, 18.0, (0.92, 0.92, 0.92));
        w.text(LEFT + 4.0, w.y, "Description", Font::Bold, 9.0);
        w.text_right(370.0, w.y, "Qty", Font::Bold, 9.0);
        w.text_right(460.0, w.y, "Unit price", Font::Bold, 9.0);
        w.text_right(RIGHT - 4.0, w.y, "Amount", Font::Bold, 9.0);
        w.y -= 20.0;
    };
    w.room(60.0);
    header(&mut w);
    for line in &doc.lines {
        let parts = wrap(&line.description, Font::Regular, 10.0, 250.0);
        let height = 13.0 * parts.len() as f32 + 4.0;
        let before = w.pages.len();
        w.room(height);
        if w.pages.len() != before {
            header(&mut w);
        }
        let y0 = w.y;
        for (i, p) in parts.iter().enumerate() {
            w.text(LEFT + 4.0, y0 - 13.0 * i as f32, p, Font::Regular, 10.0);
        }
        w.text_right(370.0, y0, &dec_text(&line.quantity), Font::Regular, 10.0);
        w.text_right(460.0, y0, &amount_json(&line.unit_price), Font::Regular, 10.0);
        w.text_right(RIGHT - 4.0, y0, &amount_json(&line.amount), Font::Regular, 10.0);
        w.y = y0 - height;
        w.hline(w.y + 8.0, 0.85);
    }

    // totals
    let totals = doc.total_rows();
    w.y -= 6.0;
    w.room(16.0 * totals.len() as f32);
    for (k, v, bold) in totals {
        let f = if bold { Font::Bold } else { Font::Regular };
        w.text(360.0, w.y, &k, f, 10.0);
        w.text_right(RIGHT - 4.0, w.y, &v, f, 10.0);
        w.y -= 16.0;
    }

    // a receipt: the payments received, each with its transaction
    if let Some(payments) = receipt {
        w.y -= 10.0;
        w.room(50.0);
        w.text(LEFT, w.y, "Payments received", Font::Bold, 12.0);
        w.y -= 18.0;
        let header = |w: &mut Writer| {
            w.fill(LEFT, w.y - 5.0, RIGHT - LEFT, 18.0, (0.92, 0.92, 0.92));
            w.text(LEFT + 4.0, w.y, "Date", Font::Bold, 9.0);
            w.text(LEFT + 110.0, w.y, "Transaction", Font::Bold, 9.0);
            w.text_right(RIGHT - 4.0, w.y, "Amount", Font::Bold, 9.0);
            w.y -= 20.0;
        };
        header(&mut w);
        for p in payments {
            let tx = format!("{} {} ({})", p.chain, p.txid, p.status);
            let parts = wrap(&tx, Font::Mono, 7.5, 280.0);
            let height = 11.0 * parts.len() as f32 + 6.0;
            let before = w.pages.len();
            w.room(height);
            if w.pages.len() != before {
                header(&mut w);
            }
            let y0 = w.y;
            w.text(LEFT + 4.0, y0, &p.detected_at.as_deref().map(short_time).unwrap_or_default(), Font::Regular, 9.0);
            for (i, part) in parts.iter().enumerate() {
                w.text(LEFT + 110.0, y0 - 11.0 * i as f32, part, Font::Mono, 7.5);
            }
            w.text_right(RIGHT - 4.0, y0, &format!("{} {}", dec_text(&p.amount), p.asset), Font::Regular, 10.0);
            w.y = y0 - height;
            w.hline(w.y + 8.0, 0.85);
        }
        w.y -= 10.0;
    }

    // payment: amount in the asset, rate, deadline, address and its QR code
    if let (Some(asset_money), Some(address), None) =
        (doc.asset_money(), doc.address.as_deref().filter(|a| !a.is_empty()), receipt)
    {
        let uri = doc.payment_uri();
        let box_h = 150.0;
        w.y -= 10.0;
        w.room(box_h + 10.0);
        let top = w.y;
        let c = w.page();
        c.set_stroke_rgb(0.75, 0.75, 0.75);
        c.set_line_width(0.8);
        c.rect(LEFT, top - box_h, RIGHT - LEFT, box_h);
        c.stroke();
        let x = LEFT + 12.0;
        let mut y = top - 20.0;
        w.text(x, y, "Payment", Font::Bold, 12.0);
        y -= 20.0;
        w.text(x, y, "Pay exactly", Font::Regular, 9.0);
        w.text(x + 80.0, y, &asset_money, Font::Bold, 12.0);
        y -= 16.0;
        if let Some(network) = doc.network_label() {
            w.text(x, y, "Network", Font::Regular, 9.0);
            w.text(x + 80.0, y, &network, Font::Bold, 10.0);
            y -= 14.0;
        }
        if let Some(rate) = doc.rate_text() {
            let markup = dec(&doc.markup_percent)
                .filter(|m| *m != Decimal::ZERO)
                .map(|m| format!(" (incl. {}% markup)", m.normalize()))
                .unwrap_or_default();
            w.text(x, y, "Rate", Font::Regular, 9.0);
            w.text(x + 80.0, y, &format!("{rate}{markup}"), Font::Regular, 10.0);
            y -= 14.0;
        }
        if let Some(exp) = &doc.expires_at {
            w.text(x, y, "Pay by", Font::Regular, 9.0);
            w.text(x + 80.0, y, &short_time(exp), Font::Regular, 10.0);
            y -= 14.0;
        }
        w.text(x, y, "Address", Font::Regular, 9.0);
        for part in wrap(address, Font::Mono, 8.5, 270.0) {
            w.text(x + 80.0, y, &part, Font::Mono, 8.5);
            y -= 11.0;
        }
        if let Some(uri) = &uri {
            y -= 4.0;
            for part in wrap(uri, Font::Mono, 6.0, 340.0).into_iter().take(5) {
                w.text(x, y, &part, Font::Mono, 6.0);
                y -= 8.0;
            }
            if let Some(m) = qr::encode(uri) {
                let size = 126.0;
                let module = size / (m.width + 8) as f32;
                let qx = RIGHT - 12.0 - size;
                let qy = top - 12.0 - size;
                let c = w.page();
                c.set_fill_rgb(0.0, 0.0, 0.0);
                for (mx, my, len) in m.runs() {
                    let px = qx + (mx + 4) as f32 * module;
                    let py = qy + size - (my + 5) as f32 * module;
                    c.rect(px, py, len as f32 * module, module);
                }
                c.fill_nonzero();
            }
        }
        w.y = top - box_h - 20.0;
    }

    // a wire: the merchant's bank-transfer instructions
    if let Some(bank) = doc.bank_instructions() {
        w.room(30.0);
        w.text(LEFT, w.y, "Pay by bank transfer", Font::Bold, 9.0);
        w.y -= 14.0;
        for line in bank.lines() {
            for part in wrap(line, Font::Regular, 10.0, RIGHT - LEFT) {
                w.room(13.0);
                w.text(LEFT, w.y, &part, Font::Regular, 10.0);
                w.y -= 13.0;
            }
        }
        w.y -= 8.0;
    }

    // notes
    if let Some(notes) = doc.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        w.room(30.0);
        w.text(LEFT, w.y, "Notes", Font::Bold, 9.0);
        w.y -= 14.0;
        for part in wrap(notes, Font::Regular, 10.0, RIGHT - LEFT) {
            w.room(13.0);
            w.text(LEFT, w.y, &part, Font::Regular, 10.0);
            w.y -= 13.0;
        }
    }

    // footer on every page: where to view and pay online, page x of n
    let n = w.pages.len();
    let footer = doc.hosted_url.as_deref().map(|u| {
        if receipt.is_some() { format!("The invoice online: {u}") } else { format!("View and pay online: {u}") }
    });
    for i in 0..n {
        let bytes_f = footer.as_deref().map(win_ansi);
        let label = if receipt.is_some() {
            format!("Receipt for {} - page {} of {}", doc.invoice_number, i + 1, n)
        } else {
            format!("{} - page {} of {}", doc.invoice_number, i + 1, n)
        };
        let label_x = RIGHT - width(&label, Font::Regular, 8.0);
        let page_no = win_ansi(&label);
        let c = &mut w.pages[i];
        c.set_fill_rgb(0.4, 0.4, 0.4);
        if let Some(b) = &bytes_f {
            c.begin_text();
            c.set_font(Font::Regular.name(), 8.0);
            c.next_line(LEFT, 40.0);
            c.show(Str(b));
            c.end_text();
        }
        c.begin_text();
        c.set_font(Font::Regular.name(), 8.0);
        c.next_line(label_x, 28.0);
        c.show(Str(&page_no));
        c.end_text();
    }

    assemble(doc, w.pages)
}

fn assemble(doc: &InvoiceDoc, pages: Vec<Content>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [Ref::new(3), Ref::new(4), Ref::new(5)];
    let info = Ref::new(6);
    let mut next = 7;
    let mut page_ids = Vec::new();
    let mut streams = Vec::new();
    for content in pages {
        let page_id = Ref::new(next);
        let content_id = Ref::new(next + 1);
        next += 2;
        page_ids.push(page_id);
        streams.push((page_id, content_id, content.finish()));
    }
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(page_ids.len() as i32);
    for (page_id, content_id, data) in &streams {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, W, H));
        page.parent(tree);
        page.contents(*content_id);
        page.resources()
            .fonts()
            .pair(Font::Regular.name(), fonts[0])
            .pair(Font::Bold.name(), fonts[1])
            .pair(Font::Mono.name(), fonts[2]);
        page.finish();
        pdf.stream(*content_id, data);
    }
    for (id, base) in fonts.iter().zip([&b"Helvetica"[..], b"Helvetica-Bold", b"Courier"]) {
        pdf.type1_font(*id).base_font(Name(base)).encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    let title = format!("Invoice {}", doc.invoice_number);
    pdf.document_info(info).title(TextStr(&title)).producer(TextStr("invoices (PostgreSQL extension)"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(status: &str, lines: usize) -> InvoiceDoc {
        let lines: Vec<_> = (0..lines)
            .map(|i| json!({"description": format!("Consulting, week {i} (Müller & Söhne)"), "quantity": "2", "unit_price": "100.00", "amount": "200.00"}))
            .collect();
        InvoiceDoc::from_json(&json!({
            "invoice_number": "INV-0042", "slug": "abc", "status": status, "currency": "EUR",
            "subtotal": 200.00, "tax_rate": 19, "tax_amount": 38.00, "discount_amount": 0, "total": 238.00,
            "amount_paid": 0, "amount_due": 238.00, "lines": lines,
            "merchant": {"name": "Acme GmbH", "email": "billing@acme.test", "address": "Hauptstr. 1\n10115 Berlin"},
            "customer_name": "Bob", "customer_company": "Bob's Bikes", "customer_email": "bob@example.com",
            "issue_date": "2026-11-25", "due_date": "2026-12-25", "notes": "Thank you (really) \\ for your business",
            "hosted_url": "http://127.0.0.1:8080/i/abc", "asset": "BTC", "asset_amount": "0.00366154", "rate": "65000.00",
            "markup_percent": 1, "address": "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "expires_at": "2026-11-25T09:00:00+00:00"
        }))
        .unwrap()
    }

    #[test]
    fn renders_a_valid_pdf() {
        let bytes = render(&sample("paid", 3));
        if let Ok(path) = std::env::var("INVOICES_PDF_SAMPLE") {
            std::fs::write(path, &bytes).unwrap(); // to look at it: pdftoppm -png
        }
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.ends_with(b"%%EOF") || bytes.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&bytes);
        for needle in ["INV-0042", "PAID", "Acme GmbH", "0.00366154 BTC", "Helvetica", "WinAnsiEncoding"] {
            assert!(text.contains(needle), "{needle}");
        }
        // a backslash in text is escaped, not breaking the string syntax
        assert!(text.contains("(really) \\\\ for"), "escaping");
    }

    #[test]
    fn a_receipt_lists_the_payments_instead_of_the_instructions() {
        let mut doc = sample("confirmed", 2);
        doc.receipt_payments = Some(vec![super::super::ReceiptPayment {
            detected_at: Some("2026-11-25T08:40:00+00:00".into()),
            chain: "bitcoin-regtest".into(),
            txid: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b".into(),
            asset: "BTC".into(),
            amount: Some(json!("0.00366154")),
            status: "confirmed".into(),
        }]);
        let text = String::from_utf8_lossy(&render(&doc)).to_string();
        for needle in ["RECEIPT", "for invoice INV-0042", "Payments received", "4a5e1e4baab89f3a", "0.00366154 BTC", "Receipt for INV-0042"] {
            assert!(text.contains(needle), "{needle}");
        }
        // no payment instructions on a receipt
        assert!(!text.contains("Pay exactly"));
        assert!(render(&sample("pending", 1)).windows(11).any(|w| w == b"Pay exactly"));
    }

    #[test]
    fn long_tables_continue_on_more_pages() {
        let one = render(&sample("pending", 3));
        let many = render(&sample("pending", 120));
        let count = |b: &[u8]| String::from_utf8_lossy(b).matches("/Type /Page\n").count()
            + String::from_utf8_lossy(b).matches("/Type /Page ").count()
            + String::from_utf8_lossy(b).matches("/Type /Page/").count();
        assert!(count(&many) > count(&one), "{} vs {}", count(&many), count(&one));
        assert!(String::from_utf8_lossy(&many).contains("page 3 of"));
    }

    #[test]
    fn wraps_and_encodes() {
        assert_eq!(win_ansi("Müller €5 ✓"), b"M\xfcller \x805 ?".to_vec());
        let parts = wrap("a very long description that needs wrapping in a narrow column", Font::Regular, 10.0, 100.0);
        assert!(parts.len() > 2 && parts.iter().all(|p| width(p, Font::Regular, 10.0) <= 100.0));
        let hard = wrap(&"x".repeat(300), Font::Mono, 10.0, 60.0);
        assert!(hard.iter().all(|p| p.len() <= 10));
        // an empty document still renders
        assert!(render(&InvoiceDoc::default()).starts_with(b"%PDF-"));
    }
}
