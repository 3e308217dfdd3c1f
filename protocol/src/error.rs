//! Errors of decoding and verifying what peers send.

use std::convert::Infallible;

use libp2p_identity::PeerId;

/// Why bytes did not decode into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// More bytes than the message type's documented cap; nothing was parsed.
    #[error("message of {len} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The type's cap.
        max: usize,
    },
    /// Not valid DAG-CBOR of the expected shape.
    #[error("invalid DAG-CBOR")]
    Cbor(#[source] serde_ipld_dagcbor::DecodeError<Infallible>),
    /// Valid, but not in canonical form: re-encoding gives other bytes. Ids
    /// and signatures are over canonical bytes, so these are refused.
    #[error("DAG-CBOR is not in canonical form")]
    NonCanonical,
}

/// Why a signed receipt is not trustworthy.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The worker's PeerId does not embed an ed25519 public key.
    #[error("worker {0} does not have an ed25519 key")]
    UnsupportedKey(PeerId),
    /// The signature does not match the receipt and the worker's key.
    #[error("signature does not match the receipt and worker {0}")]
    BadSignature(PeerId),
    /// Signed by someone other than the expected worker (the caller knows
    /// whom it expected; one PeerId keeps this error small).
    #[error("receipt is signed by {0}, not by the expected worker")]
    WrongSigner(PeerId),
}

/// Why a receipt could not be signed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Only ed25519 identity keys sign receipts.
    #[error("receipts are signed with ed25519 keys only")]
    NotEd25519,
    /// The key is not the receipt's `worker`.
    #[error("this key cannot sign a receipt naming worker {0}")]
    KeyMismatch(PeerId),
}
