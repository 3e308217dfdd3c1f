//! Receipts: what a worker attests about a run, signed with its identity key.
//!
//! A [`SignedReceipt`] can only be made by [`SignedReceipt::sign`] or by
//! decoding bytes whose signature verifies; there is no way to hold one with
//! an empty or unchecked signature. The signature is ed25519 over
//! [`RECEIPT_DOMAIN`] followed by the receipt's canonical DAG-CBOR bytes, by
//! the key of the receipt's `worker` PeerId (an ed25519 PeerId embeds its
//! public key, so anyone can check it with the receipt alone).

use std::fmt;

use libp2p_identity::{KeyType, Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::cid::{self, Cid};
use crate::error::{DecodeError, SignError, VerifyError};
use crate::job::JobId;
use crate::wire::{self, MAX_RECEIPT};

/// Domain tag prefixed to the receipt bytes before signing, so a receipt
/// signature can never be replayed as a signature of anything else.
pub const RECEIPT_DOMAIN: &[u8] = b"phase-receipt-v1";

/// Multihash code of the identity hash, used by PeerIds of small keys.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// How a run ended: the one field a receipt's reader looks at first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// The guest exited (returned from `_start`/`run`, or called `exit`).
    Exited {
        /// Its exit code; 0 is success.
        code: i32,
    },
    /// The guest trapped: `unreachable`, out-of-bounds access, stack overflow…
    Trapped {
        /// What wasmtime said, one line.
        message: String,
    },
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock limit passed.
    TimedOut,
    /// The guest tried to grow memory past its limit and then failed.
    MemoryLimit,
    /// The guest tried to grow a table past its limit (or declared one
    /// larger) and then failed.
    TableLimit,
    /// The sandbox refused the module when instantiating it (too many
    /// instances, memories or tables, say): the guest never ran.
    Refused {
        /// Why, one line.
        message: String,
    },
    /// The guest wrote more than the output cap to stdout, stderr or `/output`.
    OutputLimit,
    /// The worker stopped (a crash, a restart) while the run was under
    /// way: it never ended, and its result package holds only a note
    /// saying so. Signed when the worker starts again, so that `status` and
    /// `receipt` tell the same story.
    Interrupted,
}

impl Status {
    /// Whether the guest exited with code 0.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Exited { code: 0 })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited { code } => write!(f, "exited with code {code}"),
            Status::Trapped { message } => write!(f, "trapped: {message}"),
            Status::OutOfFuel => f.write_str("ran out of fuel"),
            Status::TimedOut => f.write_str("timed out"),
            Status::MemoryLimit => f.write_str("memory limit reached"),
            Status::TableLimit => f.write_str("table limit reached"),
            Status::Refused { message } => write!(f, "refused at instantiation: {message}"),
            Status::OutputLimit => f.write_str("output limit reached"),
            Status::Interrupted => f.write_str("interrupted: the worker stopped while it ran"),
        }
    }
}

/// What a worker attests about one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The job (CID of its spec).
    pub job: JobId,
    /// The module that ran.
    #[serde(with = "crate::serde_helpers::cid")]
    pub module: Cid,
    /// stdin, if any.
    #[serde(with = "crate::serde_helpers::opt_cid")]
    pub stdin: Option<Cid>,
    /// The `/input` directory, if any.
    #[serde(with = "crate::serde_helpers::opt_cid")]
    pub input: Option<Cid>,
    /// The result package: a UnixFS directory of `stdout`, `stderr`, `output/`.
    #[serde(with = "crate::serde_helpers::cid")]
    pub result: Cid,
    /// How the run ended.
    pub status: Status,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// Wall time of the run in milliseconds (the run alone: compiling is
    /// in `compile_time_ms`).
    pub wall_time_ms: u64,
    /// Time the worker spent compiling the module for this run, in
    /// milliseconds; 0 (and left out of the encoding) when it had the
    /// module compiled already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compile_time_ms: u64,
    /// Peak linear memory in bytes.
    pub peak_memory: u64,
    /// The worker that ran the job and signs this receipt.
    pub worker: PeerId,
    /// The requester that submitted the job.
    pub requester: PeerId,
    /// Start of the run, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// End of the run, milliseconds since the Unix epoch.
    pub ended_at_ms: u64,
    /// Software that ran it, e.g. `phase-node/0.1.0 wasmtime/48.0.8`.
    pub runtime: String,
    /// What the run did to its guest state; left out of the encoding for a
    /// job that names no state and left the empty one as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateTransition>,
    /// What the run did over the network, for a job that had network
    /// access (`permissions.net`); left out of the encoding for every other.
    /// Such a run is not deterministic: another worker may well get another
    /// result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkUse>,
}

/// A run's use of the network, as its receipt says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkUse {
    /// Requests sent.
    pub requests: u64,
    /// Requests refused inside the guest: a host not allowed, or over the
    /// request cap.
    pub denied: u64,
    /// Body bytes sent.
    pub bytes_sent: u64,
    /// Body bytes received.
    pub bytes_received: u64,
}

/// A run's guest-state transition, as its receipt binds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTransition {
    /// The state it started from.
    #[serde(with = "crate::serde_helpers::cid")]
    pub before: Cid,
    /// The state it left (`before` unless it exited with code 0).
    #[serde(with = "crate::serde_helpers::cid")]
    pub after: Cid,
    /// Its log ([`crate::guest_state::log_block`]), if it kept entries.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_helpers::opt_cid"
    )]
    pub log: Option<Cid>,
    /// Fuel its `phase` calls cost (part of `fuel_consumed`).
    pub host_fuel: u64,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Receipt {
    /// The bytes the worker signs: domain tag, then canonical DAG-CBOR.
    fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = RECEIPT_DOMAIN.to_vec();
        bytes.extend_from_slice(&wire::to_cbor(self));
        bytes
    }
}

