//! The webhooks task: claims due deliveries (with a lease), hands them to a pool of
//! `invoices.webhook_concurrency` sender threads that keep their connections alive, and records
//! the finished attempts in batches. Network I/O never runs inside a transaction; only the main
//! thread talks to PostgreSQL.

use super::{in_transaction, unix_ms};
use crate::domain::signing;
use crate::settings;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Delivery {
    merchant_id: String,
    id: i64,
    url: String,
    secret: Option<String>,
    event: String,
    event_id: String,
    body: String,
    attempt: i32,
}

struct Outcome {
    merchant_id: String,
    id: i64,
    attempt: i32,
    started_unix_ms: i64,
    latency_ms: i32,
    status: Option<i32>,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "merchant_id": self.merchant_id,
            "id": self.id,
            "attempt": self.attempt,
            "started_unix_ms": self.started_unix_ms,
            "latency_ms": self.latency_ms,
            "status_code": self.status,
            "excerpt": self.excerpt,
            "error": self.error,
        })
    }
}

/// Responses are kept up to this many bytes in the attempt log.
const EXCERPT: usize = 1024;
/// At most this many deliveries are claimed by one statement.
const MAX_CLAIM: i32 = 1000;

/// Sender threads, each with its own job queue (filled round-robin), sharing one keep-alive
/// connection pool.
struct Pool {
    jobs: Vec<Sender<Delivery>>,
    next: usize,
    results: Receiver<Outcome>,
    threads: i32,
    timeout_ms: i32,
}

impl Pool {
    fn new(threads: i32, timeout_ms: i32, allow_private: Arc<AtomicBool>) -> Pool {
        let timeout = Duration::from_millis(timeout_ms as u64);
        let agent = super::http::merchant_agent("invoices-webhooks", timeout, threads as usize, allow_private);
        let (done, results) = channel::<Outcome>();
        let mut jobs = Vec::new();
        for _ in 0..threads {
            let (tx, queue) = channel::<Delivery>();
            let (done, agent) = (done.clone(), agent.clone());
            std::thread::spawn(move || {
                while let Ok(d) = queue.recv() {
                    if done.send(send(&agent, timeout, d)).is_err() {
                        return;
                    }
                }
            });
            jobs.push(tx);
        }
        Pool { jobs, next: 0, results, threads, timeout_ms }
    }

    fn dispatch(&mut self, d: Delivery) -> Result<(), String> {
        self.next = (self.next + 1) % self.jobs.len();
        self.jobs[self.next].send(d).map_err(|_| "a sender thread is gone".to_string())
    }
}

fn send(agent: &ureq::Agent, timeout: Duration, d: Delivery) -> Outcome {
    let started = SystemTime::now();
    let clock = Instant::now();
    let unix = started.duration_since(UNIX_EPOCH).map(|t| t.as_secs() as i64).unwrap_or(0);
    let build = || {
        let mut request = agent
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("X-Webhook-Id", &d.event_id)
            .header("X-Webhook-Event", &d.event)
            .header("X-Webhook-Timestamp", unix.to_string())
            .header("X-Webhook-Attempt", d.attempt.to_string());
        if let Some(secret) = &d.secret {
            request = request
                .header("X-Webhook-Signature", signing::body_signature(secret, d.body.as_bytes()))
                .header("Webhook-Signature", signing::timestamped_signature(secret, d.body.as_bytes(), unix));
        }
        request
    };
    let mut sent = build().send(d.body.as_bytes());
    // A kept-alive connection the receiver closed meanwhile fails at once with a reset: that
    // is no answer from the receiver, so send again on a fresh connection (once).
    if let Err(ureq::Error::Io(e)) = &sent {
        use std::io::ErrorKind::*;
        if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
            sent = build().send(d.body.as_bytes());
        }
    }
    let (status, excerpt, error) = match sent {
        // redirects are not followed: the receiver's answer is the 3xx, a failed attempt
        Ok(response) if response.status().is_redirection() => {
            let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("");
            let location: String = location.chars().take(200).collect();
            let status = response.status().as_u16();
            (Some(status as i32), None, Some(format!("redirect ({status}) to {location:?} not followed")))
        }
        Ok(mut response) => {
            let status = response.status().as_u16() as i32;
            let text = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let mut end = text.len().min(EXCERPT);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (Some(status), Some(text[..end].to_string()), None)
        }
        Err(ureq::Error::Timeout(_)) => (None, None, Some(format!("timed out after {} ms", timeout.as_millis()))),
        Err(e) => (None, None, Some(e.to_string())),
    };
    Outcome {
        merchant_id: d.merchant_id,
        id: d.id,
        attempt: d.attempt,
        started_unix_ms: unix_ms(started),
        latency_ms: clock.elapsed().as_millis().min(i32::MAX as u128) as i32,
        status,
        excerpt,
        error,
    }
}

