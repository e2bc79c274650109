//! Kaspa: `m/44'/111111'/0'/0/i`; the address carries the Schnorr (BIP340) x-only public key,
//! version 0 (PubKey), encoded by rusty-kaspa's own `kaspa-addresses` crate with its checksum.

use super::xpub::AccountKey;
use super::{invalid, AddressScheme, Network};
use crate::error::DomainError;
use kaspa_addresses::{Address, Prefix, Version};

pub struct Kaspa;

fn prefix_of(network: Network) -> Prefix {
    match network {
        Network::Mainnet => Prefix::Mainnet,
        Network::Testnet => Prefix::Testnet,
        Network::Devnet => Prefix::Devnet,
        Network::Simnet | Network::Regtest => Prefix::Simnet,
    }
}

/// The address of a 32-byte x-only public key.
pub fn address_of_x_only(x_only: &[u8], network: Network) -> String {
    Address::new(prefix_of(network), Version::PubKey, x_only).to_string()
}

impl AddressScheme for Kaspa {
    fn derive(&self, account_key: &str, network: Network, index: u32) -> Result<String, DomainError> {
        let key = AccountKey::parse(account_key, &["kpub", "ktub", "xpub", "tpub"])?;
        key.check_network(if network == Network::Mainnet { Network::Mainnet } else { Network::Testnet })?;
        let compressed = key.receive_public_key(index)?.to_sec1_bytes();
        Ok(address_of_x_only(&compressed[1..33], network))
    }

    fn validate(&self, address: &str, network: Network) -> Result<String, DomainError> {
        let parsed = Address::try_from(address.trim())
            .map_err(|e| invalid("address", format!("is not a Kaspa address ({e})")))?;
        if parsed.prefix != prefix_of(network) {
            return Err(invalid("address", format!("is for {}, not this wallet's network", parsed.prefix)));
        }
        Ok(parsed.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // rusty-kaspa crypto/addresses tests: payload <-> address
    #[test]
    fn encoding_vectors() {
        assert_eq!(address_of_x_only(&[0u8; 32], Network::Mainnet),
                   "kaspa:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqkx9awp4e");
        assert_eq!(address_of_x_only(&[0u8; 32], Network::Testnet),
                   "kaspatest:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhqrxplya");
        let payload = hex::decode("5fff3c4da18f45adcdd499e44611e9fff148ba69db3c4ea2ddd955fc46a59522").unwrap();
        assert_eq!(address_of_x_only(&payload, Network::Mainnet),
                   "kaspa:qp0l70zd5x85ttwd6jv7g3s3a8llzj96d8dncn4zmhv4tlzx5k2jyqh70xmfj");
        // kaspad util/address_test.go, mainnet p2pk
        let payload = hex::decode("e34cce70c86373273efcc54ce7d2a491bb4a0e84e34cce70c86373273efce34c").unwrap();
        assert_eq!(address_of_x_only(&payload, Network::Mainnet),
                   "kaspa:qr35ennsep3hxfe7lnz5ee7j5jgmkjswsn35ennsep3hxfe7ln35cdv0dy335");
    }

    #[test]
    fn ktub_account_key_gives_the_testnet_receive_address() {
        // rusty-kaspa wallet/keys/src/derivation/gen1/hd.rs, address_test_by_ktrv: receive index 1
        let ktub = "ktub23beJLczbxoS4emYHxm5H2rPnXJPGTwjNLAc8JyjHnSFLPMJBj5h3U8oWbn1x1jayZRov6uhvGd4zUGrWH6PkYZMWsykUsQWYqjbLnHrzUE";
        assert_eq!(Kaspa.derive(ktub, Network::Testnet, 1).unwrap(),
                   "kaspatest:qrc2959g0pqda53glnfd238cdnmk24zxzkj8n5x83rkktx4h73dkc4ave6wyg");
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(Kaspa.validate("kaspa:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqkx9awp4l", Network::Mainnet).is_err());
        assert!(Kaspa.validate("kaspatest:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhqrxplya", Network::Mainnet).is_err());
        assert_eq!(Kaspa.validate("kaspa:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqkx9awp4e", Network::Mainnet).unwrap(),
                   "kaspa:qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqkx9awp4e");
    }
}