/// A receipt and the worker's signature over it, verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedReceipt {
    receipt: Receipt,
    #[serde(with = "crate::serde_helpers::bytes")]
    signature: Vec<u8>,
}

/// The unverified form, as decoded; becomes a [`SignedReceipt`] only by
/// verifying.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedReceipt {
    receipt: Receipt,
    #[serde(with = "crate::serde_helpers::bytes")]
    signature: Vec<u8>,
}

/// Why bytes are not a trustworthy signed receipt.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Not a signed receipt at all.
    #[error("not a signed receipt")]
    Decode(#[from] DecodeError),
    /// A signed receipt whose signature does not hold.
    #[error("receipt does not verify")]
    Verify(#[from] VerifyError),
}

impl SignedReceipt {
    /// Signs `receipt` with the worker's identity key.
    ///
    /// # Errors
    /// When the key is not ed25519 or is not the receipt's `worker`.
    pub fn sign(receipt: Receipt, key: &Keypair) -> Result<Self, SignError> {
        if key.key_type() != KeyType::Ed25519 {
            return Err(SignError::NotEd25519);
        }
        let signer = key.public().to_peer_id();
        if signer != receipt.worker {
            return Err(SignError::KeyMismatch(receipt.worker));
        }
        let signature = key
            .sign(&receipt.signing_bytes())
            .map_err(|_| SignError::NotEd25519)?;
        Ok(Self { receipt, signature })
    }

    /// Checks the signature again and returns the receipt.
    ///
    /// # Errors
    /// When the worker's key is not ed25519 or the signature does not match.
    pub fn verify(&self) -> Result<&Receipt, VerifyError> {
        let worker = self.receipt.worker;
        let key = signer_key(&worker)?;
        if key.verify(&self.receipt.signing_bytes(), &self.signature) {
            Ok(&self.receipt)
        } else {
            Err(VerifyError::BadSignature(worker))
        }
    }

    /// [`SignedReceipt::verify`], and that the signer is `expected`.
    ///
    /// # Errors
    /// As `verify`, or [`VerifyError::WrongSigner`].
    pub fn verify_signer(&self, expected: &PeerId) -> Result<&Receipt, VerifyError> {
        let receipt = self.verify()?;
        if receipt.worker == *expected {
            Ok(receipt)
        } else {
            Err(VerifyError::WrongSigner(receipt.worker))
        }
    }

    /// The receipt (its signature held when this value was made).
    #[must_use]
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The ed25519 signature.
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The exact bytes the worker signed: [`RECEIPT_DOMAIN`], then the
    /// receipt's canonical DAG-CBOR (for clients that check the signature
    /// themselves).
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.receipt.signing_bytes()
    }

    /// The worker's ed25519 public key (32 bytes), as its PeerId holds it.
    ///
    /// # Errors
    /// When the worker's PeerId holds no ed25519 key (a verified receipt's
    /// always does).
    pub fn worker_key(&self) -> Result<[u8; 32], VerifyError> {
        let key = signer_key(&self.receipt.worker)?;
        key.try_into_ed25519()
            .map(|k| k.to_bytes())
            .map_err(|_| VerifyError::UnsupportedKey(self.receipt.worker))
    }

    /// Canonical DAG-CBOR of the signed receipt: the bytes of its block.
    #[must_use]
    pub fn to_cbor(&self) -> Vec<u8> {
        wire::to_cbor(self)
    }

    /// The CID of the signed receipt's block.
    #[must_use]
    pub fn cid(&self) -> Cid {
        cid::cid_of(cid::DAG_CBOR, &self.to_cbor())
    }

    /// Decodes canonical DAG-CBOR (at most [`MAX_RECEIPT`] bytes) and verifies it.
    ///
    /// # Errors
    /// Malformed bytes, or a signature that does not hold.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, ReceiptError> {
        Ok(wire::decode_capped(bytes, MAX_RECEIPT)?)
    }

    /// The JSON rendering: CIDs and PeerIds as strings, the signature in hex.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt always renders as JSON")
    }

    /// Parses the JSON rendering and verifies it.
    ///
    /// # Errors
    /// When the text is not a receipt's JSON, or the signature does not hold.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl<'de> Deserialize<'de> for SignedReceipt {
    /// Decoding verifies: a `SignedReceipt` that exists has a valid signature.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let UncheckedReceipt { receipt, signature } = UncheckedReceipt::deserialize(d)?;
        let candidate = Self { receipt, signature };
        candidate.verify().map_err(serde::de::Error::custom)?;
        Ok(candidate)
    }
}

/// The ed25519 public key a PeerId embeds.
pub(crate) fn signer_key(worker: &PeerId) -> Result<PublicKey, VerifyError> {
    let hash: &multihash::Multihash<64> = worker.as_ref();
    if hash.code() != IDENTITY_MULTIHASH {
        return Err(VerifyError::UnsupportedKey(*worker));
    }
    match PublicKey::try_decode_protobuf(hash.digest()) {
        Ok(key) if key.key_type() == KeyType::Ed25519 => Ok(key),
        _ => Err(VerifyError::UnsupportedKey(*worker)),
    }
}
