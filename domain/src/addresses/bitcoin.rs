//! Bitcoin: BIP84 native SegWit. P2WPKH program = RIPEMD-160(SHA-256(compressed key)), bech32
//! with HRP `bc` (mainnet), `tb` (testnet) or `bcrt` (regtest).

use super::xpub::AccountKey;
use super::{invalid, AddressScheme, Network};
use crate::error::DomainError;
use bech32::{hrp, segwit, Hrp};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

pub struct Bitcoin;

fn hrp_of(network: Network) -> Result<Hrp, DomainError> {
    Ok(match network {
        Network::Mainnet => hrp::BC,
        Network::Testnet => hrp::TB,
        Network::Regtest => hrp::BCRT,
        other => return Err(invalid("network", format!("Bitcoin has no {other:?} network"))),
    })
}

/// The P2WPKH address of a compressed public key.
pub fn p2wpkh(compressed: &[u8], network: Network) -> Result<String, DomainError> {
    let program = Ripemd160::digest(Sha256::digest(compressed));
    segwit::encode(hrp_of(network)?, segwit::VERSION_0, &program)
        .map_err(|e| invalid("address", e.to_string()))
}

impl AddressScheme for Bitcoin {
    fn derive(&self, account_key: &str, network: Network, index: u32) -> Result<String, DomainError> {
        let key = AccountKey::parse(account_key, &["zpub", "vpub", "xpub", "tpub"])?;
        key.check_network(network)?;
        let public = key.receive_public_key(index)?;
        p2wpkh(public.to_sec1_bytes().as_ref(), network)
    }

    fn validate(&self, address: &str, network: Network) -> Result<String, DomainError> {
        let address = address.trim();
        let (hrp, version, program) =
            segwit::decode(address).map_err(|e| invalid("address", format!("is not a bech32 address ({e})")))?;
        if hrp != hrp_of(network)? {
            return Err(invalid("address", format!("is for {hrp}, not this wallet's network")));
        }
        if version != segwit::VERSION_0 || program.len() != 20 {
            return Err(invalid("address", "must be a native SegWit P2WPKH address (bc1q…)"));
        }
        Ok(address.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // bitcoin/bips bip-0084.mediawiki, "Test vectors" (account 0 of the "abandon … about" seed)
    const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

    #[test]
    fn bip84_receive_addresses_from_the_account_zpub() {
        assert_eq!(Bitcoin.derive(ZPUB, Network::Mainnet, 0).unwrap(), "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
        assert_eq!(Bitcoin.derive(ZPUB, Network::Mainnet, 1).unwrap(), "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g");
    }

    #[test]
    fn bip84_public_keys_give_their_addresses() {
        let pk = hex::decode("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c").unwrap();
        assert_eq!(p2wpkh(&pk, Network::Mainnet).unwrap(), "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
        // first change address m/84'/0'/0'/1/0
        let pk = hex::decode("03025324888e429ab8e3dbaf1f7802648b9cd01e9b418485c5fa4c1b9b5700e1a6").unwrap();
        assert_eq!(p2wpkh(&pk, Network::Mainnet).unwrap(), "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el");
    }

    #[test]
    fn regtest_from_the_vpub() {
        // bip_utils test data, m/84'/1'/0' of the same seed (testnet and regtest share keys)
        let vpub = "vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2JHRPAgjAvtbBrf8ZhDYe2jWAqvZVnsc";
        assert_eq!(Bitcoin.derive(vpub, Network::Regtest, 0).unwrap(), "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk");
        assert_eq!(Bitcoin.derive(vpub, Network::Regtest, 4).unwrap(), "bcrt1q677973lw0w796gttpy52f296jqaaksz0kadvlr");
    }

    #[test]
    fn keys_of_the_wrong_network_or_private_keys_are_refused() {
        assert!(Bitcoin.derive(ZPUB, Network::Regtest, 0).is_err());
        let e = Bitcoin
            .derive("zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJA9iefm1yYNZKEm7z6qUWCroSQnE", Network::Mainnet, 0)
            .unwrap_err();
        assert!(e.message.contains("private key"), "{}", e.message);
        assert!(Bitcoin.derive("zpub-not-base58", Network::Mainnet, 0).is_err());
        assert!(Bitcoin.derive(ZPUB, Network::Mainnet, 1 << 31).is_err());
    }

    #[test]
    fn bring_your_own_addresses() {
        assert_eq!(Bitcoin.validate("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", Network::Mainnet).unwrap(),
                   "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
        assert!(Bitcoin.validate("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv", Network::Mainnet).is_err());
        assert!(Bitcoin.validate("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", Network::Regtest).is_err());
    }
}