#[derive(Default)]
pub struct Deliveries {
    pool: Option<Pool>,
    in_flight: usize,
    leases_released: bool,
    /// `invoices.allow_private_destinations` of the database, read with every claim (the
    /// worker's session predates a later ALTER DATABASE SET).
    allow_private: Arc<AtomicBool>,
    delivered: u64,
    failed: u64,
    /// More work is waiting (or in flight): the worker ticks again at once.
    pub busy: bool,
}

impl Deliveries {
    /// One step: record the attempts that finished, then claim more while the pool has room.
    pub fn step(&mut self) -> Result<serde_json::Value, String> {
        self.busy = false;
        if !self.leases_released {
            // Leases held by a previous incarnation of the worker (killed mid-delivery) are
            // void: its threads died with it. Queue those deliveries again now.
            in_transaction(|| {
                Spi::run("select invoices_internal.release_delivery_leases()").map_err(|e| e.to_string())
            })?;
            self.leases_released = true;
        }
        let threads = settings::WEBHOOK_CONCURRENCY.get().max(1);
        let timeout_ms = settings::WEBHOOK_TIMEOUT_MS.get().max(100);
        let stale = self.pool.as_ref().is_some_and(|p| p.threads != threads || p.timeout_ms != timeout_ms);
        if self.pool.is_none() || (stale && self.in_flight == 0) {
            self.pool = Some(Pool::new(threads, timeout_ms, self.allow_private.clone()));
        }
        let Some(pool) = self.pool.as_mut() else { return Err("no sender pool".into()) };

        let mut done = Vec::new();
        loop {
            match pool.results.try_recv() {
                Ok(o) => done.push(o),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        self.in_flight -= done.len().min(self.in_flight);
        let ok = done.iter().filter(|o| o.delivered()).count() as u64;
        let failed = done.len() as u64 - ok;
        let outcomes = (!done.is_empty())
            .then(|| pgrx::JsonB(serde_json::Value::Array(done.iter().map(Outcome::to_json).collect())));

        // keep up to 16 deliveries per thread queued; claim again once it drains to 4 per thread
        let capacity = threads as usize * 16;
        let claim_now = !stale && self.in_flight <= threads as usize * 4;
        let n = ((capacity - self.in_flight) as i32).min(MAX_CLAIM);
        let lease = timeout_ms / 1000 * 16 + 60;
        if outcomes.is_none() && !claim_now {
            self.busy = self.in_flight > 0;
            return Ok(self.report(0));
        }
        // Both in one transaction, committed without waiting for the WAL flush: a crash can lose
        // only its last claims and records, and a lost claim or record means the delivery is
        // sent again (at least once, same X-Webhook-Id), never lost.
        let allow_private = self.allow_private.clone();
        let batch = in_transaction(move || {
            Spi::run("set local synchronous_commit = off").map_err(|e| e.to_string())?;
            if claim_now {
                let allowed = Spi::get_one::<bool>(
                    "select coalesce(invoices_internal.database_setting('invoices.allow_private_destinations')::boolean, false)",
                )
                .map_err(|e| e.to_string())?;
                allow_private.store(allowed.unwrap_or(false), Ordering::Relaxed);
            }
            if let Some(outcomes) = outcomes {
                Spi::run_with_args("select invoices_internal.record_deliveries($1)", &[outcomes.into()])
                    .map_err(|e| e.to_string())?;
            }
            if claim_now { claim(n, lease) } else { Ok(Vec::new()) }
        })?;
        self.delivered += ok;
        self.failed += failed;
        let claimed = batch.len();
        for d in batch {
            pool.dispatch(d)?;
            self.in_flight += 1;
        }
        self.busy = claim_now && claimed as i32 == n;
        self.busy |= self.in_flight > 0;
        Ok(self.report(claimed))
    }

    fn report(&self, claimed: usize) -> serde_json::Value {
        serde_json::json!({
            "in_flight": self.in_flight,
            "claimed": claimed,
            "delivered": self.delivered,
            "failed_attempts": self.failed,
        })
    }
}

fn claim(n: i32, lease: i32) -> Result<Vec<Delivery>, String> {
    Spi::connect_mut(|client| {
        let rows = client
            .update(
                "select merchant_id::text, id, url, secret, event, event_id::text, body, attempt \
                   from invoices_internal.claim_deliveries($1, $2)",
                None,
                &[n.into(), lease.into()],
            )
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let text = |i: usize| -> Result<String, String> {
                row.get::<String>(i).map_err(|e| e.to_string()).map(|v| v.unwrap_or_default())
            };
            out.push(Delivery {
                merchant_id: text(1)?,
                id: row.get::<i64>(2).map_err(|e| e.to_string())?.unwrap_or_default(),
                url: text(3)?,
                secret: row.get::<String>(4).map_err(|e| e.to_string())?,
                event: text(5)?,
                event_id: text(6)?,
                body: text(7)?,
                attempt: row.get::<i32>(8).map_err(|e| e.to_string())?.unwrap_or(1),
            });
        }
        Ok(out)
    })
}
