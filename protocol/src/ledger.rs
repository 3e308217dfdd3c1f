//! The work ledger's format: one [`Entry`] per receipt a node signed (as a
//! worker) or received and verified (as a requester), each a DAG-CBOR
//! block naming the previous one's CID, so the entries form a hash chain;
//! and a [`SignedHead`]: the newest entry's CID and the chain's length,
//! signed by the node's ed25519 key over [`LEDGER_DOMAIN`] followed by the
//! head's canonical DAG-CBOR. Rewriting any entry changes every CID after
//! it and so the head, which only the node can sign.
//!
//! A chain travels as a CAR file ([`export_car`]): its root is the signed
//! head's block, then the entries and the receipts they name.
//! [`verify_car`] checks the head's signature, every link, every entry's
//! place in the sequence, and each receipt's signature and agreement with
//! its entry; the first problem names the entry.

use std::collections::HashMap;

use libp2p_identity::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::car::{self, CarFormatError, CarReader};
use crate::cid::{self, Cid};
use crate::error::{DecodeError, SignError, VerifyError};
use crate::job::JobId;
use crate::receipt::{SignedReceipt, Status, signer_key};
use crate::wire::{self, MAX_RECEIPT, Message};

/// What a node signs its ledger's head over, before the head's bytes.
pub const LEDGER_DOMAIN: &[u8] = b"phase-ledger-head-v1";
/// Largest encoded entry.
pub const MAX_ENTRY: usize = 4 * 1024;
/// Largest encoded signed head.
pub const MAX_HEAD: usize = 1024;
/// Most entries [`verify_car`] walks (a year of a job a second is 31 M).
pub const MAX_ENTRIES: u64 = 100_000_000;

/// Which side of the receipt the node was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It ran the job and signed the receipt; `peer` is the requester.
    Worked,
    /// It submitted the job and verified the receipt; `peer` is the worker.
    Received,
}

/// How an audit of the job came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// A second worker gave the same result.
    Passed,
    /// A second worker gave another result.
    Failed,
}

/// One receipt in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its place in the chain, from 0.
    pub seq: u64,
    /// The entry before it (none for the first).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_helpers::opt_cid"
    )]
    pub prev: Option<Cid>,
    /// Worker or requester.
    pub role: Role,
    /// The job.
    pub job: JobId,
    /// The other side: the requester of a job the node worked, the worker
    /// of a job it received.
    pub peer: PeerId,
    /// The signed receipt's CID.
    #[serde(with = "crate::serde_helpers::cid")]
    pub receipt: Cid,
    /// Fuel the run consumed, as the receipt says.
    pub fuel: u64,
    /// Wall time of the run in milliseconds, as the receipt says.
    pub wall_time_ms: u64,
    /// How the run ended, as the receipt says.
    pub status: Status,
    /// The audit of a job this node received, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditOutcome>,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Message for Entry {
    const MAX: usize = MAX_ENTRY;
}

impl Entry {
    /// The CID of its block.
    #[must_use]
    pub fn cid(&self) -> Cid {
        cid::cid_of(cid::DAG_CBOR, &self.encode())
    }
}

/// The newest entry of a node's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The node whose ledger it is (and who signs the head).
    pub node: PeerId,
    /// Entries in the chain.
    pub entries: u64,
    /// The newest entry (none for an empty ledger).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_helpers::opt_cid"
    )]
    pub newest: Option<Cid>,
}

/// A head and the node's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// The head.
    pub head: Head,
    /// ed25519 over [`LEDGER_DOMAIN`] and the head's DAG-CBOR.
    #[serde(with = "crate::serde_helpers::bytes")]
    pub signature: Vec<u8>,
}

impl Message for SignedHead {
    const MAX: usize = MAX_HEAD;
}

fn signing_bytes(head: &Head) -> Vec<u8> {
    let mut bytes = LEDGER_DOMAIN.to_vec();
    bytes.extend_from_slice(&wire::to_cbor(head));
    bytes
}

