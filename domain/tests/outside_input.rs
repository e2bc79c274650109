//! Property tests over every parser of outside input: whatever arrives (JSON payloads, amounts,
//! extended public keys, addresses, exchange-rate answers, signature headers, API keys, dates),
//! the answer is a value or an error, never a panic. (Chain RPC answers: src/detect/tests.rs.)

use invoices_domain::addresses::{scheme_for_asset, Network};
use invoices_domain::{apikey, invoice, money, rates, signing, validate};
use proptest::prelude::*;
use serde_json::{json, Value};

/// JSON values of any shape, a few levels deep, with the keys the payloads use.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[0-9]{1,30}(\\.[0-9]{1,30})?".prop_map(|s| serde_json::from_str(&s).unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        "-?[0-9]{1,40}\\.?[0-9]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        let key = prop_oneof![
            Just("lines".to_string()),
            Just("items".to_string()),
            Just("quantity".to_string()),
            Just("unit_price".to_string()),
            Just("description".to_string()),
            Just("currency".to_string()),
            Just("tax_rate".to_string()),
            Just("discount_amount".to_string()),
            Just("due_date".to_string()),
            Just("customer_email".to_string()),
            Just("metadata".to_string()),
            ".{0,10}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invoice_payloads(payload in any_json()) {
        let _ = invoice::prepare(&payload);
        let _ = invoice::prepare_merchant(&payload);
    }

    #[test]
    fn invoice_lines(lines in prop::collection::vec(any_json(), 0..5), currency in "[A-Z]{3}|.{0,5}") {
        let _ = invoice::prepare(&json!({"lines": lines, "currency": currency}));
    }

    #[test]
    fn amounts(text in ".{0,60}", value in any_json()) {
        let _ = money::parse_decimal_str(&text);
        let _ = money::parse_decimal_json(&value);
    }

    #[test]
    fn extended_public_keys_and_addresses(
        key in "[xyzvtu]pub[1-9A-HJ-NP-Za-km-z]{0,120}|.{0,120}",
        address in "0x[0-9a-fA-F]{0,42}|bc1[0-9a-z]{0,70}|bcrt1[0-9a-z]{0,70}|kaspa:[0-9a-z]{0,70}|.{0,80}",
        index in any::<u32>(),
    ) {
        for asset in ["BTC", "ETH", "USDC", "KAS"] {
            let scheme = scheme_for_asset(asset).unwrap();
            for network in [Network::Mainnet, Network::Testnet, Network::Regtest, Network::Devnet] {
                let _ = scheme.derive(&key, network, index);
                let _ = scheme.validate(&address, network);
            }
        }
    }

    #[test]
    fn exchange_rate_answers(body in ".{0,300}", json_body in any_json()) {
        for format in ["coingecko", "kraken", "coinbase", "unknown"] {
            for (asset, currency) in [("BTC", "USD"), ("ETH", "EUR"), ("KAS", "JPY")] {
                let _ = rates::parse(format, &body, asset, currency);
                let _ = rates::parse(format, &json_body.to_string(), asset, currency);
            }
        }
    }

    #[test]
    fn signature_headers(
        header in "t=[0-9]{0,12},v1=[0-9a-f]{0,64}|[0-9a-f]{64}|.{0,120}",
        body in ".{0,100}",
        now in any::<i64>(),
        tolerance in any::<i64>(),
    ) {
        let _ = signing::verify(body.as_bytes(), &header, "whsec_test", tolerance, now);
    }

    #[test]
    fn api_keys_and_scopes(key in ".{0,200}", scopes in prop::collection::vec(".{0,12}", 0..6), name in ".{0,300}") {
        let _ = apikey::signature_is_valid("secret", &key);
        let _ = apikey::parse_scopes(&scopes);
        let _ = apikey::check_name(&name);
    }

    #[test]
    fn small_formats(s in ".{0,120}") {
        let _ = validate::is_email(&s);
        let _ = validate::is_http_url(&s);
        let _ = validate::parse_iso_date(&s);
        let _ = validate::is_invoice_prefix(&s);
    }
}
