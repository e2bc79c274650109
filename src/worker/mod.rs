//! The background worker: one process, registered through `shared_preload_libraries`, connected
//! to `invoices.database`. It runs its tasks on a loop: expiry and overdue sweeps, exchange
//! rates, housekeeping, webhook delivery (webhooks.rs), invoice e-mails (email.rs) and one poll
//! per chain (chains.rs). Each
//! task runs in its
//! own transaction; a failing task is recorded in `invoices.worker_status` and retried with
//! back-off, and never stops the others. Network I/O happens on plain threads, outside any
//! transaction; only the main thread talks to PostgreSQL.

mod chains;
mod email;
mod http;
mod rates;
mod webhooks;
mod ws;

use crate::settings;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::{Duration, Instant};

/// `backend_type` in `pg_stat_activity`.
pub const WORKER_TYPE: &str = "invoices worker";

/// Called from `_PG_init` while `shared_preload_libraries` loads us.
pub fn register() {
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
        Spi::run("set application_name = 'invoices worker'").map_err(|e| e.to_string())?;
        Spi::run("set invoices.actor = 'worker'").map_err(|e| e.to_string())
    });
    log!("invoices worker started (database {db})");

    let mut worker = Worker::new();
    let mut nap = naptime();
    while BackgroundWorker::wait_latch(Some(nap)) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // a task with more work waiting (webhooks in flight) gets the next tick at once
        nap = if worker.tick() { Duration::from_millis(1) } else { naptime() };
    }
    // Exit status 1: the postmaster restarts the worker after bgw_restart_time unless the
    // server itself is shutting down (status 0 would unregister it for good, so a stray
    // pg_terminate_backend would silently stop every sweep).
    log!("invoices worker shutting down (SIGTERM)");
    unsafe { pg_sys::proc_exit(1) };
}

fn naptime() -> Duration {
    Duration::from_millis(settings::WORKER_NAPTIME_MS.get().max(10) as u64)
}

/// Runs `f` in a transaction of its own: committed if it returns Ok, rolled back (and the
/// error returned as text) if it returns Err or raises.
pub(crate) fn in_transaction<R>(
    f: impl FnOnce() -> Result<R, String> + UnwindSafe + RefUnwindSafe,
) -> Result<R, String> {
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
        Err(match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
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

/// Network work of a task running on threads: started as one batch, results collected on
/// later ticks, the next batch started once every thread of the last one is done.
pub(crate) struct InFlight<T> {
    rx: Option<std::sync::mpsc::Receiver<T>>,
}

impl<T: Send + 'static> InFlight<T> {
    pub(crate) fn new() -> Self {
        InFlight { rx: None }
    }

    /// The results that arrived since the last call.
    pub(crate) fn collect(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        if let Some(rx) = &self.rx {
            loop {
                match rx.try_recv() {
                    Ok(v) => out.push(v),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        self.rx = None;
                        break;
                    }
                }
            }
        }
        out
    }

    pub(crate) fn idle(&self) -> bool {
        self.rx.is_none()
    }

    /// Runs `work` on one thread per item (no PostgreSQL calls there).
    pub(crate) fn start<I: Send + 'static>(&mut self, items: Vec<I>, work: fn(I) -> T) {
        if items.is_empty() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for item in items {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(work(item));
            });
        }
        self.rx = Some(rx);
    }
}

/// One task's schedule and its counters since the last flush to `worker_tasks`.
struct Task {
    name: &'static str,
    every: Duration,
    next_run: Instant,
    consecutive_failures: u32,
    runs: u64,
    failures: u64,
    last_success: Option<std::time::SystemTime>,
    last_error: Option<String>,
    last_result: serde_json::Value,
    last_flush: Instant,
    dirty: bool,
}

impl Task {
    fn new(name: &'static str, every: Duration) -> Self {
        Task {
            name,
            every,
            next_run: Instant::now(),
            consecutive_failures: 0,
            runs: 0,
            failures: 0,
            last_success: None,
            last_error: None,
            last_result: serde_json::Value::Null,
            last_flush: Instant::now() - Duration::from_secs(60),
            dirty: false,
        }
    }

    /// Back-off after failures: 1 s, 2 s, 4 s … capped at 5 minutes.
    fn backoff(&self) -> Duration {
        Duration::from_secs(1u64 << self.consecutive_failures.min(8)).min(Duration::from_secs(300))
    }

