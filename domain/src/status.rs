//! The invoice state machine: [`allowed`] lists every legal status change (payments move an
//! invoice as docs/money.md describes). The database calls [`transition`] from a trigger,
//! so an illegal change is refused whichever door it came through.
//!
//! ```text
//! draft ──finalize──▶ pending ──▶ partial ──▶ paid ──▶ confirmed
//!   │                  │  │          │          ▲
//!   └──▶ cancelled ◀───┘  ├──▶ overdue ─────────┤ (payment after the due date)
//!                         └──▶ expired ─────────┘ (late payment: paid_late)
//!
//! pending / overdue / expired ──▶ void            (a mistake; nothing was received)
//! pending / partial / overdue / expired ──▶ uncollectible ──▶ paid (bad debt; paid after all)
//! ```
//! Reorgs roll payments back (paid → partial/pending, confirmed → paid), also through here.

use crate::error::{DomainError, ErrorKind};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Draft,
    Pending,
    Partial,
    Paid,
    Confirmed,
    Expired,
    Overdue,
    Cancelled,
    Void,
    Uncollectible,
}

pub const ALL: [Status; 10] = [
    Status::Draft,
    Status::Pending,
    Status::Partial,
    Status::Paid,
    Status::Confirmed,
    Status::Expired,
    Status::Overdue,
    Status::Cancelled,
    Status::Void,
    Status::Uncollectible,
];

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Pending => "pending",
            Status::Partial => "partial",
            Status::Paid => "paid",
            Status::Confirmed => "confirmed",
            Status::Expired => "expired",
            Status::Overdue => "overdue",
            Status::Cancelled => "cancelled",
            Status::Void => "void",
            Status::Uncollectible => "uncollectible",
        }
    }

    /// Statuses in which the invoice still waits for (more) money.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Partial | Status::Overdue)
    }

    /// apiforcrypto's name for the status (NOT_PAID, PARTIALLY_PAID, PAID …).
    pub fn apiforcrypto_name(self) -> &'static str {
        match self {
            Status::Draft | Status::Pending | Status::Overdue => "NOT_PAID",
            Status::Partial => "PARTIALLY_PAID",
            Status::Paid => "IN_BLOCK",
            Status::Confirmed => "PAID",
            Status::Expired => "EXPIRED",
            Status::Cancelled | Status::Void => "CANCELLED",
            Status::Uncollectible => "NOT_PAID",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter().copied().find(|st| st.as_str() == s).ok_or_else(|| {
            DomainError::new(ErrorKind::Validation, format!("unknown invoice status \"{s}\""))
                .with_hint("statuses are draft, pending, partial, paid, confirmed, expired, overdue, cancelled, void, uncollectible")
        })
    }
}

/// What a legal transition does besides changing the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    /// The timestamp column stamped by this transition, if any.
    pub stamps: Option<&'static str>,
    /// The webhook event this transition emits.
    pub event: &'static str,
}

/// Is `from → to` allowed?
pub fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Draft, Pending)
            | (Draft, Cancelled)
            | (Pending, Partial)
            | (Pending, Paid)
            | (Pending, Expired)
            | (Pending, Overdue)
            | (Pending, Cancelled)
            | (Partial, Paid)
            | (Partial, Expired)
            | (Partial, Overdue)
            | (Overdue, Partial)
            | (Overdue, Paid)
            | (Overdue, Expired)
            | (Overdue, Cancelled)
            // a payment after expiry is a late payment, never lost
            | (Expired, Partial)
            | (Expired, Paid)
            // a new quote for an expired, unpaid invoice
            | (Expired, Pending)
            | (Paid, Confirmed)
            // reorgs roll payments back
            | (Paid, Partial)
            | (Paid, Pending)
            | (Partial, Pending)
            | (Confirmed, Paid)
            | (Confirmed, Partial)
            | (Confirmed, Pending)
            // void: a finalized invoice issued by mistake, with nothing received
            | (Pending, Void)
            | (Overdue, Void)
            | (Expired, Void)
            // uncollectible: written off as bad debt; a payment in full still settles it
            | (Pending, Uncollectible)
            | (Partial, Uncollectible)
            | (Overdue, Uncollectible)
            | (Expired, Uncollectible)
            | (Uncollectible, Paid)
    )
}

/// The legal targets from `from`, for error hints.
pub fn targets(from: Status) -> Vec<Status> {
    ALL.iter()
        .copied()
        .filter(|&to| allowed(from, to))
        .collect()
}

