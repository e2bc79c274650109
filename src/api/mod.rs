//! Thin `#[pg_extern]` wrappers: parse the arguments, call the domain, map errors.
//! They live in schema `invoices_internal`; the public API in schema `invoices` is SQL
//! (see `sql/`) that calls them.

pub mod gateway;
pub mod ids;
pub mod documents;
pub mod invoices;
pub mod rates;
pub mod schedules;
pub mod seeds;
pub mod settlement;
pub mod wallets;
pub mod webhooks;
