//! Webhook signing (see `sql/65_webhooks.sql`); the scheme lives in `domain::signing`.

use crate::domain::signing;
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
}
