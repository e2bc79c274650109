//! Watch-only wallets (see `sql/30_wallets.sql`): address derivation and validation live in
//! `domain::addresses`; these wrappers return errors as data for the HTTP door.

use crate::domain::addresses::{scheme_for_asset, Network};
use crate::domain::{DomainError, ErrorKind, FieldErrors};
use crate::error;
use pgrx::prelude::*;
use pgrx::JsonB;

fn scheme_and_network(
    asset: &str,
    network: &str,
) -> Result<(&'static dyn crate::domain::addresses::AddressScheme, Network), DomainError> {
    let scheme = scheme_for_asset(asset).ok_or_else(|| {
        let mut errors = FieldErrors::new();
        errors.add("asset", format!("{asset:?} is not one of BTC, ETH, USDC, KAS"));
        errors.finish("wallet").unwrap_err()
    })?;
    Ok((scheme, Network::parse(network)?))
}

fn as_data(r: Result<String, DomainError>) -> JsonB {
    JsonB(match r {
        Ok(address) => serde_json::json!({ "address": address }),
        Err(e) => error::as_json(&e),
    })
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// The receive address at `index` of an account-level extended public key:
    /// `{"address": …}` or `{"error": …}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn derive_wallet_address(asset: &str, network: &str, xpub: &str, index: i32) -> JsonB {
        as_data(scheme_and_network(asset, network).and_then(|(s, n)| {
            let index = u32::try_from(index)
                .map_err(|_| DomainError::new(ErrorKind::Validation, "invalid wallet: negative index"))?;
            s.derive(xpub, n, index)
        }))
    }

    /// A bring-your-own address checked for its chain and network, in canonical form:
    /// `{"address": …}` or `{"error": …}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn check_wallet_address(asset: &str, network: &str, address: &str) -> JsonB {
        as_data(scheme_and_network(asset, network).and_then(|(s, n)| s.validate(address, n)))
    }
}