impl SignedHead {
    /// Signs `head` with the node's key.
    ///
    /// # Errors
    /// The key is not ed25519, or not the head's node.
    pub fn sign(head: Head, key: &Keypair) -> Result<Self, SignError> {
        if key.public().to_peer_id() != head.node {
            return Err(SignError::KeyMismatch(head.node));
        }
        let signature = key
            .sign(&signing_bytes(&head))
            .map_err(|_| SignError::NotEd25519)?;
        Ok(Self { head, signature })
    }

    /// Checks the signature; the head if it holds.
    ///
    /// # Errors
    /// The node's PeerId holds no ed25519 key, or the signature does not
    /// match.
    pub fn verify(&self) -> Result<&Head, VerifyError> {
        let key = signer_key(&self.head.node)?;
        if key.verify(&signing_bytes(&self.head), &self.signature) {
            Ok(&self.head)
        } else {
            Err(VerifyError::BadSignature(self.head.node))
        }
    }

    /// The CID of its block.
    #[must_use]
    pub fn cid(&self) -> Cid {
        cid::cid_of(cid::DAG_CBOR, &self.encode())
    }
}

/// Why a ledger does not verify.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Not a CAR file.
    #[error("not a ledger CAR file")]
    Car(#[from] CarFormatError),
    /// The CAR has no single root.
    #[error("a ledger CAR file has one root, the signed head; this one has {0}")]
    Roots(usize),
    /// The head is missing or does not decode.
    #[error("the signed head {0} is missing or does not decode")]
    Head(Cid),
    /// The head's signature does not hold.
    #[error("the head is not signed by the node it names")]
    HeadSignature(#[source] VerifyError),
    /// More entries than [`MAX_ENTRIES`].
    #[error("the head counts {0} entries, more than {MAX_ENTRIES}")]
    TooLong(u64),
    /// An entry breaks the chain.
    #[error("entry {seq} ({cid}): {problem}")]
    Entry {
        /// Its place in the chain.
        seq: u64,
        /// Its CID.
        cid: Cid,
        /// What is wrong.
        problem: Box<EntryProblem>,
    },
}

/// What is wrong with an entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    /// Its block is not in the file, or not what its CID names.
    #[error("missing or altered")]
    Missing,
    /// Its block does not decode as an entry.
    #[error("does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Its `seq` is not its place in the chain.
    #[error("says it is entry {0}")]
    Seq(u64),
    /// Its `prev` link is wrong for its place (the first has none, every
    /// other one has one).
    #[error("its link to the entry before is wrong")]
    Prev,
    /// The receipt it names is missing or altered, does not decode or does
    /// not verify.
    #[error("its receipt {0} is missing, altered or does not verify")]
    Receipt(Cid),
    /// The receipt says otherwise.
    #[error("its receipt says another {0}")]
    Disagrees(&'static str),
}

/// The CAR file of a chain: root the signed head, then its block, the
/// entries newest first and the receipts they name (as `(cid, bytes)`).
#[must_use]
pub fn export_car(head: &SignedHead, entries: &[Entry], receipts: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let head_bytes = head.encode();
    let mut out = car::header(&[head.cid()]);
    let mut section = |cid: &Cid, data: &[u8]| {
        out.extend_from_slice(&car::section_prefix(cid, data));
        out.extend_from_slice(&cid.to_bytes());
        out.extend_from_slice(data);
    };
    section(&head.cid(), &head_bytes);
    for entry in entries.iter().rev() {
        section(&entry.cid(), &entry.encode());
    }
    for (cid, data) in receipts {
        section(cid, data);
    }
    out
}

/// A verified chain.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Whose ledger it is.
    pub node: PeerId,
    /// Its entries, oldest first.
    pub entries: Vec<Entry>,
}

