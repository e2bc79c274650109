//! Currencies, exponents, parsing and rounding of amounts.
//!
//! Amounts are `rust_decimal::Decimal`, never floats. JSON input may give a number or a string;
//! both are read from their exact decimal text (serde_json's `arbitrary_precision`).

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
#[cfg(test)]
use std::str::FromStr;

/// Whether a currency is a fiat money (ISO 4217) or a crypto asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrencyKind {
    Fiat,
    Crypto,
}

impl CurrencyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CurrencyKind::Fiat => "fiat",
            CurrencyKind::Crypto => "crypto",
        }
    }
}

/// A currency an invoice can be denominated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Number of decimal places of the smallest unit (ISO 4217 minor unit; satoshi = 8, wei = 18).
    pub exponent: u32,
    pub kind: CurrencyKind,
    pub name: &'static str,
}

const fn fiat(code: &'static str, exponent: u32, name: &'static str) -> Currency {
    Currency {
        code,
        exponent,
        kind: CurrencyKind::Fiat,
        name,
    }
}

const fn crypto(code: &'static str, exponent: u32, name: &'static str) -> Currency {
    Currency {
        code,
        exponent,
        kind: CurrencyKind::Crypto,
        name,
    }
}

/// Every currency the extension knows. Fiat exponents are ISO 4217's minor units.
pub const CURRENCIES: &[Currency] = &[
    fiat("AED", 2, "UAE Dirham"),
    fiat("ARS", 2, "Argentine Peso"),
    fiat("AUD", 2, "Australian Dollar"),
    fiat("BGN", 2, "Bulgarian Lev"),
    fiat("BHD", 3, "Bahraini Dinar"),
    fiat("BRL", 2, "Brazilian Real"),
    fiat("CAD", 2, "Canadian Dollar"),
    fiat("CHF", 2, "Swiss Franc"),
    fiat("CLP", 0, "Chilean Peso"),
    fiat("CNY", 2, "Yuan Renminbi"),
    fiat("COP", 2, "Colombian Peso"),
    fiat("CZK", 2, "Czech Koruna"),
    fiat("DKK", 2, "Danish Krone"),
    fiat("EGP", 2, "Egyptian Pound"),
    fiat("EUR", 2, "Euro"),
    fiat("GBP", 2, "Pound Sterling"),
    fiat("HKD", 2, "Hong Kong Dollar"),
    fiat("HUF", 2, "Forint"),
    fiat("IDR", 2, "Rupiah"),
    fiat("ILS", 2, "New Israeli Sheqel"),
    fiat("INR", 2, "Indian Rupee"),
    fiat("ISK", 0, "Iceland Krona"),
    fiat("JOD", 3, "Jordanian Dinar"),
    fiat("JPY", 0, "Yen"),
    fiat("KES", 2, "Kenyan Shilling"),
    fiat("KRW", 0, "Won"),
    fiat("KWD", 3, "Kuwaiti Dinar"),
    fiat("MXN", 2, "Mexican Peso"),
    fiat("MYR", 2, "Malaysian Ringgit"),
    fiat("NGN", 2, "Naira"),
    fiat("NOK", 2, "Norwegian Krone"),
    fiat("NZD", 2, "New Zealand Dollar"),
    fiat("OMR", 3, "Rial Omani"),
    fiat("PEN", 2, "Sol"),
    fiat("PHP", 2, "Philippine Peso"),
    fiat("PKR", 2, "Pakistan Rupee"),
    fiat("PLN", 2, "Zloty"),
    fiat("RON", 2, "Romanian Leu"),
    fiat("SAR", 2, "Saudi Riyal"),
    fiat("SEK", 2, "Swedish Krona"),
    fiat("SGD", 2, "Singapore Dollar"),
    fiat("THB", 2, "Baht"),
    fiat("TND", 3, "Tunisian Dinar"),
    fiat("TRY", 2, "Turkish Lira"),
    fiat("TWD", 2, "New Taiwan Dollar"),
    fiat("UAH", 2, "Hryvnia"),
    fiat("UGX", 0, "Uganda Shilling"),
    fiat("USD", 2, "US Dollar"),
    fiat("VND", 0, "Dong"),
    fiat("XAF", 0, "CFA Franc BEAC"),
    fiat("XOF", 0, "CFA Franc BCEAO"),
    fiat("ZAR", 2, "Rand"),
    crypto("BTC", 8, "Bitcoin"),
    crypto("ETH", 18, "Ether"),
    crypto("USDC", 6, "USD Coin"),
    crypto("KAS", 8, "Kaspa"),
];

/// Looks a currency up by its code, case-insensitively (`usd` → USD).
pub fn currency(code: &str) -> Option<&'static Currency> {
    let code = code.trim();
    CURRENCIES
        .iter()
        .find(|c| c.code.eq_ignore_ascii_case(code))
}

/// Largest magnitude accepted for any single amount, well inside `Decimal`'s range so that
/// products and sums of 100 lines can never overflow.
pub fn max_amount() -> Decimal {
    Decimal::from(1_000_000_000_000_000i64) // 1e15
}

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    NotANumber,
    TooManyDecimals(u32),
    TooLarge,
}

impl AmountError {
    pub fn message(&self) -> String {
        match self {
            AmountError::NotANumber => {
                "must be a decimal number, given as a JSON number or string".into()
            }
            AmountError::TooManyDecimals(max) => format!("must have at most {max} decimal places"),
            AmountError::TooLarge => "is too large".into(),
        }
    }
}

