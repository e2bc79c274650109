//! Settlement: what an invoice's payments make of it, and which invoice a new payment pays.
//!
//! [`settle`] sums the payments in the invoice's asset that are not reverted and compares them
//! with the amount due (the latest quote's asset amount), less the merchant's tolerance:
//!
//! ```text
//! threshold = due × (1 − tolerance_percent / 100)
//! nothing paid                  → pending (a reorg took the money back), else no change
//! confirmed payments ≥ threshold → confirmed
//! all payments ≥ threshold       → paid
//! otherwise                      → partial
//! ```
//!
//! The status moves there through the state machine ([`crate::status::allowed`]): confirmed is
//! reached through paid, and a move the machine forbids is simply not made. Draft and cancelled
//! invoices are never settled: money sent to a cancelled invoice stays in its payments for the
//! merchant to refund.
//!
//! [`holder_when_seen`], [`seen_at`] and [`is_late`] decide which invoice a newly detected
//! payment pays and whether it came late. Times there are microseconds since the Unix epoch
//! (PostgreSQL's `timestamptz` resolution), except a block's own time, in seconds.

use crate::error::{DomainError, ErrorKind};
use crate::money::{parse_decimal_json, round_half_away};
use crate::status::{allowed, Status};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Where a payment is on its chain. Only a reverted payment (its block left the chain, or the
/// mempool lost it) is not money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Mempool,
    InBlock,
    Confirmed,
    Reverted,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Mempool => "mempool",
            PaymentState::InBlock => "in_block",
            PaymentState::Confirmed => "confirmed",
            PaymentState::Reverted => "reverted",
        }
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentState {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            PaymentState::Mempool,
            PaymentState::InBlock,
            PaymentState::Confirmed,
            PaymentState::Reverted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| {
            DomainError::new(ErrorKind::Validation, format!("unknown payment status \"{s}\""))
                .with_hint("payment statuses are mempool, in_block, confirmed, reverted")
        })
    }
}

/// One payment credited to the invoice. From JSON: `{"asset": "BTC", "amount": "0.5",
/// "state": "confirmed", "late": false}`; the amount may be a number or a string (read
/// exactly), `status` is accepted for `state`, and `late` defaults to false.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    pub asset: String,
    /// In whole units of `asset`.
    #[serde(deserialize_with = "exact_amount")]
    pub amount: Decimal,
    #[serde(alias = "status")]
    pub state: PaymentState,
    /// It arrived after the invoice had expired (see [`is_late`]).
    #[serde(default)]
    pub late: bool,
}

/// What settlement needs to know of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub status: Status,
    /// The quoted asset: only payments in it count.
    pub asset: String,
    /// The invoice currency; equal to `asset` for a crypto-denominated invoice.
    pub currency: String,
    /// The invoice total, in `currency`.
    pub total: Decimal,
    /// Decimals of `currency`.
    pub exponent: u32,
    /// The latest quote's asset amount; None without a quote.
    pub due: Option<Decimal>,
    /// The merchant's payment tolerance, in [0, 100).
    pub tolerance_percent: Decimal,
}

/// What the payments make of the invoice. The amounts are always written, even when the
/// status does not change; `steps` are the status changes to apply in order (none, one, or
/// paid then confirmed). Serializes to JSON with amounts as exact strings and statuses by name:
/// `{"asset_paid":"0.5","amount_paid":"100.00","overpaid":false,"paid_late":false,"steps":["paid"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settlement {
    /// Σ counted payments, in the asset.
    #[serde(serialize_with = "rust_decimal::serde::str::serialize")]
    pub asset_paid: Decimal,
    /// The same in the invoice currency: `asset_paid` itself when currency = asset, else the
    /// total's share `total × asset_paid ÷ due`, rounded half away from zero to the currency.
    #[serde(serialize_with = "rust_decimal::serde::str::serialize")]
    pub amount_paid: Decimal,
    /// More than due was paid (tolerance aside).
    pub overpaid: bool,
    /// A counted payment came after the invoice had expired.
    pub paid_late: bool,
    #[serde(serialize_with = "status_names")]
    pub steps: Vec<Status>,
}

