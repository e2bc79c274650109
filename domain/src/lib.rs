//! Pure domain logic of the `invoices` extension. Nothing here imports pgrx: every rule is
//! unit-tested with plain `cargo test -p invoices-domain`, and the extension's `#[pg_extern]`
//! functions are thin wrappers around it.

pub mod addresses;
pub mod apikey;
pub mod destination;
pub mod detect;
pub mod document;
pub mod error;
pub mod gateway;
pub mod invoice;
pub mod mail;
pub mod money;
pub mod numbering;
pub mod quote;
pub mod ratelimit;
pub mod schedule;
pub mod rates;
pub mod seeds;
pub mod settlement;
pub mod signing;
pub mod status;
pub mod totals;
pub mod validate;

pub use error::{DomainError, ErrorKind, FieldError, FieldErrors};