/// Reads a decimal from text such as `"150.00"`, `"2"`, `"-1.5"` or `"1e3"`.
pub fn parse_decimal_str(text: &str) -> Result<Decimal, AmountError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(AmountError::NotANumber);
    }
    // Only plain decimal or scientific notation: rejects "NaN", "inf", "0x10", "1_000".
    if !t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return Err(AmountError::NotANumber);
    }
    let parsed = if t.contains(['e', 'E']) {
        Decimal::from_scientific(t)
    } else {
        Decimal::from_str_exact(t)
    };
    let d = parsed.map_err(|_| AmountError::NotANumber)?;
    if d.abs() > max_amount() {
        return Err(AmountError::TooLarge);
    }
    Ok(d)
}

/// Reads a decimal from a JSON value that is a number or a numeric string.
pub fn parse_decimal_json(value: &Value) -> Result<Decimal, AmountError> {
    match value {
        Value::Number(n) => parse_decimal_str(&n.to_string()),
        Value::String(s) => parse_decimal_str(s),
        _ => Err(AmountError::NotANumber),
    }
}

/// Checks that `d` has no more than `max_scale` significant decimal places.
pub fn check_scale(d: Decimal, max_scale: u32) -> Result<Decimal, AmountError> {
    let n = d.normalize();
    if n.scale() > max_scale {
        Err(AmountError::TooManyDecimals(max_scale))
    } else {
        Ok(d)
    }
}

/// Rounds half away from zero to `exponent` places and sets exactly that scale
/// (PostgreSQL's `round(numeric, int)` does the same, so SQL CHECKs agree with Rust).
pub fn round_half_away(d: Decimal, exponent: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(exponent, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(exponent);
    r
}

/// Rounds up (away from zero) to `exponent` places: crypto amounts quoted from fiat use this so
/// the payer never underpays by rounding.
pub fn round_up(d: Decimal, exponent: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(exponent, RoundingStrategy::AwayFromZero);
    r.rescale(exponent);
    r
}

/// Formats an amount with exactly `exponent` decimals: `220` in USD → `"220.00"`.
pub fn format_amount(d: Decimal, exponent: u32) -> String {
    let mut r = d;
    if r.scale() != exponent {
        r = round_half_away(r, exponent);
    }
    r.to_string()
}

/// Test helper: a decimal from a literal known to be well-formed.
#[cfg(test)]
pub fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test literal is a decimal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exponents_follow_iso_4217_and_asset_units() {
        assert_eq!(currency("USD").unwrap().exponent, 2);
        assert_eq!(currency("jpy").unwrap().exponent, 0);
        assert_eq!(currency("KWD").unwrap().exponent, 3);
        assert_eq!(currency("BTC").unwrap().exponent, 8);
        assert_eq!(currency("ETH").unwrap().exponent, 18);
        assert_eq!(currency("USDC").unwrap().exponent, 6);
        assert_eq!(currency("KAS").unwrap().exponent, 8);
        assert!(currency("XYZ").is_none());
    }

    #[test]
    fn json_numbers_and_strings_parse_exactly() {
        assert_eq!(parse_decimal_json(&json!(500)).unwrap().to_string(), "500");
        assert_eq!(
            parse_decimal_json(&json!("150.00")).unwrap().to_string(),
            "150.00"
        );
        // A float that is not representable in binary still parses exactly.
        let v: Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(parse_decimal_json(&v).unwrap().to_string(), "0.1");
        assert_eq!(parse_decimal_str("1e3").unwrap(), Decimal::from(1000));
    }

    #[test]
    fn non_numbers_are_rejected() {
        for bad in [
            json!("abc"),
            json!(""),
            json!(null),
            json!(true),
            json!("NaN"),
            json!("1_000"),
            json!([1]),
        ] {
            assert_eq!(
                parse_decimal_json(&bad),
                Err(AmountError::NotANumber),
                "{bad}"
            );
        }
        assert_eq!(parse_decimal_str("1e20"), Err(AmountError::TooLarge));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_half_away(decimal("2.345"), 2).to_string(), "2.35");
        assert_eq!(round_half_away(decimal("2.344"), 2).to_string(), "2.34");
        assert_eq!(round_half_away(decimal("-2.345"), 2).to_string(), "-2.35");
        assert_eq!(round_half_away(decimal("0.5"), 0).to_string(), "1");
        assert_eq!(round_half_away(decimal("2.5"), 0).to_string(), "3");
        assert_eq!(round_half_away(decimal("7"), 2).to_string(), "7.00");
    }

    #[test]
    fn round_up_never_underpays() {
        assert_eq!(
            round_up(decimal("0.003105201"), 8).to_string(),
            "0.00310521"
        );
        assert_eq!(round_up(decimal("0.00310520"), 8).to_string(), "0.00310520");
        assert_eq!(round_up(decimal("1.0000001"), 6).to_string(), "1.000001");
    }

    #[test]
    fn formatting_uses_the_currency_exponent() {
        assert_eq!(format_amount(decimal("220"), 2), "220.00");
        assert_eq!(format_amount(decimal("1500"), 0), "1500");
        assert_eq!(format_amount(decimal("0.1"), 8), "0.10000000");
    }

    #[test]
    fn scale_check_ignores_trailing_zeros() {
        assert!(check_scale(decimal("1.500"), 2).is_ok());
        assert_eq!(
            check_scale(decimal("1.505"), 2),
            Err(AmountError::TooManyDecimals(2))
        );
    }
}
