//! The background worker: one process, registered through `shared_preload_libraries`, connected
//! to `invoices.database`. Modeled on pg_cron's launcher: it waits for the extension, runs a
//! recovery phase once (what a previous incarnation left half done), then loops over a list of
//! tasks (task.rs): the expiry and overdue sweeps, housekeeping, exchange rates (rates.rs),
//! webhook deliveries (webhooks.rs), invoice e-mails (email.rs) and one poll task per chain
//! (polls.rs). Each run is a transaction of its own; a failing run is recorded in
//! `invoices.worker_status` by kind (error.rs) and retried with back-off, and never stops the
//! others. Network I/O happens on threads (threads.rs) outside any transaction, through the
//! outgoing client (net.rs); only the main thread talks to PostgreSQL.

mod email;
mod error;
mod net;
mod polls;
mod rates;
mod task;
mod threads;
mod webhooks;
mod ws;

use crate::settings;
use error::{Result, WorkerError};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::{Duration, Instant};
use task::{Step, Task, Tasks};

/// `backend_type` in `pg_stat_activity`.
pub const WORKER_TYPE: &str = "invoices worker";

/// Called from `_PG_init` while `shared_preload_libraries` loads us.
pub fn register() {
    if !settings::BACKGROUND_WORKER.get() {
        return;
    }
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("invoices")
        .set_function("invoices_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // the postmaster restarts it this long after it dies
        .set_restart_time(Some(Duration::from_secs(2)))
        .load();
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn invoices_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = settings::DATABASE
        .get()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| "invoices".to_string());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    let _ = in_transaction(|| {
        Spi::run("set application_name = 'invoices worker'")?;
        Spi::run("set invoices.actor = 'worker'")?;
        Ok(())
    });
    log!("invoices worker started (database {db})");

    let mut worker: Option<Tasks> = None;
    let mut installed_checked: Option<Instant> = None;
    let mut nap = naptime();
    while BackgroundWorker::wait_latch(Some(nap)) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        nap = naptime();
        let Some(tasks) = worker.as_mut() else {
            // 1. wait for the extension (looked for every second), 2. recover, 3. the tasks
            if installed_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                installed_checked = Some(Instant::now());
                if extension_installed() {
                    recover();
                    worker = Some(tasks());
                    nap = Duration::from_millis(1);
                }
            }
            continue;
        };
        let tick = tasks.tick();
        if tick.missing_object {
            // dropped (or being re-created): wait for it again, then recover again
            log!("invoices worker: the extension's objects are gone; waiting for the extension");
            worker = None;
            continue;
        }
        // a task with more work waiting (webhooks in flight, a poll) gets the next tick at once
        if tick.busy {
            nap = Duration::from_millis(1);
        }
    }
    // Exit status 1: the postmaster restarts the worker after bgw_restart_time unless the
    // server itself is shutting down (status 0 would unregister it for good, so a stray
    // pg_terminate_backend would silently stop every sweep).
    log!("invoices worker shutting down (SIGTERM)");
    unsafe { pg_sys::proc_exit(1) };
}

/// The list of tasks.
fn tasks() -> Tasks {
    Tasks::new(vec![
        Box::new(Sweep::new("expiry", naptime, "select to_jsonb(r) from invoices_internal.expire_and_mark_overdue() r")),
        Box::new(Sweep::new("schedules", || Duration::from_secs(1), "select invoices_internal.run_due_schedules()")),
        Box::new(Sweep::new("reminders", || Duration::from_secs(5), "select invoices_internal.send_due_reminders()")),
        Box::new(Sweep::new("housekeeping", || Duration::from_secs(30), "select to_jsonb(r) from invoices_internal.housekeeping() r")),
        Box::new(webhooks::Deliveries::default()),
        Box::new(email::Sends::default()),
        Box::new(rates::Fetches::default()),
        Box::new(polls::Chains::default()),
    ])
}

/// Is the extension installed in this database?
fn extension_installed() -> bool {
    in_transaction(|| {
        Ok(Spi::get_one::<bool>("select exists (select 1 from pg_extension where extname = 'invoices')")?
            .unwrap_or(false))
    })
    .unwrap_or(false)
}

/// The recovery phase, before the first task runs (pg_cron's MarkPendingRunsAsFailed): what a
/// previous incarnation of the worker left half done is made whole again. Its leases on
/// webhook deliveries and e-mails are void (its threads died with it), so those are queued
/// again at once; a chain poll in flight recorded nothing (its cursor did not move), so it is
/// simply polled again. Reported as the task `recovery` in worker_status.
fn recover() {
    let recovered = in_transaction(|| {
        let result = Spi::get_one::<pgrx::JsonB>("select invoices_internal.worker_recovery()")?
            .map(|j| j.0)
            .unwrap_or_default();
        Spi::run_with_args(
            "select invoices_internal.worker_task_report('recovery', 1, 0, 0, $1, null, null, $2, 0)",
            &[unix_ms(std::time::SystemTime::now()).into(), pgrx::JsonB(result.clone()).into()],
        )?;
        Ok(result)
    });
    match recovered {
        Ok(r) => log!("invoices worker: recovered {r}"),
        Err(e) => warning!("invoices worker: recovery failed ({}): {e}", e.kind()),
    }
}

/// A task that is one SQL statement returning a row (the sweeps).
struct Sweep {
    name: &'static str,
    every: fn() -> Duration,
    sql: &'static str,
}

impl Sweep {
    fn new(name: &'static str, every: fn() -> Duration, sql: &'static str) -> Self {
        Sweep { name, every, sql }
    }
}

impl Task for Sweep {
    fn name(&self) -> &str {
        self.name
    }

    fn every(&self) -> Duration {
        (self.every)()
    }

    fn run(&mut self) -> Result<Step> {
        let sql = self.sql;
        in_transaction(move || Ok(Step::Done(Spi::get_one::<pgrx::JsonB>(sql)?.map(|j| j.0).unwrap_or_default())))
    }
}

fn naptime() -> Duration {
    Duration::from_millis(settings::WORKER_NAPTIME_MS.get().max(10) as u64)
}

/// Runs `f` in a transaction of its own: committed if it returns Ok, rolled back (and the
/// error returned) if it returns Err or raises.
/// Hands the heap's free pages back to the system. glibc keeps what a large poll freed (its
/// watched set, the node's answers, in the poll thread's arena and the main one) and the
/// worker's resident memory climbed to ~300 MB with 100,000 watched addresses; after such a
/// poll the pages are returned (issue 24, tests/bench/worker_memory.sh).
pub(crate) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        malloc_trim(0);
    }
}

pub(crate) fn in_transaction<R>(f: impl FnOnce() -> Result<R> + UnwindSafe + RefUnwindSafe) -> Result<R> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(move || {
        let value = f()?;
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(value)
    })
    .catch_others(|e| {
        let report = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        use pgrx::PgSqlErrorCode::*;
        let missing_object = matches!(
            report.sql_error_code(),
            ERRCODE_UNDEFINED_FUNCTION | ERRCODE_UNDEFINED_TABLE | ERRCODE_INVALID_SCHEMA_NAME | ERRCODE_UNDEFINED_OBJECT
        );
        Err(WorkerError::Spi { message: report.message().to_string(), missing_object })
    })
    .execute();
    if result.is_err() && unsafe { pg_sys::IsTransactionState() } {
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
