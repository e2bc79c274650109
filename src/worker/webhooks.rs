//! The webhooks task: claims due deliveries (with a lease), sends them concurrently on threads
//! (outside any transaction) with both signature headers, and records every attempt.

use super::{in_transaction, unix_ms, InFlight};
use crate::domain::signing;
use crate::settings;
use pgrx::prelude::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Delivery {
    merchant_id: pgrx::Uuid,
    id: i64,
    url: String,
    secret: Option<String>,
    event: String,
    event_id: String,
    body: String,
    attempt: i32,
    timeout: Duration,
}

struct Outcome {
    merchant_id: pgrx::Uuid,
    id: i64,
    attempt: i32,
    started_unix_ms: i64,
    latency_ms: i32,
    status: Option<i32>,
    excerpt: Option<String>,
    error: Option<String>,
}

pub struct Deliveries {
    inflight: InFlight<Outcome>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries { inflight: InFlight::new() }
    }
}

/// Responses are kept up to this many bytes in the attempt log.
const EXCERPT: usize = 1024;

fn send(d: Delivery) -> Outcome {
    let timeout = d.timeout;
    let started = SystemTime::now();
    let clock = Instant::now();
    let unix = started.duration_since(UNIX_EPOCH).map(|t| t.as_secs() as i64).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent("invoices-webhooks")
        .build()
        .into();
    let mut request = agent
        .post(&d.url)
        .header("Content-Type", "application/json")
        .header("X-Webhook-Id", &d.event_id)
        .header("X-Webhook-Event", &d.event)
        .header("X-Webhook-Timestamp", unix.to_string());
    if let Some(secret) = &d.secret {
        request = request
            .header("X-Webhook-Signature", signing::body_signature(secret, d.body.as_bytes()))
            .header("Webhook-Signature", signing::timestamped_signature(secret, d.body.as_bytes(), unix));
    }
    let (status, excerpt, error) = match request.send(d.body.as_bytes()) {
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

impl Deliveries {
    /// One step: record finished attempts, then claim and start the next batch.
    pub fn step(&mut self) -> Result<serde_json::Value, String> {
        let done = self.inflight.collect();
        let recorded = done.len();
        if !done.is_empty() {
            in_transaction(move || {
                for o in &done {
                    Spi::run_with_args(
                        "select invoices_internal.record_delivery($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            o.merchant_id.into(),
                            o.id.into(),
                            o.attempt.into(),
                            o.started_unix_ms.into(),
                            o.latency_ms.into(),
                            o.status.into(),
                            o.excerpt.clone().into(),
                            o.error.clone().into(),
                        ],
                    )
                    .map_err(|e| e.to_string())?;
                }
                Ok(())
            })?;
        }
        let mut started = 0;
        if self.inflight.idle() {
            let n = settings::WEBHOOK_CONCURRENCY.get().max(1);
            let timeout_ms = settings::WEBHOOK_TIMEOUT_MS.get().max(100);
            let lease = (timeout_ms / 1000 + 30).max(30);
            let batch = in_transaction(move || {
                Spi::connect_mut(|client| {
                    let rows = client
                        .update(
                            "select merchant_id, id, url, secret, event, event_id::text, body, attempt \
                               from invoices_internal.claim_deliveries($1, $2)",
                            None,
                            &[n.into(), lease.into()],
                        )
                        .map_err(|e| e.to_string())?;
                    let mut out = Vec::new();
                    for row in rows {
                        let text = |i: usize| -> Result<String, String> {
                            row.get::<String>(i).map_err(|e| e.to_string()).map(|v| v.unwrap_or_default())
                        };
                        out.push(Delivery {
                            merchant_id: row
                                .get::<pgrx::Uuid>(1)
                                .map_err(|e| e.to_string())?
                                .ok_or("no merchant")?,
                            id: row.get::<i64>(2).map_err(|e| e.to_string())?.unwrap_or_default(),
                            url: text(3)?,
                            secret: row.get::<String>(4).map_err(|e| e.to_string())?,
                            event: text(5)?,
                            event_id: text(6)?,
                            body: text(7)?,
                            attempt: row.get::<i32>(8).map_err(|e| e.to_string())?.unwrap_or(1),
                            timeout: Duration::from_millis(timeout_ms as u64),
                        });
                    }
                    Ok(out)
                })
            })?;
            started = batch.len();
            self.inflight.start(batch, send);
        }
        Ok(serde_json::json!({ "recorded": recorded, "started": started }))
    }
}
