//! Webhook signing and outbound destinations (see `sql/65_webhooks.sql`, `sql/70_chains.sql`); the rules live in
//! `domain::signing` and `domain::destination`.

use crate::domain::{destination, signing};
use pgrx::prelude::*;

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// A new endpoint secret: `whsec_` + 64 hex digits.
    #[pg_extern(volatile, parallel_safe)]
    pub fn new_webhook_secret() -> String {
        signing::new_secret()
    }

    /// Both signature forms; a timestamped one must be within `tolerance_seconds` of now.
    #[pg_extern(stable, parallel_safe)]
    pub fn verify_signature(body: &str, header: &str, secret: &str, tolerance_seconds: i32) -> bool {
        signing::verify(body.as_bytes(), header, secret, tolerance_seconds.max(0) as i64, crate::shmem::now_unix())
    }

    /// Why `url` may not be a webhook endpoint or callback (null if it may): not an absolute
    /// http(s) URL, or pointing to loopback, a private network, link-local, CGNAT or a name such
    /// as localhost, unless `invoices.allow_private_destinations` is on.
    #[pg_extern(stable, parallel_safe)]
    pub fn destination_problem(url: &str) -> Option<String> {
        destination::url_problem(url, crate::settings::ALLOW_PRIVATE_DESTINATIONS.get())
    }

    /// A URL's scheme, host and port: what the chains view shows of a node's URL.
    #[pg_extern(immutable, parallel_safe)]
    pub fn url_origin(url: &str) -> String {
        destination::url_origin(url)
    }

    /// `text` with every URL in it cut down to its origin (stored and shown errors).
    #[pg_extern(immutable, parallel_safe)]
    pub fn redact_urls(text: &str) -> String {
        destination::redact_urls(text)
    }
}
