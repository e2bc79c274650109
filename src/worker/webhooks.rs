//! The webhooks task: claims due deliveries (with a lease), hands them to a pool of
//! `invoices.webhook_concurrency` sender threads that keep their connections alive, and records
//! the finished attempts in batches. Network I/O never runs inside a transaction; only the main
//! thread talks to PostgreSQL.

use super::error::Result;
use super::task::{Step, Task};
use super::threads::Pool;
use super::{in_transaction, unix_ms};
use crate::domain::seeds::webhooks;
use crate::domain::signing;
use crate::settings;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The endpoint's format: which headers carry the event and the signature.
    format: String,
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

/// The sender threads (each with its own job queue, filled round-robin) share one keep-alive
/// connection pool: the agent, and the timeout it was made with.
type Senders = Pool<Delivery, Outcome>;

fn senders(threads: i32, timeout_ms: i32, allow_private: Arc<AtomicBool>) -> Senders {
    let timeout = Duration::from_millis(timeout_ms as u64);
    let agent = super::net::merchant_agent("invoices-webhooks", timeout, threads as usize, allow_private);
    Pool::new(threads as usize, (agent, timeout), |(agent, timeout), d| send(agent, *timeout, d))
}

fn send(agent: &ureq::Agent, timeout: Duration, d: Delivery) -> Outcome {
    let started = SystemTime::now();
    let clock = Instant::now();
    let unix = started.duration_since(UNIX_EPOCH).map(|t| t.as_secs() as i64).unwrap_or(0);
    let build = || {
        let (signature_header, event_header) = webhooks::signature_header(&d.format);
        let mut request = agent
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("X-Webhook-Id", &d.event_id)
            .header(event_header, &d.event)
            .header("X-Webhook-Timestamp", unix.to_string())
            .header("X-Webhook-Attempt", d.attempt.to_string());
        if let Some(secret) = &d.secret {
            request = request
                .header(signature_header, signing::body_signature(secret, d.body.as_bytes()))
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
    pool: Option<Senders>,
    /// The concurrency and timeout the pool was made with (a change makes a new one).
    pool_made_with: (i32, i32),
    in_flight: usize,
    /// `invoices.allow_private_destinations` of the database, read with every claim (the
    /// worker's session predates a later ALTER DATABASE SET).
    allow_private: Arc<AtomicBool>,
    delivered: u64,
    failed: u64,
    /// More work is waiting (or in flight): the worker ticks again at once.
    pub busy: bool,
}

impl Task for Deliveries {
    fn name(&self) -> &str {
        "webhooks"
    }

    fn every(&self) -> Duration {
        Duration::ZERO
    }

    fn run(&mut self) -> Result<Step> {
        self.step().map(Step::Done)
    }

    fn busy(&self) -> bool {
        self.busy
    }
}

impl Deliveries {
    /// One step: record the attempts that finished, then claim more while the pool has room.
    /// (Leases of a previous incarnation were released by the worker's recovery phase.)
    fn step(&mut self) -> Result<serde_json::Value> {
        self.busy = false;
        let threads = settings::WEBHOOK_CONCURRENCY.get().max(1);
        let timeout_ms = settings::WEBHOOK_TIMEOUT_MS.get().max(100);
        let stale = self.pool.is_some() && self.pool_made_with != (threads, timeout_ms);
        if self.pool.is_none() || (stale && self.in_flight == 0) {
            self.pool = Some(senders(threads, timeout_ms, self.allow_private.clone()));
            self.pool_made_with = (threads, timeout_ms);
        }
        let Some(pool) = self.pool.as_mut() else { unreachable!("the pool was just made") };

        let done = pool.collect();
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
            Spi::run("set local synchronous_commit = off")?;
            if claim_now {
                let allowed = Spi::get_one::<bool>(
                    "select coalesce(invoices_internal.database_setting('invoices.allow_private_destinations')::boolean, false)",
                )?;
                allow_private.store(allowed.unwrap_or(false), Ordering::Relaxed);
            }
            if let Some(outcomes) = outcomes {
                Spi::run_with_args("select invoices_internal.record_deliveries($1)", &[outcomes.into()])?;
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

fn claim(n: i32, lease: i32) -> Result<Vec<Delivery>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "select merchant_id::text, id, url, secret, event, event_id::text, body, attempt, format \
               from invoices_internal.claim_deliveries($1, $2)",
            None,
            &[n.into(), lease.into()],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let text = |i: usize| -> Result<String> { Ok(row.get::<String>(i)?.unwrap_or_default()) };
            out.push(Delivery {
                merchant_id: text(1)?,
                id: row.get::<i64>(2)?.unwrap_or_default(),
                url: text(3)?,
                secret: row.get::<String>(4)?,
                event: text(5)?,
                event_id: text(6)?,
                body: text(7)?,
                attempt: row.get::<i32>(8)?.unwrap_or(1),
                format: text(9)?,
            });
        }
        Ok(out)
    })
}
