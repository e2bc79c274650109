//! The gateway: API keys, scopes, rate limits and error statuses (see `sql/20_api_keys.sql` and `sql/55_gateway.sql`).

use crate::domain::{apikey, gateway};
use crate::error;
use pgrx::JsonB;
use crate::shmem;
use pgrx::prelude::*;

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// Issues a key signed with `secret` for PostgREST role `role`: (key, prefix, key_hash).
    #[pg_extern(volatile, parallel_safe)]
    pub fn issue_api_key(
        secret: &str,
        role: &str,
    ) -> TableIterator<'static, (name!(key, String), name!(prefix, String), name!(key_hash, String))> {
        let k = apikey::issue(secret, role);
        TableIterator::once((k.key, k.prefix, k.hash))
    }

    /// Validates a key's name and scopes: `{"scopes": [...]}` deduplicated in canonical order,
    /// or `{"error": …}` naming every bad field.
    #[pg_extern(immutable, parallel_safe)]
    pub fn prepare_api_key(name: Option<&str>, scopes: Option<Vec<Option<String>>>) -> JsonB {
        let scopes: Vec<String> = scopes
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.unwrap_or_default())
            .collect();
        let result = match (apikey::check_name(name.unwrap_or("")), apikey::parse_scopes(&scopes)) {
            (Ok(()), Ok(s)) => Ok(s),
            (Err(mut a), Err(b)) => {
                a.fields.extend(b.fields);
                a.message = format!("invalid API key: {} fields are invalid (name, scopes)", a.fields.len());
                Err(a)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        JsonB(match result {
            Ok(s) => serde_json::json!({ "scopes": s }),
            Err(e) => error::as_json(&e),
        })
    }

    /// A random 64-character secret (the key-signing secret PostgREST shares).
    #[pg_extern(volatile, parallel_safe)]
    pub fn new_secret() -> String {
        apikey::new_secret()
    }

    /// What a request addresses, decoded as PostgREST routes it: `(kind, object)` with kind
    /// `root`, `function`, `view`, `view_write` or `unreadable`. The scope it needs is
    /// `invoices_internal.access_rules`' business.
    #[pg_extern(immutable, parallel_safe)]
    pub fn http_route(
        method: &str,
        path: &str,
    ) -> TableIterator<'static, (name!(kind, String), name!(object, String))> {
        let route = gateway::route(method, path);
        let (kind, object) = route.parts();
        TableIterator::once((kind.to_string(), object.to_string()))
    }

    /// 0.1.0's path rule: that release's SQL still names this symbol, so the library keeps it
    /// (no SQL of 0.2.0 uses it; the upgrade replaces it with the rules table). The path is
    /// decoded first, so it is no weaker than the table.
    #[pg_extern(immutable, parallel_safe, sql = false)]
    pub fn required_scope(method: &str, path: &str) -> &'static str {
        gateway::legacy_scope(&gateway::route(method, path))
    }

    /// The HTTP status the HTTP door answers a SQLSTATE with.
    #[pg_extern(immutable, parallel_safe)]
    pub fn http_status(sqlstate: &str) -> i32 {
        gateway::status_for_sqlstate(sqlstate) as i32
    }

    /// Counts one request of key `key_id` against `per_minute` in shared memory (outside any
    /// transaction: a rollback does not give the request back). Returns
    /// `{allowed 0/1, limit, remaining, reset_at (Unix s), retry_after (s)}`.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn rate_limit_hit(key_id: pgrx::Uuid, per_minute: i32) -> Vec<i64> {
        let d = shmem::hit(u128::from_be_bytes(*key_id.as_bytes()), per_minute.max(1) as u32);
        vec![d.allowed as i64, d.limit as i64, d.remaining as i64, d.reset_at, d.retry_after]
    }

    /// When each API key was last used (Unix seconds), from the shared-memory counters.
    #[pg_extern(volatile, parallel_safe)]
    pub fn api_key_usage(
    ) -> TableIterator<'static, (name!(key_id, pgrx::Uuid), name!(last_used_unix, i64))> {
        TableIterator::new(
            shmem::last_used()
                .into_iter()
                .map(|(k, t)| (pgrx::Uuid::from_bytes(k.to_be_bytes()), t)),
        )
    }
}
