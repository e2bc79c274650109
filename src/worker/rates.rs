//! The rates task: claims the rate sources that are due, fetches them on threads (HTTP with a
//! timeout, outside any transaction), parses each body with `domain::rates` and records every
//! outcome (a rate or an error) in `rate_sources` / `rate_observations`.

use super::error::Result;
use super::in_transaction;
use super::task::{Step, Task};
use super::threads::Batch;
use crate::domain::rates;
use pgrx::prelude::*;
use std::time::Duration;

struct Source {
    id: i64,
    format: String,
    url: String,
    asset: String,
    currency: String,
    timeout_ms: u64,
}

struct Outcome {
    id: i64,
    result: std::result::Result<String, String>,
}

pub struct Fetches {
    inflight: Batch<Outcome>,
}

impl Default for Fetches {
    fn default() -> Self {
        Fetches { inflight: Batch::new() }
    }
}

/// Bodies larger than this are not a price.
const MAX_BODY: u64 = 1 << 20;

fn fetch_one(source: Source) -> Outcome {
    Outcome { id: source.id, result: fetch(&source) }
}

fn fetch(source: &Source) -> std::result::Result<String, String> {
    let agent = super::net::agent("invoices-worker", Duration::from_millis(source.timeout_ms), 1);
    let mut response = agent.get(&source.url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("timed out after {} ms", source.timeout_ms),
        other => other.to_string(),
    })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| format!("reading the body: {e}"))?;
    rates::parse(&source.format, &body, &source.asset, &source.currency).map(|r| r.to_string())
}

impl Task for Fetches {
    fn name(&self) -> &str {
        "rates"
    }

    fn every(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn run(&mut self) -> Result<Step> {
        self.step().map(Step::Done)
    }
}

impl Fetches {
    /// One step: record what finished, start fetching what is due. Returns a summary.
    fn step(&mut self) -> Result<serde_json::Value> {
        let done = self.inflight.collect();
        let recorded = done.len();
        if !done.is_empty() {
            let done: Vec<(i64, Option<String>, Option<String>)> = done
                .into_iter()
                .map(|o| match o.result {
                    Ok(rate) => (o.id, Some(rate), None),
                    Err(e) => (o.id, None, Some(e)),
                })
                .collect();
            in_transaction(move || {
                for (id, rate, error) in &done {
                    Spi::run_with_args(
                        "select invoices_internal.record_rate_fetch($1, $2::numeric, $3)",
                        &[(*id).into(), rate.clone().into(), error.clone().into()],
                    )?;
                }
                Ok(())
            })?;
        }
        let mut started = 0;
        if self.inflight.idle() {
            let due = in_transaction(|| {
                Spi::connect_mut(|client| {
                    let rows = client.update(
                        "select id, format, url, asset, currency, timeout_ms \
                           from invoices_internal.claim_due_rate_sources()",
                        None,
                        &[],
                    )?;
                    let mut out = Vec::new();
                    for row in rows {
                        let get = |i: usize| -> Result<String> { Ok(row.get::<String>(i)?.unwrap_or_default()) };
                        out.push(Source {
                            id: row.get::<i64>(1)?.unwrap_or_default(),
                            format: get(2)?,
                            url: get(3)?,
                            asset: get(4)?,
                            currency: get(5)?,
                            timeout_ms: row.get::<i32>(6)?.unwrap_or(5000) as u64,
                        });
                    }
                    Ok(out)
                })
            })?;
            started = due.len();
            self.inflight.start(due, fetch_one);
        }
        Ok(serde_json::json!({ "recorded": recorded, "started": started }))
    }
}