/// Verifies a ledger CAR file: the head's signature, each entry's link and
/// place, and each receipt's signature and agreement with its entry.
///
/// # Errors
/// The first problem found, naming the entry where there is one.
pub fn verify_car(bytes: &[u8]) -> Result<Verified, LedgerError> {
    let mut reader = CarReader::new(bytes)?;
    let roots = reader.roots().to_vec();
    let [root] = roots[..] else {
        return Err(LedgerError::Roots(roots.len()));
    };
    // A block whose bytes are not what its CID names is left out: the
    // entry that needs it is then named as missing it.
    let mut blocks: HashMap<Cid, Vec<u8>> = HashMap::new();
    while let Some((cid, data)) = reader.next_block()? {
        if cid::matches(&cid, data) {
            blocks.insert(cid, data.to_vec());
        }
    }
    let signed = blocks
        .get(&root)
        .and_then(|b| SignedHead::decode(b).ok())
        .ok_or(LedgerError::Head(root))?;
    let head = signed.verify().map_err(LedgerError::HeadSignature)?;
    if head.entries > MAX_ENTRIES {
        return Err(LedgerError::TooLong(head.entries));
    }
    let mut entries = Vec::new();
    let mut next = head.newest;
    let mut seq = head.entries;
    while seq > 0 {
        seq -= 1;
        let cid = next.ok_or_else(|| LedgerError::Entry {
            seq,
            cid: root,
            problem: Box::new(EntryProblem::Prev),
        })?;
        let fail = |problem| LedgerError::Entry {
            seq,
            cid,
            problem: Box::new(problem),
        };
        let bytes = blocks
            .get(&cid)
            .ok_or_else(|| fail(EntryProblem::Missing))?;
        let entry = Entry::decode(bytes).map_err(|e| fail(e.into()))?;
        if entry.seq != seq {
            return Err(fail(EntryProblem::Seq(entry.seq)));
        }
        if entry.prev.is_some() != (seq > 0) {
            return Err(fail(EntryProblem::Prev));
        }
        check_receipt(&entry, head.node, &blocks).map_err(fail)?;
        next = entry.prev;
        entries.push(entry);
    }
    if head.newest.is_some() && head.entries == 0 {
        return Err(LedgerError::Head(root));
    }
    entries.reverse();
    Ok(Verified {
        node: head.node,
        entries,
    })
}