/// Checks `from → to` and says what to stamp and emit; an illegal change is an error.
pub fn transition(from: Status, to: Status) -> Result<Transition, DomainError> {
    if !allowed(from, to) {
        let legal: Vec<&str> = targets(from).iter().map(|s| s.as_str()).collect();
        let hint = if legal.is_empty() {
            format!("a {from} invoice is final and cannot change status")
        } else {
            format!("from {from} an invoice can become: {}", legal.join(", "))
        };
        return Err(DomainError::new(
            ErrorKind::IllegalTransition,
            format!("illegal invoice status transition: {from} → {to}"),
        )
        .with_hint(hint));
    }
    let stamps = match to {
        Status::Pending if from == Status::Draft => Some("finalized_at"),
        Status::Pending if from == Status::Expired => Some("finalized_at"),
        Status::Partial => Some("partially_paid_at"),
        Status::Paid if from != Status::Confirmed => Some("paid_at"),
        Status::Confirmed => Some("confirmed_at"),
        Status::Expired => Some("expired_at"),
        Status::Overdue => Some("overdue_at"),
        Status::Cancelled => Some("cancelled_at"),
        Status::Void => Some("voided_at"),
        Status::Uncollectible => Some("marked_uncollectible_at"),
        _ => None,
    };
    let event = match to {
        Status::Pending if matches!(from, Status::Draft | Status::Expired) => "invoice.finalized",
        Status::Pending => "invoice.reverted",
        Status::Partial => "invoice.partial",
        Status::Paid => "invoice.paid",
        Status::Confirmed => "invoice.confirmed",
        Status::Expired => "invoice.expired",
        Status::Overdue => "invoice.overdue",
        Status::Cancelled => "invoice.cancelled",
        Status::Void => "invoice.voided",
        Status::Uncollectible => "invoice.marked_uncollectible",
        Status::Draft => "invoice.created",
    };
    Ok(Transition {
        from,
        to,
        stamps,
        event,
    })
}

/// Parses both names and checks the transition: what the database trigger calls.
pub fn transition_str(from: &str, to: &str) -> Result<Transition, DomainError> {
    transition(from.parse()?, to.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn happy_path_is_legal_and_stamps_each_step() {
        assert_eq!(
            transition(Draft, Pending).unwrap().stamps,
            Some("finalized_at")
        );
        assert_eq!(
            transition(Pending, Partial).unwrap().stamps,
            Some("partially_paid_at")
        );
        assert_eq!(transition(Partial, Paid).unwrap().stamps, Some("paid_at"));
        assert_eq!(
            transition(Paid, Confirmed).unwrap().stamps,
            Some("confirmed_at")
        );
        assert_eq!(
            transition(Pending, Cancelled).unwrap().event,
            "invoice.cancelled"
        );
        assert_eq!(
            transition(Pending, Expired).unwrap().stamps,
            Some("expired_at")
        );
    }

    #[test]
    fn final_states_and_skips_are_illegal() {
        for (from, to) in [
            (Cancelled, Pending),
            (Cancelled, Draft),
            (Draft, Paid),
            (Draft, Confirmed),
            (Pending, Draft),
            (Partial, Cancelled),
            (Paid, Cancelled),
            (Confirmed, Cancelled),
            (Expired, Cancelled),
            (Pending, Confirmed),
        ] {
            let e = transition(from, to).unwrap_err();
            assert_eq!(e.kind, ErrorKind::IllegalTransition, "{from} → {to}");
        }
    }

    #[test]
    fn error_names_both_states_and_hints_the_legal_ones() {
        let e = transition(Cancelled, Pending).unwrap_err();
        assert_eq!(
            e.message,
            "illegal invoice status transition: cancelled → pending"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("a cancelled invoice is final and cannot change status")
        );
        let e = transition(Draft, Paid).unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some("from draft an invoice can become: pending, cancelled")
        );
    }

    #[test]
    fn no_state_returns_to_draft_and_cancelled_is_terminal() {
        for s in ALL {
            assert!(!allowed(s, Draft));
            assert!(!allowed(Cancelled, s));
            assert!(!allowed(s, s), "{s} → {s} is not a transition");
        }
    }

    #[test]
    fn unknown_status_is_a_validation_error() {
        assert_eq!(
            transition_str("draft", "bogus").unwrap_err().kind,
            ErrorKind::Validation
        );
    }
}
