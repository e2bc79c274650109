//! Invoice validation, pricing and the status machine, exposed to the SQL layer.

use crate::domain::{invoice, status};
use crate::error::{self, OrRaise};
use pgrx::prelude::*;
use pgrx::JsonB;

/// `invoices.allow_private_destinations` of this session (callbacks on loopback or a private
/// network, for local development and tests).
fn allow_private() -> bool {
    crate::settings::ALLOW_PRIVATE_DESTINATIONS.get()
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// Validates a create_invoice payload (all bad fields at once) and prices it exactly.
    /// A bad payload gives `{"error": {code 22023, message, detail {"errors":[{field, message}]}, hint}}`.
    #[pg_extern(stable, parallel_safe)]
    pub fn prepare_invoice(payload: JsonB) -> JsonB {
        JsonB(invoice::prepare_with(&payload.0, allow_private()).unwrap_or_else(|e| error::as_json(&e)))
    }

    /// create_invoice's input check: prepare_invoice's result in the shape of the invoice
    /// object of a new invoice (it also fills the row).
    #[pg_extern(stable, parallel_safe)]
    pub fn prepare_new_invoice(payload: JsonB) -> JsonB {
        JsonB(
            invoice::prepare_with(&payload.0, allow_private())
                .map(invoice::new_invoice_object)
                .unwrap_or_else(|e| error::as_json(&e)),
        )
    }

    /// Validates create_merchant's input.
    #[pg_extern(immutable, parallel_safe)]
    pub fn prepare_merchant(payload: JsonB) -> JsonB {
        JsonB(invoice::prepare_merchant(&payload.0).or_raise())
    }

    /// Null if `from_status -> to_status` is legal, else the error as data (`{"error": …}`).
    #[pg_extern(immutable, parallel_safe)]
    pub fn transition_problem(from_status: &str, to_status: &str) -> Option<JsonB> {
        status::transition_str(from_status, to_status)
            .err()
            .map(|e| JsonB(error::as_json(&e)))
    }

    /// The state machine, called by the invoices trigger on every status change.
    /// Returns `{timestamp column to stamp, event name}`; raises 23514 for an illegal transition.
    #[pg_extern(immutable, parallel_safe)]
    pub fn check_transition(from_status: &str, to_status: &str) -> Vec<Option<String>> {
        let t = status::transition_str(from_status, to_status).or_raise();
        vec![t.stamps.map(str::to_string), Some(t.event.to_string())]
    }
}
