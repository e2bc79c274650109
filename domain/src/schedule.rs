//! Recurring invoices: when each run of a schedule falls. A schedule repeats every N days,
//! every N weeks, or every N months on a day of the month; a day past the month's end (31 in
//! April, 29–31 in February) falls on the month's last day, and the next month is back on the
//! asked day (the runs are counted from the start, never from the clamped date before).
//! Dates are civil dates in the merchant's time zone: the database turns a run's date into
//! its instant (the date's midnight in that zone).
//!
//! ```text
//! monthly on day 31 from 2027-01-15:  2027-01-31, 2027-02-28, 2027-03-31, 2027-04-30, …
//! every 2 weeks from 2027-01-04:      2027-01-04, 2027-01-18, 2027-02-01, …
//! ```

use crate::error::{DomainError, FieldErrors};

/// A civil date (year, month 1–12, day 1–31).
pub type Date = (i32, u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Days(u32),
    Weeks(u32),
    /// Every `every` months on `day` (1–31; clamped to the month's last day).
    Months { every: u32, day: u32 },
}

/// The longest step a schedule may take (in its unit): 366 days, 52 weeks, 12 months.
pub fn max_every(frequency: &str) -> u32 {
    match frequency {
        "daily" => 366,
        "weekly" => 52,
        _ => 12,
    }
}

/// The rule from create_schedule's arguments: frequency `daily` (every N days), `weekly` (every
/// N weeks) or `monthly` (every N months, on day_of_month, default the start date's day).
/// Every bad argument is named at once.
pub fn parse_rule(frequency: &str, every: Option<i64>, day_of_month: Option<i64>, start: Date) -> Result<Rule, DomainError> {
    let mut errors = FieldErrors::new();
    let kind = frequency.trim();
    if !matches!(kind, "daily" | "weekly" | "monthly") {
        errors.add("frequency", "must be daily, weekly or monthly");
    }
    let every = every.unwrap_or(1);
    let max = max_every(kind);
    if every < 1 || every > max as i64 {
        errors.add("every", format!("must be a whole number from 1 to {max}"));
    }
    match day_of_month {
        Some(_) if kind != "monthly" => errors.add("day_of_month", "applies to a monthly schedule only"),
        Some(d) if !(1..=31).contains(&d) => errors.add("day_of_month", "must be from 1 to 31 (31: the month's last day)"),
        _ => {}
    }
    errors.finish("schedule")?;
    let every = every as u32;
    Ok(match kind {
        "daily" => Rule::Days(every),
        "weekly" => Rule::Weeks(every),
        _ => Rule::Months { every, day: day_of_month.map(|d| d as u32).unwrap_or(start.2) },
    })
}

