//! Identifiers and reference data: UUIDv7 keys, random slugs, invoice numbers, currencies.

use crate::domain::{money, numbering};
use pgrx::prelude::*;

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// A time-ordered UUID (RFC 9562 version 7): index-friendly primary keys.
    #[pg_extern(volatile, parallel_safe)]
    pub fn uuid_v7() -> pgrx::Uuid {
        pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
    }

    /// A random 16-character URL slug for public invoice links.
    #[pg_extern(volatile, parallel_safe)]
    pub fn new_slug() -> String {
        numbering::new_slug(16)
    }

    /// `format_invoice_number('INV', 1)` → `INV-0001`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn format_invoice_number(prefix: &str, n: i64) -> String {
        numbering::format_invoice_number(prefix, n)
    }

    /// Is `code` a known currency code (exact, upper case)? Used by CHECK constraints.
    #[pg_extern(immutable, parallel_safe)]
    pub fn is_currency(code: &str) -> bool {
        money::currency(code).is_some_and(|c| c.code == code)
    }

    /// Every known currency with its exponent: the seed of `invoices_internal.currencies`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn currency_list() -> TableIterator<
        'static,
        (
            name!(code, String),
            name!(exponent, i16),
            name!(kind, String),
            name!(name, String),
        ),
    > {
        TableIterator::new(money::CURRENCIES.iter().map(|c| {
            (
                c.code.to_string(),
                c.exponent as i16,
                c.kind.as_str().to_string(),
                c.name.to_string(),
            )
        }))
    }
}
