//! Quotes: what a fiat-denominated invoice costs in its crypto asset, locked at finalization.
//!
//! `asset_amount = total × (1 + markup_percent / 100) ÷ rate`, rounded **up** to the asset's
//! smallest unit, so a payer never underpays by rounding (docs/money.md). `rate` is the price of one
//! unit of the asset in the invoice currency. A crypto-denominated invoice (currency = asset)
//! needs no rate: its amount is the total with the markup applied.

use crate::error::{DomainError, ErrorKind};
use crate::money::round_up;
use rust_decimal::Decimal;

/// Markups are apiforcrypto's `percent`: above -100 (a discount) and at most 100.
pub fn check_markup(markup_percent: Decimal) -> Result<(), DomainError> {
    if markup_percent <= Decimal::from(-100) || markup_percent > Decimal::ONE_HUNDRED {
        return Err(DomainError::new(
            ErrorKind::Validation,
            format!("invalid quote: markup_percent {markup_percent} must be above -100 and at most 100"),
        ));
    }
    Ok(())
}

/// The crypto amount of a quote. `rate` is None for a crypto-denominated invoice.
pub fn asset_amount(
    total: Decimal,
    rate: Option<Decimal>,
    markup_percent: Decimal,
    asset_exponent: u32,
) -> Result<Decimal, DomainError> {
    check_markup(markup_percent)?;
    let marked_up = total * (Decimal::ONE_HUNDRED + markup_percent) / Decimal::ONE_HUNDRED;
    let amount = match rate {
        None => marked_up,
        Some(r) if r > Decimal::ZERO => marked_up
            .checked_div(r)
            .ok_or_else(|| DomainError::new(ErrorKind::Validation, "invalid quote: amount out of range"))?,
        Some(r) => {
            return Err(DomainError::new(
                ErrorKind::Validation,
                format!("invalid quote: the rate must be positive, got {r}"),
            ))
        }
    };
    Ok(round_up(amount, asset_exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn btpay_example_in_btc_rounds_up_to_the_satoshi() {
        // 220.00 USD at 67187.33 USD/BTC = 0.003274425... BTC -> 0.00327443
        assert_eq!(asset_amount(d("220.00"), Some(d("67187.33")), d("0"), 8).unwrap(), d("0.00327443"));
    }

    #[test]
    fn markup_and_discount() {
        // +2 %: 100 USD -> 102 USD at 2 USD/KAS = 51 KAS
        assert_eq!(asset_amount(d("100.00"), Some(d("2")), d("2"), 8).unwrap(), d("51.00000000"));
        // -10 %: 100 USD -> 90 USD at 3 = 30 KAS
        assert_eq!(asset_amount(d("100.00"), Some(d("3")), d("-10"), 8).unwrap(), d("30.00000000"));
        assert!(asset_amount(d("1"), Some(d("1")), d("-100"), 8).is_err());
        assert!(asset_amount(d("1"), Some(d("1")), d("100.01"), 8).is_err());
    }

    #[test]
    fn never_underpays_by_rounding() {
        // 10 USD at 3 USD/USDC = 3.333333... -> 3.333334 USDC (6 decimals)
        let a = asset_amount(d("10.00"), Some(d("3")), d("0"), 6).unwrap();
        assert_eq!(a, d("3.333334"));
        assert!(a * d("3") >= d("10.00"));
        // ETH has 18 decimals
        let a = asset_amount(d("461.98"), Some(d("3456.78")), d("0"), 18).unwrap();
        assert_eq!(a.scale(), 18);
        assert!(a * d("3456.78") >= d("461.98"));
    }

    #[test]
    fn crypto_denominated_needs_no_rate() {
        assert_eq!(asset_amount(d("0.5"), None, d("0"), 8).unwrap(), d("0.50000000"));
        assert_eq!(asset_amount(d("1"), None, d("1.5"), 8).unwrap(), d("1.01500000"));
    }

    #[test]
    fn rate_must_be_positive() {
        assert!(asset_amount(d("1"), Some(d("0")), d("0"), 8).is_err());
        assert!(asset_amount(d("1"), Some(d("-3")), d("0"), 8).is_err());
    }
}
