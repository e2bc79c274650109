//! Invoice documents (see `sql/85_documents.sql`): the PDF and the hosted page render in
//! `domain::document` from the jsonb `invoices_internal.invoice_document` builds.

use crate::domain::document::{html, pdf, InvoiceDoc};
use pgrx::prelude::*;
use pgrx::JsonB;

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// The invoice as a PDF.
    #[pg_extern(immutable, parallel_safe)]
    pub fn render_invoice_pdf(doc: JsonB) -> Vec<u8> {
        match InvoiceDoc::from_json(&doc.0) {
            Ok(d) => pdf::render(&d),
            Err(e) => crate::error::raise(e),
        }
    }

    /// The project's one e-mail check (`domain::validate::is_email`), for SQL.
    #[pg_extern(immutable, strict, parallel_safe)]
    pub fn is_email(address: &str) -> bool {
        crate::domain::validate::is_email(address)
    }

    /// The pay button's script (`src/widget/widget.js`, compiled in: no build step at run time).
    #[pg_extern(immutable, parallel_safe)]
    pub fn widget_source() -> &'static str {
        include_str!("../widget/widget.js")
    }

    /// The hosted invoice page; `now_ms` is the server's clock for the countdown.
    #[pg_extern(immutable, parallel_safe)]
    pub fn render_hosted_page(doc: JsonB, api_base: &str, pdf_url: Option<&str>, poll_ms: i32, now_ms: i64) -> String {
        match InvoiceDoc::from_json(&doc.0) {
            Ok(d) => html::render(
                &d,
                &html::PageOptions { api_base, pdf_url, poll_ms: poll_ms.clamp(1000, 60_000) as u32, now_ms },
            ),
            Err(e) => crate::error::raise(e),
        }
    }
}
