//! Exchange rates: the public response formats of the sources the worker polls, and the median.
//!
//! A rate is the price of one unit of `asset` in `currency` (BTC/USD 67187.33). The formats are
//! the real ones of CoinGecko `simple/price`, Kraken `Ticker` and Coinbase `prices/<pair>/spot`;
//! anything else in a body is an error, never a rate.

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// The response formats the worker understands.
pub const FORMATS: [&str; 3] = ["coingecko", "kraken", "coinbase"];

/// CoinGecko's coin id for an asset (`ids=` of `simple/price`).
pub fn coingecko_id(asset: &str) -> Option<&'static str> {
    Some(match asset {
        "BTC" => "bitcoin",
        "ETH" => "ethereum",
        "USDC" => "usd-coin",
        "KAS" => "kaspa",
        _ => return None,
    })
}

/// The URL of a source for a pair, given the API's base URL (tests point it at a local server).
pub fn source_url(format: &str, base: &str, asset: &str, currency: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    Some(match format {
        "coingecko" => format!(
            "{base}/api/v3/simple/price?ids={}&vs_currencies={}",
            coingecko_id(asset)?,
            currency.to_lowercase()
        ),
        "kraken" => {
            let a = if asset == "BTC" { "XBT" } else { asset };
            format!("{base}/0/public/Ticker?pair={a}{currency}")
        }
        "coinbase" => format!("{base}/v2/prices/{asset}-{currency}/spot"),
        _ => return None,
    })
}

fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        // arbitrary_precision keeps the number's text: parse it exactly, never through f64
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .ok(),
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        _ => None,
    }
}

/// Extracts the rate of `asset` in `currency` from a response body in `format`.
pub fn parse(format: &str, body: &str, asset: &str, currency: &str) -> Result<Decimal, String> {
    let json: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let rate = match format {
        // {"bitcoin": {"usd": 67187.33}}
        "coingecko" => {
            let id = coingecko_id(asset).ok_or_else(|| format!("CoinGecko has no id for {asset}"))?;
            let v = json
                .get(id)
                .and_then(|c| c.get(currency.to_lowercase()))
                .ok_or_else(|| format!("no {id}.{} in the response", currency.to_lowercase()))?;
            decimal_of(v).ok_or("the price is not a number")?
        }
        // {"error": [], "result": {"XXBTZUSD": {"c": ["67187.30000", "0.001"], ...}}}
        "kraken" => {
            if let Some(errors) = json.get("error").and_then(Value::as_array) {
                if !errors.is_empty() {
                    return Err(format!("Kraken error: {}", Value::Array(errors.clone())));
                }
            }
            let result = json.get("result").and_then(Value::as_object).ok_or("no result object")?;
            if result.len() != 1 {
                return Err(format!("expected one pair in result, found {}", result.len()));
            }
            let pair = result.values().next().expect("one pair");
            let last = pair.get("c").and_then(|c| c.get(0)).ok_or("no last trade price (c[0])")?;
            decimal_of(last).ok_or("the last trade price is not a number")?
        }
        // {"data": {"amount": "67187.33", "base": "BTC", "currency": "USD"}}
        "coinbase" => {
            let data = json.get("data").ok_or("no data object")?;
            let base = data.get("base").and_then(Value::as_str).unwrap_or(asset);
            let quote = data.get("currency").and_then(Value::as_str).unwrap_or(currency);
            if base != asset || quote != currency {
                return Err(format!("the response is for {base}-{quote}, not {asset}-{currency}"));
            }
            decimal_of(data.get("amount").ok_or("no data.amount")?).ok_or("data.amount is not a number")?
        }
        other => return Err(format!("unknown rate source format {other:?}")),
    };
    if rate <= Decimal::ZERO {
        return Err(format!("the rate must be positive, got {rate}"));
    }
    Ok(rate.normalize())
}

/// The median of the fresh rates (the mean of the middle two for an even count); None if empty.
pub fn median(rates: &[Decimal]) -> Option<Decimal> {
    let mut v: Vec<Decimal> = rates.to_vec();
    v.sort();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(((v[n / 2 - 1] + v[n / 2]) / Decimal::TWO).normalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn coingecko_simple_price() {
        let body = r#"{"bitcoin":{"usd":67187.33}}"#;
        assert_eq!(parse("coingecko", body, "BTC", "USD").unwrap(), d("67187.33"));
        let body = r#"{"kaspa":{"eur":0.1234567891234}}"#;
        assert_eq!(parse("coingecko", body, "KAS", "EUR").unwrap(), d("0.1234567891234"));
        assert!(parse("coingecko", r#"{"bitcoin":{"eur":1}}"#, "BTC", "USD").is_err());
    }

    #[test]
    fn kraken_ticker_uses_the_last_trade() {
        let body = r#"{"error":[],"result":{"XXBTZUSD":{"a":["67190.00000","1","1.000"],"b":["67189.90000","2","2.000"],"c":["67187.30000","0.00100000"],"v":["1","2"],"p":["1","2"],"t":[1,2],"l":["1","2"],"h":["1","2"],"o":"67000.0"}}}"#;
        assert_eq!(parse("kraken", body, "BTC", "USD").unwrap(), d("67187.3"));
        let err = parse("kraken", r#"{"error":["EQuery:Unknown asset pair"]}"#, "BTC", "USD").unwrap_err();
        assert!(err.contains("Unknown asset pair"), "{err}");
    }

    #[test]
    fn coinbase_spot_checks_the_pair() {
        let body = r#"{"data":{"amount":"3456.78","base":"ETH","currency":"USD"}}"#;
        assert_eq!(parse("coinbase", body, "ETH", "USD").unwrap(), d("3456.78"));
        assert!(parse("coinbase", body, "BTC", "USD").is_err());
    }

    #[test]
    fn garbage_is_an_error_never_a_rate() {
        for body in ["", "<html>502 Bad Gateway</html>", "null", r#"{"bitcoin":{"usd":"abc"}}"#,
                     r#"{"bitcoin":{"usd":-1}}"#, r#"{"bitcoin":{"usd":0}}"#] {
            assert!(parse("coingecko", body, "BTC", "USD").is_err(), "{body}");
        }
        assert!(parse("nope", "{}", "BTC", "USD").is_err());
    }

    #[test]
    fn median_of_three_and_of_two() {
        assert_eq!(median(&[d("67200"), d("67000"), d("67100")]), Some(d("67100")));
        assert_eq!(median(&[d("1.5"), d("2.5")]), Some(d("2")));
        assert_eq!(median(&[d("7")]), Some(d("7")));
        assert_eq!(median(&[]), None);
        // one wild source cannot move the median far
        assert_eq!(median(&[d("67000"), d("67100"), d("1")]), Some(d("67000")));
    }

    #[test]
    fn urls_follow_each_api() {
        assert_eq!(source_url("coingecko", "https://api.coingecko.com/", "BTC", "USD").unwrap(),
                   "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&vs_currencies=usd");
        assert_eq!(source_url("kraken", "https://api.kraken.com", "BTC", "USD").unwrap(),
                   "https://api.kraken.com/0/public/Ticker?pair=XBTUSD");
        assert_eq!(source_url("coinbase", "https://api.coinbase.com", "ETH", "EUR").unwrap(),
                   "https://api.coinbase.com/v2/prices/ETH-EUR/spot");
    }
}