/// Whether the receipt an entry names is there, verifies, and says what
/// the entry says.
fn check_receipt(
    entry: &Entry,
    node: PeerId,
    blocks: &HashMap<Cid, Vec<u8>>,
) -> Result<(), EntryProblem> {
    let bytes = blocks
        .get(&entry.receipt)
        .filter(|b| b.len() <= MAX_RECEIPT)
        .ok_or(EntryProblem::Receipt(entry.receipt))?;
    let signed =
        SignedReceipt::from_cbor(bytes).map_err(|_| EntryProblem::Receipt(entry.receipt))?;
    let r = signed.receipt();
    let (worker, requester) = match entry.role {
        Role::Worked => (node, entry.peer),
        Role::Received => (entry.peer, node),
    };
    let checks = [
        ("job", r.job == entry.job),
        ("worker", r.worker == worker),
        ("requester", r.requester == requester),
        ("fuel", r.fuel_consumed == entry.fuel),
        ("wall time", r.wall_time_ms == entry.wall_time_ms),
        ("status", r.status == entry.status),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(EntryProblem::Disagrees(what)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobSpec;
    use crate::receipt::Receipt;

    /// Receipt blocks: CID and bytes.
    type Receipts = Vec<(Cid, Vec<u8>)>;

    fn key(n: u8) -> Keypair {
        Keypair::ed25519_from_bytes([n; 32]).unwrap()
    }

    /// A chain of `n` entries of jobs `node` worked for `requester`, with
    /// their receipts.
    fn chain(node: &Keypair, requester: PeerId, n: u64) -> (SignedHead, Vec<Entry>, Receipts) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut receipts = Vec::new();
        for seq in 0..n {
            let mut spec = JobSpec::new(cid::raw_cid(b"m"));
            spec.nonce = seq;
            let receipt = Receipt {
                job: spec.id(),
                module: spec.module,
                stdin: None,
                input: None,
                result: cid::raw_cid(&seq.to_be_bytes()),
                status: Status::Exited { code: 0 },
                fuel_consumed: 1000 + seq,
                wall_time_ms: seq,
                compile_time_ms: 0,
                peak_memory: 1,
                worker: node.public().to_peer_id(),
                requester,
                started_at_ms: 0,
                ended_at_ms: 1,
                runtime: "test".into(),
                state: None,
                network: None,
            };
            let signed = SignedReceipt::sign(receipt, node).unwrap();
            entries.push(Entry {
                seq,
                prev: entries.last().map(Entry::cid),
                role: Role::Worked,
                job: spec.id(),
                peer: requester,
                receipt: signed.cid(),
                fuel: 1000 + seq,
                wall_time_ms: seq,
                status: Status::Exited { code: 0 },
                audit: None,
                at_ms: seq,
            });
            receipts.push((signed.cid(), signed.to_cbor()));
        }
        let head = Head {
            node: node.public().to_peer_id(),
            entries: n,
            newest: entries.last().map(Entry::cid),
        };
        (SignedHead::sign(head, node).unwrap(), entries, receipts)
    }

    #[test]
    fn a_chain_of_100_verifies_and_any_flipped_byte_is_caught() {
        let node = key(1);
        let requester = key(2).public().to_peer_id();
        let (head, entries, receipts) = chain(&node, requester, 100);
        let file = export_car(&head, &entries, &receipts);
        let verified = verify_car(&file).unwrap();
        assert_eq!(verified.node, node.public().to_peer_id());
        assert_eq!(verified.entries, entries);
        // Flips in a shorter chain, every 13th byte (every byte of the long
        // one takes minutes in a debug build): each fails.
        let (head, entries, receipts) = chain(&node, requester, 20);
        let file = export_car(&head, &entries, &receipts);
        for i in (0..file.len()).step_by(13) {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(verify_car(&bad).is_err(), "byte {i} flipped still verifies");
        }
        // A byte flipped inside an entry's block, or inside its receipt's,
        // names the entry.
        let find = |needle: &[u8]| {
            file.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        for entry in &entries {
            let receipt = &receipts[entry.seq as usize].1;
            for at in [find(&entry.encode()) + 20, find(receipt) + 40] {
                let mut bad = file.clone();
                bad[at] ^= 0x01;
                match verify_car(&bad).unwrap_err() {
                    LedgerError::Entry { seq, .. } => assert_eq!(seq, entry.seq),
                    other => panic!("entry {}: {other}", entry.seq),
                }
            }
        }
    }

    #[test]
    fn a_rewritten_entry_or_a_forged_head_is_refused() {
        let node = key(1);
        let requester = key(2).public().to_peer_id();
        let (head, mut entries, receipts) = chain(&node, requester, 5);
        // Rewrite entry 2 and relink the rest: only the node could sign
        // the new head, and the old one no longer leads to the chain.
        entries[2].fuel = 1;
        for i in 3..5 {
            entries[i].prev = Some(entries[i - 1].cid());
        }
        let file = export_car(&head, &entries, &receipts);
        let err = verify_car(&file).unwrap_err();
        assert!(
            matches!(
                &err,
                LedgerError::Entry { seq: 4, problem, .. } if matches!(**problem, EntryProblem::Missing)
            ),
            "{err}"
        );
        // A head re-signed by someone else.
        let mut forged = head.clone();
        forged.head.newest = Some(entries[4].cid());
        let stranger = SignedHead::sign(
            Head {
                node: key(3).public().to_peer_id(),
                ..forged.head.clone()
            },
            &key(3),
        )
        .unwrap();
        forged.signature = stranger.signature;
        let err = verify_car(&export_car(&forged, &entries, &receipts)).unwrap_err();
        assert!(matches!(err, LedgerError::HeadSignature(_)), "{err}");
        // Signed by the node, but an entry disagrees with its receipt.
        let honest = SignedHead::sign(forged.head.clone(), &node).unwrap();
        let err = verify_car(&export_car(&honest, &entries, &receipts)).unwrap_err();
        assert!(
            matches!(
                &err,
                LedgerError::Entry { seq: 2, problem, .. } if matches!(**problem, EntryProblem::Disagrees("fuel"))
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_an_empty_ledger() {
        let err = verify_car(b"not a car at all").unwrap_err();
        assert!(
            err.to_string().starts_with("not a ledger CAR file"),
            "{err}"
        );
        let node = key(1);
        let head = Head {
            node: node.public().to_peer_id(),
            entries: 0,
            newest: None,
        };
        let empty = SignedHead::sign(head, &node).unwrap();
        let verified = verify_car(&export_car(&empty, &[], &[])).unwrap();
        assert!(verified.entries.is_empty());
    }
}