impl Settlement {
    /// The status after the steps, starting from `from` (the invoice's status when settled).
    pub fn status(&self, from: Status) -> Status {
        self.steps.last().copied().unwrap_or(from)
    }
}

/// Settles `invoice` against its `payments` (those of other assets and reverted ones are
/// ignored). None when there is nothing to do: a draft or cancelled invoice, or no amount due.
///
/// Amounts are bounded ([`crate::money::max_amount`]); the arithmetic panics only beyond
/// `Decimal`'s range (about 7.9 × 10^28), which such amounts never reach.
pub fn settle(invoice: &Invoice, payments: &[Payment]) -> Option<Settlement> {
    if matches!(invoice.status, Status::Draft | Status::Cancelled | Status::Void) {
        return None;
    }
    let due = invoice.due.filter(|d| !d.is_zero())?;

    let mut paid = Decimal::ZERO;
    let mut confirmed_sum = Decimal::ZERO;
    let mut any_late = false;
    for p in payments
        .iter()
        .filter(|p| p.asset == invoice.asset && p.state != PaymentState::Reverted)
    {
        paid += p.amount;
        if p.state == PaymentState::Confirmed {
            confirmed_sum += p.amount;
        }
        any_late |= p.late;
    }

    let threshold = due * (Decimal::ONE - invoice.tolerance_percent / Decimal::ONE_HUNDRED);
    let target = if paid.is_zero() {
        match invoice.status {
            Status::Partial | Status::Paid | Status::Confirmed => Status::Pending,
            unchanged => unchanged,
        }
    } else if confirmed_sum >= threshold {
        Status::Confirmed
    } else if paid >= threshold {
        Status::Paid
    } else {
        Status::Partial
    };
    // a written-off invoice stays written off until it is paid in full
    let target = if invoice.status == Status::Uncollectible && !matches!(target, Status::Paid | Status::Confirmed) {
        Status::Uncollectible
    } else {
        target
    };

    let amount_paid = if invoice.currency == invoice.asset {
        paid
    } else {
        round_half_away(invoice.total * paid / due, invoice.exponent)
    };

    Some(Settlement {
        asset_paid: paid,
        amount_paid,
        overpaid: paid > due,
        paid_late: any_late,
        steps: steps(invoice.status, target),
    })
}

/// The status changes from `from` to `target`: confirmed only through paid; a change the state
/// machine forbids is not made (and, for confirmed, neither is the paid before it).
fn steps(from: Status, target: Status) -> Vec<Status> {
    let mut steps = Vec::new();
    if target == from {
        return steps;
    }
    let mut current = from;
    if target == Status::Confirmed && from != Status::Paid {
        if !allowed(from, Status::Paid) {
            return steps;
        }
        steps.push(Status::Paid);
        current = Status::Paid;
    }
    if allowed(current, target) {
        steps.push(target);
    }
    steps
}

/// When a new payment happened: its block's own time (`block_time_secs`, Unix seconds) when it
/// is in a block whose time is known, else `now_micros`. In microseconds.
pub fn seen_at(block_time_secs: Option<i64>, in_block: bool, now_micros: i64) -> i64 {
    match block_time_secs {
        Some(t) if in_block => t.saturating_mul(1_000_000),
        _ => now_micros,
    }
}

/// Which invoice a new payment to an address pays: the one the address was assigned to last at
/// or before `seen` (so a late payment for an earlier holder never pays the next one); failing
/// that the address's live invoice; failing that its last one. `assignments` are the address's
/// `(invoice, assigned_at)`, in any order (of two at the same instant, the later in the slice
/// wins); times in microseconds.
pub fn holder_when_seen<T: Clone>(
    assignments: &[(T, i64)],
    seen: i64,
    live: Option<T>,
    last: Option<T>,
) -> Option<T> {
    let mut holder: Option<&(T, i64)> = None;
    for a in assignments.iter().filter(|a| a.1 <= seen) {
        if holder.map_or(true, |h| a.1 >= h.1) {
            holder = Some(a);
        }
    }
    holder.map(|(invoice, _)| invoice.clone()).or(live).or(last)
}

