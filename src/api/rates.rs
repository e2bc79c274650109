//! Rates and quotes (see `sql/25_rates_quotes.sql`): the exact arithmetic lives in the domain.

use crate::domain::{money, quote, rates};
use crate::error::OrRaise;
use pgrx::prelude::*;
use pgrx::AnyNumeric;
use rust_decimal::Decimal;
use std::str::FromStr;

fn to_decimal(n: &AnyNumeric) -> Decimal {
    let s = n.to_string();
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .unwrap_or_else(|_| error!("numeric {s} is out of range for an amount"))
}

fn to_numeric(d: Decimal) -> AnyNumeric {
    AnyNumeric::from_str(&d.to_string()).unwrap_or_else(|e| error!("{e}"))
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// The median of the given rates (mean of the middle two for an even count); null if none.
    #[pg_extern(immutable, parallel_safe)]
    pub fn median_rate(rates: Option<Vec<Option<AnyNumeric>>>) -> Option<AnyNumeric> {
        let v: Vec<Decimal> = rates.unwrap_or_default().iter().flatten().map(to_decimal).collect();
        rates::median(&v).map(to_numeric)
    }

    /// A quote's crypto amount: total × (1 + markup/100) ÷ rate, rounded up to `exponent`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn quote_asset_amount(
        total: AnyNumeric,
        rate: Option<AnyNumeric>,
        markup_percent: AnyNumeric,
        exponent: i32,
    ) -> AnyNumeric {
        let amount = quote::asset_amount(
            to_decimal(&total),
            rate.as_ref().map(to_decimal),
            to_decimal(&markup_percent),
            exponent.clamp(0, 18) as u32,
        )
        .or_raise();
        to_numeric(money::round_up(amount, exponent.clamp(0, 18) as u32))
    }

    /// The URL of a rate source of `format` for a pair; `base` defaults to the public API.
    #[pg_extern(immutable, parallel_safe)]
    pub fn rate_source_url(format: &str, base: Option<&str>, asset: &str, currency: &str) -> Option<String> {
        let base = base.unwrap_or(match format {
            "coingecko" => "https://api.coingecko.com",
            "kraken" => "https://api.kraken.com",
            _ => "https://api.coinbase.com",
        });
        rates::source_url(format, base, asset, currency)
    }
}
