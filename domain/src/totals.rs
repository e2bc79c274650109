//! Exact invoice totals (docs/money.md), in decimals, never floats:
//! line amount = quantity × unit_price rounded to the currency exponent (half away from zero);
//! subtotal = Σ line amounts; discount ≤ subtotal; tax = (subtotal − discount) × tax_rate / 100
//! rounded; total = subtotal − discount + tax.

use crate::money::round_half_away;
use rust_decimal::Decimal;

/// One priced line before rounding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput {
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

/// One line with its rounded amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub lines: Vec<PricedLine>,
    pub subtotal: Decimal,
    pub discount_amount: Decimal,
    pub tax_rate: Decimal,
    pub tax_amount: Decimal,
    pub total: Decimal,
}

/// Why totals could not be computed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotalsError {
    /// quantity × unit_price of line `i` does not fit exact decimal arithmetic.
    LineTooLarge(usize),
    SubtotalTooLarge,
    DiscountAboveSubtotal,
}

/// Largest amount, in currency units, that an invoice line, subtotal or total may reach for a
/// currency with `exponent` decimals. 10^15 for fiat; less for 18-decimal assets so every
/// intermediate product stays exact in 28 significant digits.
pub fn max_units(exponent: u32) -> Decimal {
    let digits = 15.min(26u32.saturating_sub(exponent));
    Decimal::from_i128_with_scale(10i128.pow(digits), 0)
}

/// Multiplies exactly, or returns `None` if the product would be rounded or overflow.
pub fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let p = a.checked_mul(b)?;
    // rust_decimal silently reduces the scale when the mantissa overflows: detect it.
    if p.scale() == a.scale() + b.scale() || p.is_zero() {
        Some(p)
    } else {
        None
    }
}