    fn finished(&mut self, outcome: Result<serde_json::Value, String>) {
        self.runs += 1;
        match outcome {
            Ok(result) => {
                let changed = result != self.last_result;
                self.consecutive_failures = 0;
                self.last_success = Some(std::time::SystemTime::now());
                self.last_result = result;
                self.next_run = Instant::now() + self.every;
                self.dirty |= changed;
            }
            Err(e) => {
                self.consecutive_failures += 1;
                self.failures += 1;
                warning!("invoices worker: task {} failed: {e}", self.name);
                self.last_error = Some(e);
                self.next_run = Instant::now() + self.backoff();
                self.dirty = true;
            }
        }
        // worker_status is written on errors at once, on other news (a result that changed) at
        // most every 250 ms, and otherwise every 2 s; not on every tick
        let since = self.last_flush.elapsed();
        if self.last_error.is_some()
            || (self.dirty && since >= Duration::from_millis(250))
            || since >= Duration::from_secs(2)
        {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let (name, runs, failures, consecutive) = (self.name, self.runs as i64, self.failures as i64, self.consecutive_failures as i32);
        let error = self.last_error.take();
        let result = pgrx::JsonB(self.last_result.clone());
        let success = self.last_success.take().map(unix_ms);
        let next_in = self.next_run.saturating_duration_since(Instant::now()).as_millis() as i64;
        let recorded = in_transaction(move || {
            Spi::run_with_args(
                "select invoices_internal.worker_task_report($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    name.into(),
                    runs.into(),
                    failures.into(),
                    consecutive.into(),
                    success.into(),
                    error.into(),
                    result.into(),
                    next_in.into(),
                ],
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = recorded {
            warning!("invoices worker: could not record task {}: {e}", self.name);
        }
        self.runs = 0;
        self.failures = 0;
        self.dirty = false;
        self.last_flush = Instant::now();
    }
}

struct Worker {
    expiry: Task,
    rates: Task,
    housekeeping: Task,
    webhooks: Task,
    email: Task,
    email_sends: email::Sends,
    rate_fetches: rates::Fetches,
    deliveries: webhooks::Deliveries,
    chains: chains::Chains,
    installed_checked: Option<Instant>,
    installed: bool,
}

impl Worker {
    fn new() -> Self {
        Worker {
            expiry: Task::new("expiry", Duration::ZERO),
            rates: Task::new("rates", Duration::from_millis(500)),
            housekeeping: Task::new("housekeeping", Duration::from_secs(30)),
            webhooks: Task::new("webhooks", Duration::ZERO),
            email: Task::new("email", Duration::from_millis(500)),
            email_sends: email::Sends::default(),
            rate_fetches: rates::Fetches::default(),
            deliveries: webhooks::Deliveries::default(),
            chains: chains::Chains::default(),
            installed_checked: None,
            installed: false,
        }
    }

    /// Is the extension installed in this database (checked every second until it is)?
    fn extension_installed(&mut self) -> bool {
        if self.installed {
            return true;
        }
        if self.installed_checked.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        self.installed_checked = Some(Instant::now());
        self.installed = in_transaction(|| {
            Spi::get_one::<bool>("select exists (select 1 from pg_extension where extname = 'invoices')")
                .map(|v| v.unwrap_or(false))
                .map_err(|e| e.to_string())
        })
        .unwrap_or(false);
        self.installed
    }

    /// Runs the tasks that are due; true if one of them has more work waiting.
    fn tick(&mut self) -> bool {
        if !self.extension_installed() {
            return false;
        }
        let now = Instant::now();
        self.expiry.every = naptime();
        if now >= self.expiry.next_run {
            let outcome = in_transaction(|| {
                Spi::get_one::<pgrx::JsonB>(
                    "select to_jsonb(r) from invoices_internal.expire_and_mark_overdue() r",
                )
                .map(|v| v.map(|j| j.0).unwrap_or_default())
                .map_err(|e| e.to_string())
            });
            if let Err(e) = &outcome {
                if e.contains("does not exist") {
                    // dropped (or being re-created): look again in a while
                    self.installed = false;
                }
            }
            self.expiry.finished(outcome);
        }
        if now >= self.housekeeping.next_run {
            let outcome = in_transaction(|| {
                Spi::get_one::<pgrx::JsonB>("select to_jsonb(r) from invoices_internal.housekeeping() r")
                    .map(|v| v.map(|j| j.0).unwrap_or_default())
                    .map_err(|e| e.to_string())
            });
            self.housekeeping.finished(outcome);
        }
        let mut busy = false;
        if now >= self.webhooks.next_run {
            let outcome = self.deliveries.step();
            busy |= outcome.is_ok() && self.deliveries.busy;
            self.webhooks.finished(outcome);
        }
        if now >= self.email.next_run {
            let outcome = self.email_sends.step();
            self.email.finished(outcome);
        }
        if now >= self.rates.next_run {
            let outcome = self.rate_fetches.step();
            self.rates.finished(outcome);
        }
        busy |= self.chains.tick();
        busy
    }
}
