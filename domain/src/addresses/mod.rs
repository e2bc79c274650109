//! Watch-only addresses: from an account-level extended public key (never a private key) to
//! the deposit address at receive index `i` (`<account>/0/i`), one module per chain family
//! behind one trait.
//!
//! | chain   | account path           | key                    | address                                |
//! |---------|------------------------|------------------------|----------------------------------------|
//! | Bitcoin | `m/84'/0'/0'` (BIP84)  | compressed public key  | P2WPKH bech32 `bc1q…` / `tb1q…` / `bcrt1q…` |
//! | EVM     | `m/44'/60'/0'` (BIP44) | uncompressed public key| keccak-256, EIP-55 checksummed `0x…`   |
//! | Kaspa   | `m/44'/111111'/0'`     | Schnorr x-only key     | `kaspa:` / `kaspatest:` / `kaspadev:` / `kaspasim:` |

pub mod bitcoin;
pub mod evm;
pub mod kaspa;
pub mod xpub;

use crate::error::{DomainError, ErrorKind};

/// Which network an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Mainnet,
    Testnet,
    Regtest,
    /// Kaspa's devnet / simnet
    Devnet,
    Simnet,
}

impl Network {
    pub fn parse(s: &str) -> Result<Network, DomainError> {
        Ok(match s {
            "mainnet" => Network::Mainnet,
            "testnet" => Network::Testnet,
            "regtest" => Network::Regtest,
            "devnet" => Network::Devnet,
            "simnet" => Network::Simnet,
            other => {
                return Err(DomainError::new(
                    ErrorKind::Validation,
                    format!("unknown network {other:?}: use mainnet, testnet, regtest, devnet or simnet"),
                ))
            }
        })
    }
}

/// An address family: derive from an account key, and check a bring-your-own address.
pub trait AddressScheme {
    /// The receive address at `index` (`<account>/0/<index>`) of an account-level extended
    /// public key.
    fn derive(&self, account_key: &str, network: Network, index: u32) -> Result<String, DomainError>;
    /// A bring-your-own address, validated (and in its canonical form).
    fn validate(&self, address: &str, network: Network) -> Result<String, DomainError>;
}

/// The scheme of an asset: BTC on Bitcoin, ETH and USDC on EVM chains, KAS on Kaspa.
pub fn scheme_for_asset(asset: &str) -> Option<&'static dyn AddressScheme> {
    match asset {
        "BTC" => Some(&bitcoin::Bitcoin),
        "ETH" | "USDC" => Some(&evm::Evm),
        "KAS" => Some(&kaspa::Kaspa),
        _ => None,
    }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> DomainError {
    let message = message.into();
    let mut errors = crate::error::FieldErrors::new();
    errors.add(field, message);
    errors.finish("wallet").unwrap_err()
}
