//! Recurring invoices: the run dates of a schedule (domain::schedule), for the SQL side.

use crate::domain::schedule::{self, Rule};
use crate::error;
use pgrx::prelude::*;
use pgrx::JsonB;

fn civil(d: Date) -> schedule::Date {
    (d.year(), d.month() as u32, d.day() as u32)
}

fn rule(frequency: &str, every: Option<i32>, day_of_month: Option<i32>, start: Date) -> Result<Rule, crate::domain::DomainError> {
    schedule::parse_rule(frequency, every.map(i64::from), day_of_month.map(i64::from), civil(start))
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// create_schedule's check of its repetition: null when good, else the `{"error": …}`
    /// object naming every bad field (frequency, every, day_of_month).
    #[pg_extern(immutable, parallel_safe)]
    pub fn check_schedule_rule(frequency: &str, every: Option<i32>, day_of_month: Option<i32>, start_date: Date) -> Option<JsonB> {
        rule(frequency, every, day_of_month, start_date).err().map(|e| JsonB(error::as_json(&e)))
    }

    /// The date of run `n` (0 = the first) of a schedule; null past year 9999.
    #[pg_extern(immutable, parallel_safe)]
    pub fn schedule_run_date(frequency: &str, every: i32, day_of_month: Option<i32>, start_date: Date, n: i32) -> Option<Date> {
        let r = rule(frequency, Some(every), day_of_month, start_date).unwrap_or_else(|e| error::raise(e));
        let (y, m, d) = schedule::run_date(r, civil(start_date), n.max(0) as u32)?;
        Date::new(y, m as u8, d as u8).ok()
    }
}