/// A payment is late when its invoice had expired or been cancelled, or its payment window
/// (`expires_at`) had passed while it was still pending or overdue (before the sweep marked it
/// expired). A payment that pays no invoice is not late. Times in microseconds.
pub fn is_late(status: Status, expires_at: Option<i64>, now: i64) -> bool {
    match status {
        Status::Expired | Status::Cancelled | Status::Void => true,
        Status::Pending | Status::Overdue => expires_at.is_some_and(|e| e < now),
        _ => false,
    }
}

fn exact_amount<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    parse_decimal_json(&value)
        .map_err(|e| serde::de::Error::custom(format!("payment amount {}", e.message())))
}

fn status_names<S: Serializer>(steps: &[Status], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(steps.iter().map(|s| s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::decimal as d;
    use proptest::prelude::*;
    use Status::*;

    fn pay(amount: &str, state: PaymentState) -> Payment {
        Payment {
            asset: "BTC".into(),
            amount: d(amount),
            state,
            late: false,
        }
    }

    /// 100.00 USD quoted at 100 BTC (easy shares), no tolerance.
    fn usd_invoice(status: Status) -> Invoice {
        Invoice {
            status,
            asset: "BTC".into(),
            currency: "USD".into(),
            total: d("100.00"),
            exponent: 2,
            due: Some(d("100")),
            tolerance_percent: Decimal::ZERO,
        }
    }

    #[test]
    fn a_written_off_invoice_moves_only_when_paid_in_full() {
        let inv = usd_invoice(Uncollectible);
        // a part payment leaves it written off (the amounts still follow the payments)
        let s = settled(&inv, &[pay("40", PaymentState::Confirmed)]);
        assert_eq!(s.status(Uncollectible), Uncollectible);
        assert_eq!(s.amount_paid.to_string(), "40.00");
        // paid in full after all: paid, then confirmed
        let s = settled(&inv, &[pay("100", PaymentState::Confirmed)]);
        assert_eq!(s.steps, vec![Paid, Confirmed]);
    }

    fn settled(invoice: &Invoice, payments: &[Payment]) -> Settlement {
        settle(invoice, payments).expect("settles")
    }

    #[test]
    fn exact_payment_in_a_block_pays() {
        let s = settled(&usd_invoice(Pending), &[pay("100", PaymentState::InBlock)]);
        assert_eq!(s.steps, vec![Paid]);
        assert_eq!(s.asset_paid, d("100"));
        assert_eq!(s.amount_paid.to_string(), "100.00");
        assert!(!s.overpaid);
        assert!(!s.paid_late);
    }

    #[test]
    fn confirmed_payment_jumps_pending_to_paid_then_confirmed() {
        let s = settled(&usd_invoice(Pending), &[pay("100", PaymentState::Confirmed)]);
        assert_eq!(s.steps, vec![Paid, Confirmed]);
        assert_eq!(s.status(Pending), Confirmed);
        // the same from partial and overdue; from paid it is one step
        assert_eq!(settled(&usd_invoice(Partial), &[pay("100", PaymentState::Confirmed)]).steps, vec![Paid, Confirmed]);
        assert_eq!(settled(&usd_invoice(Overdue), &[pay("100", PaymentState::Confirmed)]).steps, vec![Paid, Confirmed]);
        assert_eq!(settled(&usd_invoice(Paid), &[pay("100", PaymentState::Confirmed)]).steps, vec![Confirmed]);
    }

    #[test]
    fn confirmed_needs_the_confirmed_payments_alone_to_reach_the_threshold() {
        let s = settled(
            &usd_invoice(Paid),
            &[pay("60", PaymentState::Confirmed), pay("40", PaymentState::Mempool)],
        );
        assert_eq!(s.steps, Vec::<Status>::new());
        assert_eq!(s.status(Paid), Paid);
        assert_eq!(s.asset_paid, d("100"));
    }

    #[test]
    fn partial_payment() {
        let s = settled(&usd_invoice(Pending), &[pay("40", PaymentState::Mempool)]);
        assert_eq!(s.steps, vec![Partial]);
        assert_eq!(s.amount_paid.to_string(), "40.00");
        // a second payment completes it
        let s = settled(
            &usd_invoice(Partial),
            &[pay("40", PaymentState::Confirmed), pay("60", PaymentState::InBlock)],
        );
        assert_eq!(s.steps, vec![Paid]);
    }

    #[test]
    fn overpayment_is_flagged_and_counted_in_full() {
        let s = settled(&usd_invoice(Pending), &[pay("120", PaymentState::InBlock)]);
        assert_eq!(s.steps, vec![Paid]);
        assert!(s.overpaid);
        assert_eq!(s.asset_paid, d("120"));
        assert_eq!(s.amount_paid.to_string(), "120.00");
    }

    #[test]
    fn tolerance_lowers_the_threshold() {
        let mut inv = usd_invoice(Pending);
        inv.tolerance_percent = d("0.5");
        assert_eq!(settled(&inv, &[pay("99.6", PaymentState::InBlock)]).steps, vec![Paid]);
        assert_eq!(settled(&inv, &[pay("99.5", PaymentState::InBlock)]).steps, vec![Paid]);
        assert_eq!(settled(&inv, &[pay("99.4", PaymentState::InBlock)]).steps, vec![Partial]);
        assert_eq!(settled(&inv, &[pay("99.5", PaymentState::Confirmed)]).steps, vec![Paid, Confirmed]);
        // paid within tolerance is not overpaid, and the fiat amount is the share paid
        let s = settled(&inv, &[pay("99.6", PaymentState::InBlock)]);
        assert!(!s.overpaid);
        assert_eq!(s.amount_paid.to_string(), "99.60");
    }

    #[test]
    fn other_assets_and_reverted_payments_do_not_count() {
        let mut eth = pay("100", PaymentState::Confirmed);
        eth.asset = "ETH".into();
        let mut reverted = pay("100", PaymentState::Reverted);
        reverted.late = true;
        let s = settled(&usd_invoice(Pending), &[eth, reverted, pay("10", PaymentState::Mempool)]);
        assert_eq!(s.asset_paid, d("10"));
        assert_eq!(s.steps, vec![Partial]);
        assert!(!s.paid_late, "a reverted late payment is not money");
    }

    #[test]
    fn same_currency_invoice_counts_the_asset_amount_unrounded() {
        let inv = Invoice {
            status: Pending,
            asset: "BTC".into(),
            currency: "BTC".into(),
            total: d("0.50000000"),
            exponent: 8,
            due: Some(d("0.50000000")),
            tolerance_percent: Decimal::ZERO,
        };
        let s = settled(&inv, &[pay("0.12345678", PaymentState::InBlock)]);
        assert_eq!(s.amount_paid, d("0.12345678"));
        assert_eq!(s.amount_paid, s.asset_paid);
        assert_eq!(s.steps, vec![Partial]);
    }

    #[test]
    fn same_currency_with_a_markup_counts_the_marked_up_amount() {
        // due = total × 1.02: amount_paid is what was paid, above the total, yet not overpaid
        let inv = Invoice {
            status: Pending,
            asset: "BTC".into(),
            currency: "BTC".into(),
            total: d("1.00000000"),
            exponent: 8,
            due: Some(d("1.02000000")),
            tolerance_percent: Decimal::ZERO,
        };
        let s = settled(&inv, &[pay("1.02", PaymentState::InBlock)]);
        assert_eq!(s.amount_paid, d("1.02"));
        assert!(!s.overpaid);
    }

    #[test]
    fn fiat_share_rounds_half_away_from_zero() {
        // 0.05 USD × 1/2 = 0.025 → 0.03
        let mut inv = usd_invoice(Pending);
        inv.total = d("0.05");
        inv.due = Some(d("2"));
        assert_eq!(settled(&inv, &[pay("1", PaymentState::Mempool)]).amount_paid.to_string(), "0.03");
        // 10.00 USD × 1/3 = 3.333… → 3.33; JPY has no decimals
        inv.total = d("10.00");
        inv.due = Some(d("3"));
        assert_eq!(settled(&inv, &[pay("1", PaymentState::Mempool)]).amount_paid.to_string(), "3.33");
        inv.currency = "JPY".into();
        inv.total = d("1500");
        inv.exponent = 0;
        assert_eq!(settled(&inv, &[pay("1", PaymentState::Mempool)]).amount_paid.to_string(), "500");
    }

    #[test]
    fn late_payment_to_an_expired_invoice_pays_it() {
        let mut late = pay("100", PaymentState::InBlock);
        late.late = true;
        let s = settled(&usd_invoice(Expired), &[late.clone()]);
        assert_eq!(s.steps, vec![Paid]);
        assert!(s.paid_late);
        late.amount = d("30");
        assert_eq!(settled(&usd_invoice(Expired), &[late]).steps, vec![Partial]);
        // an expired invoice with nothing paid stays expired
        assert_eq!(settled(&usd_invoice(Expired), &[]).steps, Vec::<Status>::new());
    }

    #[test]
    fn draft_and_cancelled_are_never_settled() {
        let money = [pay("100", PaymentState::Confirmed)];
        assert_eq!(settle(&usd_invoice(Draft), &money), None);
        assert_eq!(settle(&usd_invoice(Cancelled), &money), None);
        assert_eq!(settle(&usd_invoice(Void), &money), None);
    }

    #[test]
    fn nothing_due_is_nothing_to_settle() {
        let money = [pay("100", PaymentState::Confirmed)];
        let mut inv = usd_invoice(Pending);
        inv.due = Some(d("0.00000000"));
        assert_eq!(settle(&inv, &money), None);
        inv.due = None;
        assert_eq!(settle(&inv, &money), None);
    }

    #[test]
    fn reorg_to_zero_returns_to_pending() {
        for from in [Partial, Paid, Confirmed] {
            let s = settled(&usd_invoice(from), &[pay("100", PaymentState::Reverted)]);
            assert_eq!(s.steps, vec![Pending], "{from}");
            assert_eq!(s.asset_paid, Decimal::ZERO);
            assert_eq!(s.amount_paid.to_string(), "0.00");
            assert!(!s.overpaid);
        }
        // a pending invoice without payments: amounts written, no step
        let s = settled(&usd_invoice(Pending), &[]);
        assert_eq!(s.steps, Vec::<Status>::new());
        assert_eq!(s.status(Pending), Pending);
    }

    #[test]
    fn reorg_rolls_confirmed_back_to_paid_or_partial() {
        assert_eq!(settled(&usd_invoice(Confirmed), &[pay("100", PaymentState::Mempool)]).steps, vec![Paid]);
        assert_eq!(settled(&usd_invoice(Confirmed), &[pay("50", PaymentState::Confirmed)]).steps, vec![Partial]);
        assert_eq!(settled(&usd_invoice(Paid), &[pay("50", PaymentState::InBlock)]).steps, vec![Partial]);
    }

    #[test]
    fn steps_skip_what_the_state_machine_forbids() {
        assert_eq!(steps(Paid, Paid), Vec::<Status>::new());
        assert_eq!(steps(Pending, Confirmed), vec![Paid, Confirmed]);
        assert_eq!(steps(Paid, Confirmed), vec![Confirmed]);
        // no legal path: nothing at all (not even the paid before confirmed)
        assert_eq!(steps(Draft, Confirmed), Vec::<Status>::new());
        assert_eq!(steps(Cancelled, Partial), Vec::<Status>::new());
        // a written-off invoice: paid in full it settles (and confirms through paid)
        assert_eq!(steps(Uncollectible, Confirmed), vec![Paid, Confirmed]);
        assert_eq!(steps(Expired, Overdue), Vec::<Status>::new());
    }

    #[test]
    fn settlement_serializes_amounts_as_strings_and_statuses_by_name() {
        let s = settled(&usd_invoice(Pending), &[pay("100.5", PaymentState::Confirmed)]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"asset_paid":"100.5","amount_paid":"100.50","overpaid":true,"paid_late":false,"steps":["paid","confirmed"]}"#
        );
    }

    #[test]
    fn payments_deserialize_from_json() {
        let ps: Vec<Payment> = serde_json::from_str(
            r#"[{"asset":"BTC","amount":0.1,"state":"in_block","late":false},
                {"asset":"BTC","amount":"2.50000000","status":"confirmed"},
                {"asset":"ETH","amount":1e-3,"state":"reverted","late":true,"txid":"ab"}]"#,
        )
        .unwrap();
        assert_eq!(ps[0], Payment { asset: "BTC".into(), amount: d("0.1"), state: PaymentState::InBlock, late: false });
        assert_eq!(ps[1].amount.to_string(), "2.50000000");
        assert_eq!(ps[1].state, PaymentState::Confirmed);
        assert!(!ps[1].late);
        assert_eq!(ps[2].amount, d("0.001"));
        assert!(ps[2].late);
        for bad in [
            r#"{"asset":"BTC","amount":"x","state":"mempool"}"#,
            r#"{"asset":"BTC","amount":true,"state":"mempool"}"#,
            r#"{"asset":"BTC","amount":"1","state":"pending"}"#,
            r#"{"asset":"BTC","state":"mempool"}"#,
        ] {
            assert!(serde_json::from_str::<Payment>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payment_states_parse_by_name() {
        for st in [PaymentState::Mempool, PaymentState::InBlock, PaymentState::Confirmed, PaymentState::Reverted] {
            assert_eq!(st.as_str().parse::<PaymentState>().unwrap(), st);
            assert_eq!(st.to_string(), st.as_str());
        }
        let e = "inblock".parse::<PaymentState>().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(e.message, "unknown payment status \"inblock\"");
    }

    #[test]
    fn seen_is_the_block_time_when_known() {
        let now = 1_700_000_000_123_456;
        assert_eq!(seen_at(Some(1_600_000_000), true, now), 1_600_000_000_000_000);
        assert_eq!(seen_at(None, true, now), now);
        assert_eq!(seen_at(Some(1_600_000_000), false, now), now);
        assert_eq!(seen_at(None, false, now), now);
    }

    #[test]
    fn the_holder_is_who_had_the_address_when_the_payment_was_seen() {
        let history = [("a", 100), ("c", 300), ("b", 200)];
        // a late payment seen while `a` held the address pays `a`, not the live holder `c`
        assert_eq!(holder_when_seen(&history, 150, Some("c"), Some("c")), Some("a"));
        assert_eq!(holder_when_seen(&history, 200, Some("c"), Some("c")), Some("b"));
        assert_eq!(holder_when_seen(&history, 299, Some("c"), Some("c")), Some("b"));
        assert_eq!(holder_when_seen(&history, 1_000, None, Some("c")), Some("c"));
        // seen before any assignment: the live invoice, else the last one, else none
        assert_eq!(holder_when_seen(&history, 50, Some("live"), Some("last")), Some("live"));
        assert_eq!(holder_when_seen(&history, 50, None, Some("last")), Some("last"));
        assert_eq!(holder_when_seen::<&str>(&[], 50, None, None), None);
        // two at the same instant: the later in the slice
        assert_eq!(holder_when_seen(&[("x", 10), ("y", 10)], 10, None, None), Some("y"));
    }

    #[test]
    fn late_after_expiry_or_cancellation() {
        let now = 1_000;
        assert!(is_late(Expired, None, now));
        assert!(is_late(Cancelled, Some(5_000), now));
        assert!(is_late(Pending, Some(999), now));
        assert!(is_late(Overdue, Some(999), now));
        assert!(!is_late(Pending, Some(1_000), now), "the window's last instant is on time");
        assert!(!is_late(Pending, None, now));
        assert!(!is_late(Pending, Some(2_000), now));
        // a paid or partial invoice past its window takes more money, not late money
        assert!(!is_late(Partial, Some(1), now));
        assert!(!is_late(Paid, Some(1), now));
        assert!(!is_late(Confirmed, Some(1), now));
        assert!(!is_late(Draft, Some(1), now));
    }

    // ---- properties ----

    const STATES: [PaymentState; 4] =
        [PaymentState::Mempool, PaymentState::InBlock, PaymentState::Confirmed, PaymentState::Reverted];

    /// An amount due: 10^-8 … 10^9 with 8 decimals.
    fn arb_due() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (1i64..=100_000_000_000_000_000).prop_map(|n| Decimal::new(n, 8)),
            (1i64..=1_000_000).prop_map(Decimal::from),
        ]
    }

    /// Payments as shares of `due` (per mille, so sums land below, on and above it), in the
    /// invoice's asset or another one.
    fn arb_payments(due: Decimal) -> impl Strategy<Value = Vec<Payment>> {
        let share = prop_oneof![1i64..=1_500, Just(1_000i64), Just(500i64), Just(995i64)];
        prop::collection::vec((share, prop::sample::select(STATES.to_vec()), any::<bool>(), prop::bool::weighted(0.1)), 0..6)
            .prop_map(move |ps| {
                ps.into_iter()
                    .map(|(permille, state, late, other)| Payment {
                        asset: if other { "ETH".into() } else { "BTC".into() },
                        amount: crate::money::round_up(due * Decimal::new(permille, 3), 8),
                        state,
                        late,
                    })
                    .collect()
            })
    }

    /// A BTC-quoted invoice: fiat (total up to 10^12 with its exponent) or BTC-denominated with
    /// total = due; tolerance 0 … 99.99 %.
    fn arb_invoice(statuses: Vec<Status>) -> impl Strategy<Value = (Invoice, Vec<Payment>)> {
        (
            prop::sample::select(statuses),
            arb_due(),
            any::<bool>(),
            (1i64..=1_000_000_000_000, prop::sample::select(vec![0u32, 2, 3])),
            prop_oneof![Just(0i64), 0i64..10_000],
        )
            .prop_flat_map(|(status, due, fiat, (units, exponent), tolerance_bp)| {
                let invoice = if fiat {
                    Invoice {
                        status,
                        asset: "BTC".into(),
                        currency: "USD".into(),
                        total: Decimal::new(units, exponent),
                        exponent,
                        due: Some(due),
                        tolerance_percent: Decimal::new(tolerance_bp, 2),
                    }
                } else {
                    Invoice {
                        status,
                        asset: "BTC".into(),
                        currency: "BTC".into(),
                        total: due,
                        exponent: 8,
                        due: Some(due),
                        tolerance_percent: Decimal::new(tolerance_bp, 2),
                    }
                };
                (Just(invoice), arb_payments(due))
            })
    }

    fn counted(invoice: &Invoice, payments: &[Payment]) -> (Decimal, Decimal) {
        let live = payments.iter().filter(|p| p.asset == invoice.asset && p.state != PaymentState::Reverted);
        let paid = live.clone().map(|p| p.amount).sum();
        let confirmed = live.filter(|p| p.state == PaymentState::Confirmed).map(|p| p.amount).sum();
        (paid, confirmed)
    }

    fn rank(s: Status) -> u8 {
        match s {
            Pending => 0,
            Partial => 1,
            Paid => 2,
            Confirmed => 3,
            other => panic!("{other} is not a payment status"),
        }
    }

    const PAYMENT_STATUSES: [Status; 4] = [Pending, Partial, Paid, Confirmed];

    proptest! {
        #[test]
        fn never_confirmed_below_the_threshold((inv, ps) in arb_invoice(crate::status::ALL.to_vec())) {
            let (_, confirmed_sum) = counted(&inv, &ps);
            let due = inv.due.unwrap();
            let threshold = due * (Decimal::ONE - inv.tolerance_percent / Decimal::ONE_HUNDRED);
            if let Some(s) = settle(&inv, &ps) {
                if confirmed_sum < threshold {
                    prop_assert!(!s.steps.contains(&Confirmed), "{:?}", s);
                }
            }
        }

        #[test]
        fn steps_are_legal_and_only_open_or_paid_invoices_settle((inv, ps) in arb_invoice(crate::status::ALL.to_vec())) {
            match settle(&inv, &ps) {
                None => prop_assert!(matches!(inv.status, Draft | Cancelled | Void)),
                Some(s) => {
                    prop_assert!(s.steps.len() <= 2);
                    let mut at = inv.status;
                    for &next in &s.steps {
                        prop_assert!(allowed(at, next), "{} → {}", at, next);
                        at = next;
                    }
                    prop_assert_eq!(s.status(inv.status), at);
                    let (paid, _) = counted(&inv, &ps);
                    prop_assert_eq!(s.asset_paid, paid);
                    prop_assert_eq!(s.overpaid, paid > inv.due.unwrap());
                }
            }
        }

        #[test]
        fn a_reorg_to_nothing_returns_to_pending(
            (mut inv, ps) in arb_invoice(vec![Partial, Paid, Confirmed]),
            drop_all in any::<bool>(),
        ) {
            // every payment reverted, or none left at all
            let ps: Vec<Payment> = if drop_all {
                Vec::new()
            } else {
                ps.into_iter().map(|p| Payment { state: PaymentState::Reverted, ..p }).collect()
            };
            let s = settle(&inv, &ps).unwrap();
            prop_assert_eq!(&s.steps, &vec![Pending]);
            prop_assert!(s.asset_paid.is_zero() && s.amount_paid.is_zero() && !s.overpaid && !s.paid_late);
            // and an invoice already waiting stays as it is
            for from in [Pending, Overdue, Expired] {
                inv.status = from;
                prop_assert!(settle(&inv, &ps).unwrap().steps.is_empty());
            }
        }

        #[test]
        fn fiat_paid_exceeds_the_total_only_when_overpaid((inv, ps) in arb_invoice(PAYMENT_STATUSES.to_vec())) {
            let s = settle(&inv, &ps).unwrap();
            if !s.overpaid {
                prop_assert!(s.amount_paid <= inv.total, "{} > {} ({:?})", s.amount_paid, inv.total, inv);
            }
            prop_assert!(s.amount_paid >= Decimal::ZERO);
            if inv.currency != inv.asset {
                prop_assert_eq!(s.amount_paid.scale(), inv.exponent);
            }
        }

        #[test]
        fn one_more_confirmation_never_lowers_the_status(
            (inv, ps) in arb_invoice(PAYMENT_STATUSES.to_vec()),
            pick in any::<prop::sample::Index>(),
        ) {
            let unconfirmed: Vec<usize> = ps.iter().enumerate()
                .filter(|(_, p)| matches!(p.state, PaymentState::Mempool | PaymentState::InBlock))
                .map(|(i, _)| i)
                .collect();
            prop_assume!(!unconfirmed.is_empty());
            let mut more = ps.clone();
            more[unconfirmed[pick.index(unconfirmed.len())]].state = PaymentState::Confirmed;
            let before = settle(&inv, &ps).unwrap().status(inv.status);
            let after = settle(&inv, &more).unwrap().status(inv.status);
            prop_assert!(rank(after) >= rank(before), "{} → {}: {} then {}", inv.status, before, before, after);
        }
    }
}