/// Computes every amount of an invoice in a currency with `exponent` decimals.
pub fn compute(
    lines: &[LineInput],
    exponent: u32,
    tax_rate: Decimal,
    discount_amount: Decimal,
) -> Result<Totals, TotalsError> {
    let max = max_units(exponent);
    let mut priced = Vec::with_capacity(lines.len());
    let mut subtotal = Decimal::ZERO;
    for (i, line) in lines.iter().enumerate() {
        let raw = exact_mul(line.quantity, line.unit_price).ok_or(TotalsError::LineTooLarge(i))?;
        let amount = round_half_away(raw, exponent);
        if amount > max {
            return Err(TotalsError::LineTooLarge(i));
        }
        subtotal = subtotal
            .checked_add(amount)
            .ok_or(TotalsError::SubtotalTooLarge)?;
        priced.push(PricedLine {
            description: line.description.clone(),
            quantity: line.quantity,
            unit_price: line.unit_price,
            amount,
        });
    }
    if subtotal > max {
        return Err(TotalsError::SubtotalTooLarge);
    }
    let subtotal = round_half_away(subtotal, exponent);
    let discount_amount = round_half_away(discount_amount, exponent);
    if discount_amount > subtotal {
        return Err(TotalsError::DiscountAboveSubtotal);
    }
    let taxable = subtotal - discount_amount;
    let tax_raw =
        exact_mul(taxable, tax_rate).ok_or(TotalsError::SubtotalTooLarge)? / Decimal::ONE_HUNDRED;
    let tax_amount = round_half_away(tax_raw, exponent);
    let total = round_half_away(taxable + tax_amount, exponent);
    Ok(Totals {
        lines: priced,
        subtotal,
        discount_amount,
        tax_rate,
        tax_amount,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::decimal;
    use proptest::prelude::*;

    fn line(q: &str, p: &str) -> LineInput {
        LineInput {
            description: "x".into(),
            quantity: decimal(q),
            unit_price: decimal(p),
        }
    }

    #[test]
    fn btpay_example_totals_220() {
        let t = compute(
            &[line("1", "150.00"), line("2", "25.00")],
            2,
            decimal("10"),
            Decimal::ZERO,
        )
        .unwrap();
        assert_eq!(t.subtotal.to_string(), "200.00");
        assert_eq!(t.tax_amount.to_string(), "20.00");
        assert_eq!(t.total.to_string(), "220.00");
        assert_eq!(t.lines[1].amount.to_string(), "50.00");
    }

    #[test]
    fn jpy_has_no_decimals() {
        let t = compute(&[line("3", "333.33")], 0, decimal("8"), decimal("0")).unwrap();
        assert_eq!(t.lines[0].amount.to_string(), "1000"); // 999.99 → 1000
        assert_eq!(t.tax_amount.to_string(), "80");
        assert_eq!(t.total.to_string(), "1080");
    }

    #[test]
    fn line_rounding_is_half_away_from_zero() {
        // 0.5 × 0.01 = 0.005 → 0.01
        let t = compute(&[line("0.5", "0.01")], 2, Decimal::ZERO, Decimal::ZERO).unwrap();
        assert_eq!(t.lines[0].amount.to_string(), "0.01");
        // 3 × 0.333 = 0.999 → 1.00
        let t = compute(&[line("3", "0.333")], 2, Decimal::ZERO, Decimal::ZERO).unwrap();
        assert_eq!(t.total.to_string(), "1.00");
    }

    #[test]
    fn tax_applies_after_discount_and_rounds() {
        // (100.00 − 10.00) × 7.25 % = 6.525 → 6.53
        let t = compute(&[line("1", "100")], 2, decimal("7.25"), decimal("10")).unwrap();
        assert_eq!(t.tax_amount.to_string(), "6.53");
        assert_eq!(t.total.to_string(), "96.53");
    }

    #[test]
    fn discount_above_subtotal_is_refused() {
        assert_eq!(
            compute(&[line("1", "5")], 2, Decimal::ZERO, decimal("5.01")),
            Err(TotalsError::DiscountAboveSubtotal)
        );
    }

    #[test]
    fn eth_amounts_keep_18_decimals() {
        let t = compute(
            &[line("1", "0.000000000000000001")],
            18,
            Decimal::ZERO,
            Decimal::ZERO,
        )
        .unwrap();
        assert_eq!(t.total.to_string(), "0.000000000000000001");
        assert!(compute(
            &[line("1000000000", "1000")],
            18,
            Decimal::ZERO,
            Decimal::ZERO
        )
        .is_err());
    }

    /// Reference implementation in integer minor units: round-half-away division of i128s.
    fn div_round_half_away(n: i128, d: i128) -> i128 {
        let q = n / d;
        let r = n % d;
        if 2 * r.abs() >= d.abs() {
            q + n.signum() * d.signum()
        } else {
            q
        }
    }

    proptest! {
        #[test]
        fn totals_are_consistent_and_match_integer_arithmetic(
            lines in prop::collection::vec((1i64..10_000, 0i64..1_000_000), 1..20),
            tax_bp in 0i64..10_000, // tax rate in basis points: 0.00 % … 99.99 %
            discount_pct in 0i64..=100,
            exponent in prop::sample::select(vec![0u32, 2, 3, 8]),
        ) {
            // quantities with 2 decimals, unit prices with exponent + 1 decimals (forces rounding)
            let inputs: Vec<LineInput> = lines.iter().map(|&(q, p)| LineInput {
                description: "p".into(),
                quantity: Decimal::new(q, 2),
                unit_price: Decimal::new(p, exponent + 1),
            }).collect();
            let subtotal_minor: i128 = lines.iter().map(|&(q, p)| {
                // q/100 × p/10^(e+1) in minor units (10^-e) = q·p / 1000
                div_round_half_away(q as i128 * p as i128, 1000)
            }).sum();
            let discount_minor = subtotal_minor * discount_pct as i128 / 100;
            let discount = Decimal::from_i128_with_scale(discount_minor, exponent);
            let tax_rate = Decimal::new(tax_bp, 2);
            let t = compute(&inputs, exponent, tax_rate, discount).unwrap();

            prop_assert_eq!(t.subtotal, Decimal::from_i128_with_scale(subtotal_minor, exponent));
            let tax_minor = div_round_half_away((subtotal_minor - discount_minor) * tax_bp as i128, 10_000);
            prop_assert_eq!(t.tax_amount, Decimal::from_i128_with_scale(tax_minor, exponent));
            prop_assert_eq!(t.total, t.subtotal - t.discount_amount + t.tax_amount);
            prop_assert_eq!(t.total.scale(), exponent);
            prop_assert_eq!(t.subtotal, t.lines.iter().map(|l| l.amount).sum::<Decimal>());
            prop_assert!(t.total >= Decimal::ZERO);
        }

        #[test]
        fn rounding_matches_integer_reference(n in -10_000_000i64..10_000_000, extra in 1u32..6, exponent in 0u32..9) {
            let d = Decimal::new(n, exponent + extra);
            let expected = div_round_half_away(n as i128, 10i128.pow(extra));
            prop_assert_eq!(round_half_away(d, exponent), Decimal::from_i128_with_scale(expected, exponent));
        }

        #[test]
        fn round_up_is_never_below_the_exact_value(n in 0i64..1_000_000_000_000, extra in 0u32..8) {
            let d = Decimal::new(n, 8 + extra);
            let r = crate::money::round_up(d, 8);
            prop_assert!(r >= d);
            prop_assert!(r - d < Decimal::new(1, 8));
        }
    }
}
