//! How payments settle an invoice (`domain::settlement`), for `sql/72_payments.sql` and `sql/74_polls.sql`: the SQL
//! locks and reads the rows, these functions decide, the SQL writes the decision.

use crate::domain::settlement::{self, Invoice, Payment};
use crate::domain::status::Status;
use crate::error::OrRaise;
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB, Uuid};
use rust_decimal::Decimal;
use std::str::FromStr;

fn to_decimal(n: &AnyNumeric) -> Decimal {
    let s = n.to_string();
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .unwrap_or_else(|_| error!("numeric {s} is out of range for an amount"))
}

/// PostgreSQL's timestamps count microseconds from 2000-01-01; the domain's, from 1970-01-01.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn unix_micros(t: TimestampWithTimeZone) -> i64 {
    t.into_inner() + PG_EPOCH_UNIX_MICROS
}

/// `now()`: the transaction's start, in the domain's microseconds.
fn now_micros() -> i64 {
    // SAFETY: reads the current transaction's start time; a backend always has one.
    let start = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    start + PG_EPOCH_UNIX_MICROS
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// The invoice's amounts paid and its status steps from its payments
    /// (`[{asset, amount, status, late}]`), its latest quote's asset amount (`due`) and the
    /// merchant's tolerance: `{asset_paid, amount_paid, overpaid, paid_late, steps}`, or null
    /// when there is nothing to do (a draft or cancelled invoice, no amount due).
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(immutable, parallel_safe)]
    pub fn settlement(
        status: &str,
        asset: Option<&str>,
        currency: &str,
        total: AnyNumeric,
        exponent: i32,
        due: Option<AnyNumeric>,
        tolerance_percent: Option<AnyNumeric>,
        payments: Option<JsonB>,
    ) -> Option<JsonB> {
        let invoice = Invoice {
            status: Status::from_str(status).or_raise(),
            asset: asset.unwrap_or_default().to_string(),
            currency: currency.to_string(),
            total: to_decimal(&total),
            exponent: exponent.clamp(0, 18) as u32,
            due: due.as_ref().map(to_decimal),
            tolerance_percent: tolerance_percent.as_ref().map(to_decimal).unwrap_or_default(),
        };
        let payments: Vec<Payment> = match payments {
            Some(JsonB(v)) if !v.is_null() => serde_json::from_value(v)
                .unwrap_or_else(|e| error!("settlement: payments: {e}")),
            _ => Vec::new(),
        };
        settlement::settle(&invoice, &payments)
            .map(|s| JsonB(serde_json::to_value(s).unwrap_or_else(|e| error!("settlement: {e}"))))
    }

    /// The invoice a new payment to an address pays: the one that held the address when the
    /// payment was first seen (its block's time, else now), failing that the address's live
    /// invoice, else its last one. `held_by` and `held_from` are the address's assignments.
    #[pg_extern(stable, parallel_safe)]
    pub fn payment_holder(
        held_by: Option<Vec<Option<Uuid>>>,
        held_from: Option<Vec<Option<TimestampWithTimeZone>>>,
        block_time: Option<i64>,
        in_block: bool,
        live: Option<Uuid>,
        last: Option<Uuid>,
    ) -> Option<Uuid> {
        let now = now_micros();
        let seen = settlement::seen_at(block_time, in_block, now);
        let assignments: Vec<(Uuid, i64)> = held_by
            .unwrap_or_default()
            .into_iter()
            .zip(held_from.unwrap_or_default())
            .filter_map(|(i, t)| Some((i?, unix_micros(t?))))
            .collect();
        settlement::holder_when_seen(&assignments, seen, live, last)
    }

    /// Whether a new payment to an invoice in `status`, whose window ends at `expires_at`, is
    /// late (after its expiry or cancellation).
    #[pg_extern(stable, parallel_safe)]
    pub fn payment_is_late(status: &str, expires_at: Option<TimestampWithTimeZone>) -> bool {
        settlement::is_late(Status::from_str(status).or_raise(), expires_at.map(unix_micros), now_micros())
    }
}
