//! Payment URIs for the deposit QR code: BIP21 (`bitcoin:`), EIP-681 (`ethereum:`, native value
//! in wei or an ERC-20 `transfer` in the token's base units) and `kaspa:`. A wallet that scans
//! one pays the exact amount to the exact address.

use super::PaymentChain;
use rust_decimal::Decimal;

pub struct PaymentRequest<'a> {
    pub asset: &'a str,
    pub address: &'a str,
    pub amount: Option<Decimal>,
    pub chain: PaymentChain,
    pub label: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// The URI, or `None` for an asset this module does not know.
pub fn payment_uri(req: &PaymentRequest) -> Option<String> {
    let amount = req.amount.filter(|a| *a > Decimal::ZERO);
    match req.asset {
        "BTC" => {
            let mut params = Vec::new();
            if let Some(a) = amount {
                params.push(format!("amount={}", a.normalize()));
            }
            if let Some(l) = req.label.filter(|l| !l.is_empty()) {
                params.push(format!("label={}", pct(l)));
            }
            if let Some(m) = req.message.filter(|m| !m.is_empty()) {
                params.push(format!("message={}", pct(m)));
            }
            Some(with_query(format!("bitcoin:{}", req.address), &params))
        }
        "ETH" => {
            let mut uri = format!("ethereum:{}", req.address);
            if let Some(id) = req.chain.chain_id {
                uri.push_str(&format!("@{id}"));
            }
            let params: Vec<String> = amount
                .and_then(|a| base_units(a, 18))
                .map(|wei| vec![format!("value={wei}")])
                .unwrap_or_default();
            Some(with_query(uri, &params))
        }
        "USDC" => {
            let Some(contract) = req.chain.token_contract.as_deref() else {
                // without the token contract there is no transfer to describe: the bare address
                return Some(req.address.to_string());
            };
            let mut uri = format!("ethereum:{contract}");
            if let Some(id) = req.chain.chain_id {
                uri.push_str(&format!("@{id}"));
            }
            uri.push_str("/transfer");
            let mut params = vec![format!("address={}", req.address)];
            if let Some(units) = amount.and_then(|a| base_units(a, req.chain.token_decimals.unwrap_or(6))) {
                params.push(format!("uint256={units}"));
            }
            Some(with_query(uri, &params))
        }
        "KAS" => {
            let base = if req.address.contains(':') {
                req.address.to_string()
            } else {
                format!("kaspa:{}", req.address)
            };
            let params: Vec<String> = amount.map(|a| vec![format!("amount={}", a.normalize())]).unwrap_or_default();
            Some(with_query(base, &params))
        }
        _ => None,
    }
}

fn with_query(base: String, params: &[String]) -> String {
    if params.is_empty() {
        base
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// `amount` × 10^decimals as an integer string; `None` if that is not a whole number.
pub fn base_units(amount: Decimal, decimals: u32) -> Option<String> {
    let mut v = amount.normalize();
    let scale = v.scale();
    if scale > decimals {
        return None;
    }
    // mantissa × 10^(decimals − scale), in text so 18 decimals never overflow
    v.set_scale(0).ok()?;
    let mut text = v.to_string();
    text.extend(std::iter::repeat_n('0', (decimals - scale) as usize));
    let trimmed = text.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0".into() } else { trimmed.into() })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn req<'a>(asset: &'a str, address: &'a str, amount: &str, chain: PaymentChain) -> PaymentRequest<'a> {
        PaymentRequest {
            asset,
            address,
            amount: Some(Decimal::from_str(amount).unwrap()),
            chain,
            label: Some("Acme & Co"),
            message: Some("INV-0001"),
        }
    }

    #[test]
    fn bip21() {
        let uri = payment_uri(&req("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "0.00150000", PaymentChain::default())).unwrap();
        assert_eq!(uri, "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.0015&label=Acme%20%26%20Co&message=INV-0001");
    }

    #[test]
    fn eip681_native_and_token() {
        let base = PaymentChain { chain_id: Some(8453), ..Default::default() };
        let eth = payment_uri(&req("ETH", "0xAbC", "0.4", base.clone())).unwrap();
        assert_eq!(eth, "ethereum:0xAbC@8453?value=400000000000000000");
        let usdc = PaymentChain {
            token_contract: Some("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into()),
            token_decimals: Some(6),
            ..base
        };
        let uri = payment_uri(&req("USDC", "0xAbC", "12.5", usdc)).unwrap();
        assert_eq!(uri, "ethereum:0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913@8453/transfer?address=0xAbC&uint256=12500000");
        // no contract known: the bare address
        assert_eq!(payment_uri(&req("USDC", "0xAbC", "1", PaymentChain::default())).unwrap(), "0xAbC");
    }

    #[test]
    fn kaspa() {
        let uri = payment_uri(&req("KAS", "kaspa:qqkqkzjvr7zwxxmjxjkmxxdwju9kjs6e9u82uh59z07vgaks6gg62v8707g73", "1.5", PaymentChain::default())).unwrap();
        assert_eq!(uri, "kaspa:qqkqkzjvr7zwxxmjxjkmxxdwju9kjs6e9u82uh59z07vgaks6gg62v8707g73?amount=1.5");
    }

    #[test]
    fn base_unit_conversion() {
        assert_eq!(base_units(Decimal::from_str("1").unwrap(), 18).unwrap(), "1000000000000000000");
        assert_eq!(base_units(Decimal::from_str("0.000000000000000001").unwrap(), 18).unwrap(), "1");
        assert_eq!(base_units(Decimal::from_str("1.2345678").unwrap(), 6), None);
        assert_eq!(base_units(Decimal::from_str("0").unwrap(), 6).unwrap(), "0");
        assert_eq!(base_units(Decimal::from_str("79228162514.264337593543950335").unwrap(), 18).unwrap(), "79228162514264337593543950335");
    }
}
