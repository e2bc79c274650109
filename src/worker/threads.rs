//! Work done on threads. Network I/O never runs inside a transaction, and only the main thread
//! talks to PostgreSQL, so a task hands its I/O to threads and collects the results on later
//! ticks. Two shapes:
//! - a [`Batch`]: one thread per item, the next batch once every thread of the last is done
//!   (rate fetches, e-mails, a chain's poll);
//! - a [`Pool`]: long-lived threads, each with its own queue filled round-robin, sharing one
//!   state (the webhook senders and their keep-alive connections).

use super::error::{Result, WorkerError};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};

/// Drains what arrived on `rx`; false once every sender is gone.
fn drain<T>(rx: &Receiver<T>, out: &mut Vec<T>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(v) => out.push(v),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

/// A batch of items, one thread each.
pub(crate) struct Batch<T> {
    rx: Option<Receiver<T>>,
}

impl<T: Send + 'static> Batch<T> {
    pub(crate) fn new() -> Self {
        Batch { rx: None }
    }

    /// No thread of the last batch is still running.
    pub(crate) fn idle(&self) -> bool {
        self.rx.is_none()
    }

    /// The results that arrived since the last call.
    pub(crate) fn collect(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        if let Some(rx) = &self.rx {
            if !drain(rx, &mut out) {
                self.rx = None;
            }
        }
        out
    }

    /// Runs `work` on one thread per item (no PostgreSQL calls there).
    pub(crate) fn start<I: Send + 'static>(&mut self, items: Vec<I>, work: fn(I) -> T) {
        if items.is_empty() {
            return;
        }
        let (tx, rx) = channel();
        for item in items {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(work(item));
            });
        }
        self.rx = Some(rx);
    }
}

/// Long-lived threads with a queue each, running `work(&state, job)` for every job.
pub(crate) struct Pool<J, R> {
    jobs: Vec<Sender<J>>,
    next: usize,
    results: Receiver<R>,
}

impl<J: Send + 'static, R: Send + 'static> Pool<J, R> {
    pub(crate) fn new<S: Clone + Send + 'static>(threads: usize, state: S, work: fn(&S, J) -> R) -> Self {
        let (done, results) = channel::<R>();
        let mut jobs = Vec::new();
        for _ in 0..threads.max(1) {
            let (tx, queue) = channel::<J>();
            let (done, state) = (done.clone(), state.clone());
            std::thread::spawn(move || {
                while let Ok(job) = queue.recv() {
                    if done.send(work(&state, job)).is_err() {
                        return;
                    }
                }
            });
            jobs.push(tx);
        }
        Pool { jobs, next: 0, results }
    }

    /// Queues a job on the next thread.
    pub(crate) fn dispatch(&mut self, job: J) -> Result<()> {
        self.next = (self.next + 1) % self.jobs.len();
        self.jobs[self.next].send(job).map_err(|_| WorkerError::Thread("a pool thread is gone".into()))
    }

    /// The results that arrived since the last call.
    pub(crate) fn collect(&mut self) -> Vec<R> {
        let mut out = Vec::new();
        drain(&self.results, &mut out);
        out
    }
}
