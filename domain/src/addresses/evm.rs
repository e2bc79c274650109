//! EVM chains (ETH, and ERC-20 tokens such as USDC on Base): BIP44 `m/44'/60'/0'/0/i`; the
//! address is the last 20 bytes of Keccak-256 of the uncompressed public key, EIP-55 checksummed.

use super::xpub::AccountKey;
use super::{invalid, AddressScheme, Network};
use crate::error::DomainError;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use sha3::{Digest, Keccak256};

pub struct Evm;

/// EIP-55: hex letters upper-cased where the Keccak-256 of the lower-case address has a
/// nibble >= 8.
pub fn checksum(address20: &[u8]) -> String {
    let lower = hex::encode(address20);
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

/// The EIP-55 address of a secp256k1 public key.
pub fn address_of(public: &k256::PublicKey) -> String {
    let uncompressed = public.to_encoded_point(false);
    let hash = Keccak256::digest(&uncompressed.as_bytes()[1..]);
    checksum(&hash[12..])
}

impl AddressScheme for Evm {
    fn derive(&self, account_key: &str, _network: Network, index: u32) -> Result<String, DomainError> {
        // EVM networks share one address format; the xpub carries no network
        let key = AccountKey::parse(account_key, &["xpub"])?;
        Ok(address_of(&key.receive_public_key(index)?))
    }

    /// Kibble's bring-your-own wallet: the address must carry its EIP-55 checksum.
    fn validate(&self, address: &str, _network: Network) -> Result<String, DomainError> {
        let address = address.trim();
        let hex_part = address
            .strip_prefix("0x")
            .ok_or_else(|| invalid("address", "must start with 0x"))?;
        let bytes = hex::decode(hex_part)
            .ok()
            .filter(|b| b.len() == 20)
            .ok_or_else(|| invalid("address", "must be 0x followed by 40 hex digits"))?;
        let expected = checksum(&bytes);
        if expected != address {
            return Err(invalid(
                "address",
                format!("fails its EIP-55 checksum (expected {expected}); copy it from the wallet unchanged"),
            ));
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ethereum/ERCs ERCS/erc-55.md: every example is its own checksummed form
    const EIP55: [&str; 8] = [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_examples_validate_and_round_trip() {
        for a in EIP55 {
            assert_eq!(Evm.validate(a, Network::Mainnet).unwrap(), a);
            assert_eq!(checksum(&hex::decode(&a[2..]).unwrap()), a);
        }
    }

    #[test]
    fn a_wrong_case_fails_the_checksum() {
        assert!(Evm.validate("0xd1220a0cf47c7b9be7a2e6ba89f429762e7b9adb", Network::Mainnet).is_err());
        assert!(Evm.validate("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d35", Network::Mainnet).is_err());
        assert!(Evm.validate("fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", Network::Mainnet).is_err());
    }

    #[test]
    fn bip44_addresses_from_the_account_xpub() {
        // m/44'/60'/0' of the "abandon … about" seed (bip_utils test data); address 0 is the
        // widely published 0x9858EfFD…
        let xpub = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";
        assert_eq!(Evm.derive(xpub, Network::Mainnet, 0).unwrap(), "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");
        assert_eq!(Evm.derive(xpub, Network::Mainnet, 1).unwrap(), "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0");
        assert_eq!(Evm.derive(xpub, Network::Mainnet, 4).unwrap(), "0x51cA8ff9f1C0a99f88E86B8112eA3237F55374cA");
    }
}
