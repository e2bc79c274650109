//! Account-level extended public keys in any of their version prefixes (xpub, zpub, tpub,
//! vpub for Bitcoin; kpub, ktub for Kaspa), derived non-hardened with the `bip32` crate.

use super::{invalid, Network};
use crate::error::DomainError;
use bip32::{ChildNumber, XPub};
use std::str::FromStr;

/// An extended key's version bytes: what it says about the network and the intended scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub prefix: &'static str,
    pub bytes: [u8; 4],
    pub mainnet: bool,
}

pub const VERSIONS: [Version; 8] = [
    Version { prefix: "xpub", bytes: [0x04, 0x88, 0xb2, 0x1e], mainnet: true },
    Version { prefix: "ypub", bytes: [0x04, 0x9d, 0x7c, 0xb2], mainnet: true },
    Version { prefix: "zpub", bytes: [0x04, 0xb2, 0x47, 0x46], mainnet: true },
    Version { prefix: "tpub", bytes: [0x04, 0x35, 0x87, 0xcf], mainnet: false },
    Version { prefix: "upub", bytes: [0x04, 0x4a, 0x52, 0x62], mainnet: false },
    Version { prefix: "vpub", bytes: [0x04, 0x5f, 0x1c, 0xf6], mainnet: false },
    Version { prefix: "kpub", bytes: [0x03, 0x8f, 0x33, 0x2e], mainnet: true },
    Version { prefix: "ktub", bytes: [0x03, 0x90, 0xa2, 0x41], mainnet: false },
];

/// Private-key versions, refused by name so nobody pastes one by mistake.
const PRIVATE: [&str; 8] = ["xprv", "yprv", "zprv", "tprv", "uprv", "vprv", "kprv", "ktrv"];

/// A parsed account key.
pub struct AccountKey {
    pub version: Version,
    key: XPub,
}

impl AccountKey {
    /// Parses `s`, accepting only the prefixes in `allowed`; refuses private keys outright.
    pub fn parse(s: &str, allowed: &[&str]) -> Result<AccountKey, DomainError> {
        let s = s.trim();
        if PRIVATE.iter().any(|p| s.starts_with(p)) {
            return Err(invalid(
                "xpub",
                "is a private key: give the account's extended PUBLIC key (watch-only, never a private key)",
            ));
        }
        let raw = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|e| invalid("xpub", format!("is not a base58check extended key ({e})")))?;
        if raw.len() != 78 {
            return Err(invalid("xpub", format!("has {} bytes, an extended key has 78", raw.len())));
        }
        let version = VERSIONS
            .iter()
            .copied()
            .find(|v| v.bytes == raw[0..4])
            .ok_or_else(|| invalid("xpub", "has unknown version bytes"))?;
        if !allowed.contains(&version.prefix) {
            return Err(invalid(
                "xpub",
                format!("a {} key does not fit this chain (use {})", version.prefix, allowed.join(", ")),
            ));
        }
        // Parse through the bip32 crate in its xpub form (the version only names the scheme).
        let mut as_xpub = raw.clone();
        as_xpub[0..4].copy_from_slice(&VERSIONS[0].bytes);
        let encoded = bs58::encode(as_xpub).with_check().into_string();
        let key = XPub::from_str(&encoded).map_err(|e| invalid("xpub", format!("is not a valid public key ({e})")))?;
        Ok(AccountKey { version, key })
    }

    /// Does the key's version fit `network`?
    pub fn check_network(&self, network: Network) -> Result<(), DomainError> {
        if self.version.mainnet != (network == Network::Mainnet) {
            return Err(invalid(
                "xpub",
                format!("a {} key is for {} but the wallet is on {:?}", self.version.prefix,
                        if self.version.mainnet { "mainnet" } else { "a test network" }, network),
            ));
        }
        Ok(())
    }

    /// The compressed (33-byte) public key at `<account>/0/<index>`.
    pub fn receive_public_key(&self, index: u32) -> Result<k256::PublicKey, DomainError> {
        let receive = ChildNumber::new(0, false).map_err(|e| invalid("index", e.to_string()))?;
        let child = ChildNumber::new(index, false)
            .map_err(|_| invalid("index", format!("{index} is not a non-hardened index (0 to 2^31-1)")))?;
        let key = self
            .key
            .derive_child(receive)
            .and_then(|k| k.derive_child(child))
            .map_err(|e| invalid("index", format!("cannot derive index {index}: {e}")))?;
        Ok(k256::PublicKey::from(*key.public_key()))
    }
}
