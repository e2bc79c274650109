//! Tasks and their schedule. A task is one kind of work the worker repeats (the expiry sweep,
//! rate fetches, webhook deliveries, one chain's polls…); the worker keeps a list of them and,
//! on every tick, runs each one that is due in transactions of its own. A run that fails is
//! recorded in `invoices.worker_status` with its kind and retried with back-off; it never
//! stops the other tasks.
//!
//! Adding a task is one `impl Task` and one line in `Worker::new` (mod.rs).

use super::error::{Result, WorkerError};
use super::{in_transaction, unix_ms};
use pgrx::prelude::*;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

/// What a run did.
pub(crate) enum Step {
    /// Finished: its result goes to `worker_status`, and the task is due again after `every`.
    Done(Value),
    /// Started work on threads that is not finished: run again on the next tick.
    Waiting,
}

pub(crate) trait Task {
    /// Its name in `worker_status`.
    fn name(&self) -> &str;
    /// How long after a finished run it is due again.
    fn every(&self) -> Duration;
    /// One run, inside no transaction (it opens its own with `in_transaction`).
    fn run(&mut self) -> Result<Step>;
    /// More work is waiting: the worker ticks again at once instead of napping.
    fn busy(&self) -> bool {
        false
    }
    /// Tasks this one started (a chain's polls, started by the chain list).
    fn spawned(&mut self) -> Vec<Box<dyn Task>> {
        Vec::new()
    }
    /// Done for good: the worker drops it (a chain removed by SQL, once its poll is recorded).
    fn retired(&self) -> bool {
        false
    }
}

/// A task's schedule and its counters since its last report to `worker_tasks`.
struct Schedule {
    next_run: Instant,
    waiting: bool,
    consecutive_failures: u32,
    runs: u64,
    failures: u64,
    last_success: Option<SystemTime>,
    last_error: Option<WorkerError>,
    last_result: Value,
    last_flush: Instant,
    dirty: bool,
}

impl Schedule {
    fn new() -> Self {
        Schedule {
            next_run: Instant::now(),
            waiting: false,
            consecutive_failures: 0,
            runs: 0,
            failures: 0,
            last_success: None,
            last_error: None,
            last_result: Value::Null,
            last_flush: Instant::now() - Duration::from_secs(60),
            dirty: false,
        }
    }

    /// Back-off after failures: 1 s, 2 s, 4 s … capped at 5 minutes.
    fn backoff(&self) -> Duration {
        Duration::from_secs(1u64 << self.consecutive_failures.min(8)).min(Duration::from_secs(300))
    }

    fn finished(&mut self, name: &str, every: Duration, outcome: Result<Value>) {
        self.runs += 1;
        match outcome {
            Ok(result) => {
                let changed = result != self.last_result;
                self.consecutive_failures = 0;
                self.last_success = Some(SystemTime::now());
                self.last_result = result;
                self.next_run = Instant::now() + every;
                self.dirty |= changed;
            }
            Err(e) => {
                self.consecutive_failures += 1;
                self.failures += 1;
                warning!("invoices worker: task {name} failed ({}): {e}", e.kind());
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
            self.flush(name);
        }
    }

    fn flush(&mut self, name: &str) {
        let (runs, failures, consecutive) = (self.runs as i64, self.failures as i64, self.consecutive_failures as i32);
        let error = self.last_error.take();
        let (kind, error) = (error.as_ref().map(|e| e.kind()), error.map(|e| e.to_string()));
        let result = pgrx::JsonB(self.last_result.clone());
        let success = self.last_success.take().map(unix_ms);
        let next_in = self.next_run.saturating_duration_since(Instant::now()).as_millis() as i64;
        let task = name.to_string();
        let recorded = in_transaction(move || {
            Spi::run_with_args(
                "select invoices_internal.worker_task_report($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    task.into(),
                    runs.into(),
                    failures.into(),
                    consecutive.into(),
                    success.into(),
                    error.into(),
                    kind.into(),
                    result.into(),
                    next_in.into(),
                ],
            )?;
            Ok(())
        });
        if let Err(e) = recorded {
            warning!("invoices worker: could not record task {name}: {e}");
        }
        self.runs = 0;
        self.failures = 0;
        self.dirty = false;
        self.last_flush = Instant::now();
    }
}

/// What one tick of the list found.
pub(crate) struct Tick {
    /// A task has more work waiting.
    pub busy: bool,
    /// A task found the extension's objects gone.
    pub missing_object: bool,
}

/// The scheduled tasks.
pub(crate) struct Tasks {
    list: Vec<(Box<dyn Task>, Schedule)>,
}

impl Tasks {
    pub(crate) fn new(tasks: Vec<Box<dyn Task>>) -> Self {
        Tasks { list: tasks.into_iter().map(|t| (t, Schedule::new())).collect() }
    }

    /// Runs every task that is due (or waiting for its threads), then takes in the tasks they
    /// started and lets go of those retired.
    pub(crate) fn tick(&mut self) -> Tick {
        let mut tick = Tick { busy: false, missing_object: false };
        let mut spawned = Vec::new();
        for (task, schedule) in &mut self.list {
            if schedule.waiting || Instant::now() >= schedule.next_run {
                match task.run() {
                    Ok(Step::Waiting) => schedule.waiting = true,
                    Ok(Step::Done(result)) => {
                        schedule.waiting = false;
                        schedule.finished(task.name(), task.every(), Ok(result));
                    }
                    Err(e) => {
                        schedule.waiting = false;
                        tick.missing_object |= e.missing_object();
                        schedule.finished(task.name(), task.every(), Err(e));
                    }
                }
            }
            tick.busy |= schedule.waiting || task.busy();
            spawned.extend(task.spawned());
        }
        self.list.retain(|(task, _)| !task.retired());
        self.list.extend(spawned.into_iter().map(|t| (t, Schedule::new())));
        tick
    }
}