/// The date of run `n` (0 = the first) of a schedule starting on `start`: the first run is on
/// or after the start. None past year 9999.
pub fn run_date(rule: Rule, start: Date, n: u32) -> Option<Date> {
    let date = match rule {
        Rule::Days(k) => from_days(to_days(start) + k as i64 * n as i64),
        Rule::Weeks(k) => from_days(to_days(start) + 7 * k as i64 * n as i64),
        Rule::Months { every, day } => {
            // the first run's month: the start's, unless the day (clamped) is before the start
            let (y, m, d) = start;
            let first = if day.min(days_in_month(y, m)) >= d { 0 } else { 1 };
            let months = (y as i64) * 12 + (m as i64 - 1) + first + every as i64 * n as i64;
            let (yy, mm) = ((months.div_euclid(12)) as i32, (months.rem_euclid(12) + 1) as u32);
            (yy, mm, day.min(days_in_month(yy, mm)))
        }
    };
    (date.0 <= 9999).then_some(date)
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian; H. Hinnant's civil-days algorithm).
pub fn to_days((y, m, d): Date) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn from_days(z: i64) -> Date {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runs(rule: Rule, start: Date, n: u32) -> Vec<String> {
        (0..n).map(|i| run_date(rule, start, i).map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")).unwrap()).collect()
    }

    #[test]
    fn day_31_falls_on_the_last_day_of_short_months_and_comes_back() {
        let r = Rule::Months { every: 1, day: 31 };
        assert_eq!(
            runs(r, (2027, 1, 15), 5),
            ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]
        );
        // a leap year's February
        assert_eq!(runs(r, (2028, 2, 1), 2), ["2028-02-29", "2028-03-31"]);
        // day 30 from the 31st: the first run is next month's 30th
        assert_eq!(runs(Rule::Months { every: 1, day: 30 }, (2027, 1, 31), 3), ["2027-02-28", "2027-03-30", "2027-04-30"]);
    }

    #[test]
    fn the_first_run_is_on_or_after_the_start() {
        assert_eq!(runs(Rule::Months { every: 1, day: 15 }, (2027, 3, 15), 2), ["2027-03-15", "2027-04-15"]);
        assert_eq!(runs(Rule::Months { every: 1, day: 14 }, (2027, 3, 15), 2), ["2027-04-14", "2027-05-14"]);
        assert_eq!(runs(Rule::Months { every: 3, day: 1 }, (2027, 11, 2), 3), ["2027-12-01", "2028-03-01", "2028-06-01"]);
        assert_eq!(runs(Rule::Weeks(2), (2027, 1, 4), 3), ["2027-01-04", "2027-01-18", "2027-02-01"]);
        assert_eq!(runs(Rule::Days(10), (2027, 12, 25), 2), ["2027-12-25", "2028-01-04"]);
    }

    #[test]
    fn arguments_are_checked_and_named() {
        let e = parse_rule("yearly", Some(0), Some(40), (2027, 1, 1)).unwrap_err();
        let fields: Vec<_> = e.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["frequency", "every", "day_of_month"]);
        let e = parse_rule("weekly", None, Some(3), (2027, 1, 1)).unwrap_err();
        assert_eq!(e.fields[0].field, "day_of_month");
        assert_eq!(parse_rule("monthly", None, None, (2027, 1, 31)).unwrap(), Rule::Months { every: 1, day: 31 });
        assert_eq!(parse_rule("daily", Some(366), None, (2027, 1, 31)).unwrap(), Rule::Days(366));
        assert!(parse_rule("daily", Some(367), None, (2027, 1, 31)).is_err());
    }

    proptest! {
        #[test]
        fn civil_days_round_trip(z in -719_468i64..2_932_896) {
            prop_assert_eq!(to_days(from_days(z)), z);
        }

        #[test]
        fn monthly_runs_are_one_per_period_on_the_asked_day_or_the_last(
            y in 1970i32..2200, m in 1u32..=12, d in 1u32..=28, day in 1u32..=31, every in 1u32..=12, n in 0u32..200
        ) {
            let rule = Rule::Months { every, day };
            let a = run_date(rule, (y, m, d), n).unwrap();
            let b = run_date(rule, (y, m, d), n + 1).unwrap();
            prop_assert!(to_days(a) >= to_days((y, m, d)));
            prop_assert_eq!(a.2, day.min(days_in_month(a.0, a.1)));
            let months = |t: Date| t.0 as i64 * 12 + t.1 as i64;
            prop_assert_eq!(months(b) - months(a), every as i64);
        }

        #[test]
        fn day_and_week_runs_are_evenly_spaced(y in 1970i32..2200, m in 1u32..=12, d in 1u32..=28, k in 1u32..=52, n in 0u32..500) {
            for rule in [Rule::Days(k), Rule::Weeks(k)] {
                let step = if let Rule::Weeks(_) = rule { 7 * k as i64 } else { k as i64 };
                let a = run_date(rule, (y, m, d), n).unwrap();
                let b = run_date(rule, (y, m, d), n + 1).unwrap();
                prop_assert_eq!(to_days(b) - to_days(a), step);
                prop_assert_eq!(to_days(a) - to_days((y, m, d)), step * n as i64);
            }
        }
    }
}
