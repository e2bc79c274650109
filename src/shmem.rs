//! Shared memory of the extension: the per-key request counters of the HTTP door.
//!
//! They live here, not in a table, because a 429 rolls the request's transaction back and the
//! count must survive that; and every backend (every PostgREST connection) must see one count.

use crate::domain::ratelimit::{Decision, RateTable};
use pgrx::prelude::*;
use pgrx::shmem::AssertPGRXSharedMemory;
use pgrx::{pg_shmem_init, PgLwLock};
use std::sync::atomic::{AtomicBool, Ordering};

/// Keys tracked at once; past that the least recently used key's window is forgotten.
pub const RATE_SLOTS: usize = 4096;

type Table = AssertPGRXSharedMemory<RateTable<RATE_SLOTS>>;

static RATE_LIMITS: PgLwLock<Table> = unsafe { PgLwLock::new(c"invoices_rate_limits") };

/// Set in the postmaster when the segment is requested; forked backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init` while `shared_preload_libraries` loads us.
pub fn init() {
    pg_shmem_init!(RATE_LIMITS = unsafe { AssertPGRXSharedMemory::new(RateTable::new()) });
    READY.store(true, Ordering::Relaxed);
}

fn require_ready() {
    if !READY.load(Ordering::Relaxed) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "invoices is not loaded through shared_preload_libraries",
            "add invoices to shared_preload_libraries in postgresql.conf and restart PostgreSQL"
        );
    }
}

/// Counts one request of `key` now.
pub fn hit(key: u128, limit: u32) -> Decision {
    require_ready();
    RATE_LIMITS.exclusive().hit(key, now_unix(), limit)
}

/// `(key, last_used_unix)` for every key with a counter.
pub fn last_used() -> Vec<(u128, i64)> {
    require_ready();
    RATE_LIMITS.share().last_used().collect()
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
