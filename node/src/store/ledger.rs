//! The node's work ledger in the state database ([`super::state`]): one
//! entry per receipt the node signed as a worker or received and verified
//! as a requester, in the format of [`phase_protocol::ledger`] (entries
//! chained by CID; the head signed by the node when it is exported).
//!
//! An entry is appended in the same transaction as the job record that
//! holds its receipt, so the ledger and the records never disagree: a
//! SIGKILL before the commit loses both, after it neither. A receipt
//! already in the ledger (in the same role) is not appended again, so
//! writing a record twice, or reconciling the ledger with the records on
//! start, adds nothing. Totals per peer are kept beside the chain in the
//! same transaction: `phase-node ledger` and a requester's ranking of
//! workers read one row per peer, not the chain.
//!
//! The ledger holds the receipts it names pinned: an export carries them.

use std::collections::BTreeMap;

use libp2p::PeerId;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use phase_protocol::job::JobId;
use phase_protocol::ledger::{AuditOutcome, Entry, Head, Role, SignedHead};
use phase_protocol::{Cid, Keypair, Message, SignedReceipt, Status};

use super::state::StateError;

/// Seq → the entry's DAG-CBOR.
pub(super) const LEDGER: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger");
/// Role byte and receipt CID → the seq of its entry.
pub(super) const LEDGER_RECEIPTS: TableDefinition<&[u8], u64> =
    TableDefinition::new("ledger_receipts");
/// Peer id bytes → its [`Totals`] (JSON).
pub(super) const LEDGER_PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger_peers");

fn db_error(e: impl Into<redb::Error>) -> StateError {
    StateError::Db(e.into())
}

/// An entry to append: what it says, before its place in the chain is
/// known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    role: Role,
    job: JobId,
    peer: PeerId,
    receipt: Cid,
    fuel: u64,
    wall_time_ms: u64,
    status: Status,
    audit: Option<AuditOutcome>,
    at_ms: u64,
}

impl Draft {
    /// The entry of a receipt this node signed as the worker.
    #[must_use]
    pub fn worked(signed: &SignedReceipt) -> Self {
        Self::of(signed, Role::Worked, signed.receipt().requester, None)
    }

    /// The entry of a receipt this node received and verified as the
    /// requester, with the outcome of the job's audit if the run was audited.
    #[must_use]
    pub fn received(signed: &SignedReceipt, audit: Option<AuditOutcome>) -> Self {
        Self::of(signed, Role::Received, signed.receipt().worker, audit)
    }

    fn of(signed: &SignedReceipt, role: Role, peer: PeerId, audit: Option<AuditOutcome>) -> Self {
        let r = signed.receipt();
        Self {
            role,
            job: r.job,
            peer,
            receipt: signed.cid(),
            fuel: r.fuel_consumed,
            wall_time_ms: r.wall_time_ms,
            status: r.status.clone(),
            audit,
            at_ms: crate::now_ms(),
        }
    }

    /// The index key: one entry per receipt and role.
    fn key(&self) -> Vec<u8> {
        receipt_key(self.role, &self.receipt)
    }
}

fn receipt_key(role: Role, receipt: &Cid) -> Vec<u8> {
    let mut key = vec![match role {
        Role::Worked => 0,
        Role::Received => 1,
    }];
    key.extend_from_slice(&receipt.to_bytes());
    key
}

/// Work counted on one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Receipts.
    pub jobs: u64,
    /// Fuel they say was consumed.
    pub fuel: u64,
    /// Wall time they say the runs took, in milliseconds.
    pub wall_time_ms: u64,
}

impl Work {
    fn add(&mut self, fuel: u64, wall_time_ms: u64) {
        self.jobs += 1;
        self.fuel = self.fuel.saturating_add(fuel);
        self.wall_time_ms = self.wall_time_ms.saturating_add(wall_time_ms);
    }

    fn sum(&mut self, other: &Work) {
        self.jobs += other.jobs;
        self.fuel = self.fuel.saturating_add(other.fuel);
        self.wall_time_ms = self.wall_time_ms.saturating_add(other.wall_time_ms);
    }
}

/// What the ledger says of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Jobs this node ran for the peer (the peer requested them).
    pub worked: Work,
    /// Jobs the peer ran for this node (the peer was the worker).
    pub received: Work,
    /// Audits of the peer's runs where a second worker agreed.
    pub audits_passed: u64,
    /// Audits of the peer's runs where a second worker signed another
    /// result.
    pub audits_failed: u64,
}

impl Totals {
    /// Counts one entry: its work on its side, and its audit's outcome.
    pub fn count(&mut self, entry: &Entry) {
        match entry.role {
            Role::Worked => self.worked.add(entry.fuel, entry.wall_time_ms),
            Role::Received => self.received.add(entry.fuel, entry.wall_time_ms),
        }
        match entry.audit {
            Some(AuditOutcome::Passed) => self.audits_passed += 1,
            Some(AuditOutcome::Failed) => self.audits_failed += 1,
            None => {}
        }
    }

    fn sum(&mut self, other: &Totals) {
        self.worked.sum(&other.worked);
        self.received.sum(&other.received);
        self.audits_passed += other.audits_passed;
        self.audits_failed += other.audits_failed;
    }
}

/// What the ledger says of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTotals {
    /// The peer.
    pub peer: PeerId,
    /// Its totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// The ledger's totals: per peer, and over all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Entries in the chain.
    pub entries: u64,
    /// The newest entry's CID (none for an empty ledger).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "phase_protocol::serde_helpers::opt_cid"
    )]
    pub newest: Option<Cid>,
    /// Over every peer.
    pub total: Totals,
    /// Per peer, in the order of their PeerIds' bytes.
    pub peers: Vec<PeerTotals>,
}

impl Summary {
    /// The totals of `entries` (a verified chain, oldest first), as the
    /// node that kept them counts them.
    #[must_use]
    pub fn of_entries(entries: &[Entry]) -> Self {
        let mut summary = Self {
            entries: entries.len() as u64,
            newest: entries.last().map(Entry::cid),
            ..Self::default()
        };
        let mut peers: BTreeMap<Vec<u8>, PeerTotals> = BTreeMap::new();
        for entry in entries {
            peers
                .entry(entry.peer.to_bytes())
                .or_insert(PeerTotals {
                    peer: entry.peer,
                    totals: Totals::default(),
                })
                .totals
                .count(entry);
            summary.total.count(entry);
        }
        summary.peers = peers.into_values().collect();
        summary
    }

    /// What it says of `peer` (all zero if nothing).
    #[must_use]
    pub fn of(&self, peer: &PeerId) -> Totals {
        self.peers
            .iter()
            .find(|p| p.peer == *peer)
            .map(|p| p.totals)
            .unwrap_or_default()
    }
}

/// Appends `drafts` in order inside `txn`, skipping any whose receipt is in
/// the ledger already in the same role; returns how many were appended.
pub(super) fn append(txn: &WriteTransaction, drafts: &[Draft]) -> Result<usize, StateError> {
    if drafts.is_empty() {
        return Ok(0);
    }
    let mut chain = txn.open_table(LEDGER).map_err(db_error)?;
    let mut index = txn.open_table(LEDGER_RECEIPTS).map_err(db_error)?;
    let mut peers = txn.open_table(LEDGER_PEERS).map_err(db_error)?;
    let (mut seq, mut prev) = match chain.last().map_err(db_error)? {
        Some((k, v)) => (
            k.value() + 1,
            Some(phase_protocol::cid::cid_of(
                phase_protocol::cid::DAG_CBOR,
                v.value(),
            )),
        ),
        None => (0, None),
    };
    let mut appended = 0;
    for draft in drafts {
        let key = draft.key();
        if index.get(key.as_slice()).map_err(db_error)?.is_some() {
            continue;
        }
        let entry = Entry {
            seq,
            prev,
            role: draft.role,
            job: draft.job,
            peer: draft.peer,
            receipt: draft.receipt,
            fuel: draft.fuel,
            wall_time_ms: draft.wall_time_ms,
            status: draft.status.clone(),
            audit: draft.audit,
            at_ms: draft.at_ms,
        };
        let bytes = entry.encode();
        chain.insert(seq, bytes.as_slice()).map_err(db_error)?;
        index.insert(key.as_slice(), seq).map_err(db_error)?;
        let peer_key = draft.peer.to_bytes();
        let mut totals: Totals = match peers.get(peer_key.as_slice()).map_err(db_error)? {
            Some(v) => serde_json::from_slice(v.value()).map_err(StateError::Record)?,
            None => Totals::default(),
        };
        totals.count(&entry);
        let value = serde_json::to_vec(&totals).map_err(StateError::Record)?;
        peers
            .insert(peer_key.as_slice(), value.as_slice())
            .map_err(db_error)?;
        prev = Some(phase_protocol::cid::cid_of(
            phase_protocol::cid::DAG_CBOR,
            &bytes,
        ));
        seq += 1;
        appended += 1;
    }
    Ok(appended)
}

/// The ledger's summary, read in `txn`.
pub(super) fn summary(txn: &redb::ReadTransaction) -> Result<Summary, StateError> {
    let chain = txn.open_table(LEDGER).map_err(db_error)?;
    let peers = txn.open_table(LEDGER_PEERS).map_err(db_error)?;
    let mut summary = Summary::default();
    if let Some((k, v)) = chain.last().map_err(db_error)? {
        summary.entries = k.value() + 1;
        summary.newest = Some(phase_protocol::cid::cid_of(
            phase_protocol::cid::DAG_CBOR,
            v.value(),
        ));
    }
    for row in peers.iter().map_err(db_error)? {
        let (k, v) = row.map_err(db_error)?;
        let peer = PeerId::from_bytes(k.value()).map_err(|_| StateError::Row)?;
        let totals: Totals = serde_json::from_slice(v.value()).map_err(StateError::Record)?;
        summary.total.sum(&totals);
        summary.peers.push(PeerTotals { peer, totals });
    }
    Ok(summary)
}

/// What the ledger says of `peer` (nothing yet: all zero).
pub(super) fn totals_of(txn: &redb::ReadTransaction, peer: &PeerId) -> Result<Totals, StateError> {
    let peers = txn.open_table(LEDGER_PEERS).map_err(db_error)?;
    match peers.get(peer.to_bytes().as_slice()).map_err(db_error)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(StateError::Record),
        None => Ok(Totals::default()),
    }
}

/// Every entry, oldest first, read in `txn`.
pub(super) fn entries(txn: &redb::ReadTransaction) -> Result<Vec<Entry>, StateError> {
    let chain = txn.open_table(LEDGER).map_err(db_error)?;
    let mut out = Vec::new();
    for row in chain.iter().map_err(db_error)? {
        let (_, v) = row.map_err(db_error)?;
        out.push(Entry::decode(v.value()).map_err(|_| StateError::Row)?);
    }
    Ok(out)
}

/// The newest `limit` entries, newest first, read in `txn`.
pub(super) fn recent(txn: &redb::ReadTransaction, limit: usize) -> Result<Vec<Entry>, StateError> {
    let chain = txn.open_table(LEDGER).map_err(db_error)?;
    let mut out = Vec::with_capacity(limit.min(1024));
    for row in chain.iter().map_err(db_error)?.rev().take(limit) {
        let (_, v) = row.map_err(db_error)?;
        out.push(Entry::decode(v.value()).map_err(|_| StateError::Row)?);
    }
    Ok(out)
}

/// The receipts the ledger names (it holds them pinned), read in `txn`.
pub(super) fn receipts(txn: &redb::ReadTransaction) -> Result<Vec<Cid>, StateError> {
    let index = txn.open_table(LEDGER_RECEIPTS).map_err(db_error)?;
    let mut out = Vec::new();
    for row in index.iter().map_err(db_error)? {
        let (k, _) = row.map_err(db_error)?;
        let cid = k.value().get(1..).ok_or(StateError::Row)?;
        out.push(Cid::try_from(cid).map_err(StateError::Cid)?);
    }
    Ok(out)
}

/// Why a ledger cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The state database or the block store.
    #[error(transparent)]
    Store(#[from] super::StoreError),
    /// A receipt the ledger names is gone from the store.
    #[error("receipt {0}, named by the ledger, is not in the block store")]
    MissingReceipt(Cid),
    /// The head cannot be signed.
    #[error("cannot sign the ledger's head")]
    Sign(#[from] phase_protocol::SignError),
}

impl super::BlockStore {
    /// The ledger as a CAR file (blocking): its head signed with `key` (the
    /// node's identity), every entry and every receipt they name.
    ///
    /// # Errors
    /// The state database or store failed, or a receipt is missing.
    pub fn ledger_export_blocking(&self, key: &Keypair) -> Result<Vec<u8>, ExportError> {
        let entries = self
            .state_blocking()?
            .ledger_entries()
            .map_err(super::StoreError::from)?;
        let mut receipts = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        for entry in &entries {
            if !seen.insert(entry.receipt) {
                continue;
            }
            let bytes = self
                .get_blocking(&entry.receipt)?
                .ok_or(ExportError::MissingReceipt(entry.receipt))?;
            receipts.push((entry.receipt, bytes.to_vec()));
        }
        let head = Head {
            node: key.public().to_peer_id(),
            entries: entries.len() as u64,
            newest: entries.last().map(Entry::cid),
        };
        let signed = SignedHead::sign(head, key)?;
        Ok(phase_protocol::ledger::export_car(
            &signed, &entries, &receipts,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlockStore;
    use crate::store::state::JobWrite;
    use phase_protocol::receipt::Receipt;
    use phase_protocol::{JobSpec, cid};

    fn key(n: u8) -> Keypair {
        Keypair::ed25519_from_bytes([n; 32]).unwrap()
    }

    /// A receipt `worker` signed for `requester`, of job number `n`.
    fn receipt(worker: &Keypair, requester: PeerId, n: u64) -> SignedReceipt {
        let mut spec = JobSpec::new(cid::raw_cid(b"m"));
        spec.nonce = n;
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result: cid::raw_cid(&n.to_be_bytes()),
            status: Status::Exited { code: 0 },
            fuel_consumed: 100 + n,
            wall_time_ms: n,
            compile_time_ms: 0,
            peak_memory: 1,
            worker: worker.public().to_peer_id(),
            requester,
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: "test".into(),
            state: None,
            network: None,
        };
        SignedReceipt::sign(receipt, worker).unwrap()
    }

    #[tokio::test]
    async fn entries_chain_once_per_receipt_and_role_and_the_export_verifies() {
        let store = BlockStore::memory();
        let me = key(1);
        let other = key(2);
        let db = store.state().await.unwrap();
        let mut worked = Vec::new();
        for n in 0..3 {
            let r = receipt(&me, other.public().to_peer_id(), n);
            store
                .put(r.cid(), bytes::Bytes::from(r.to_cbor()))
                .await
                .unwrap();
            let write = JobWrite::Put {
                id: r.receipt().job,
                record: b"{}".to_vec(),
                roots: vec![],
                ledger: Some(Box::new(Draft::worked(&r))),
            };
            // Written twice (a record rewritten): one entry.
            db.write_jobs(&[write.clone(), write]).unwrap();
            worked.push(r);
        }
        // A job the other node ran for this one, audited and failed.
        let got = receipt(&other, me.public().to_peer_id(), 9);
        store
            .put(got.cid(), bytes::Bytes::from(got.to_cbor()))
            .await
            .unwrap();
        let draft = Draft::received(&got, Some(AuditOutcome::Failed));
        assert_eq!(db.append_ledger(std::slice::from_ref(&draft)).unwrap(), 1);
        assert_eq!(db.append_ledger(&[draft]).unwrap(), 0);
        // A job this node ran for itself: one entry on each side.
        let own = receipt(&me, me.public().to_peer_id(), 7);
        store
            .put(own.cid(), bytes::Bytes::from(own.to_cbor()))
            .await
            .unwrap();
        let both = [Draft::worked(&own), Draft::received(&own, None)];
        assert_eq!(db.append_ledger(&both).unwrap(), 2);
        assert_eq!(db.append_ledger(&both).unwrap(), 0);

        let entries = db.ledger_entries().unwrap();
        assert_eq!(entries.len(), 6);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            assert_eq!(e.prev, i.checked_sub(1).map(|p| entries[p].cid()));
        }
        let recent = db.ledger_recent(4).unwrap();
        let newest: Vec<_> = entries.iter().rev().take(4).cloned().collect();
        assert_eq!(recent, newest, "the newest four, newest first");
        assert_eq!(db.ledger_recent(100).unwrap().len(), 6);
        let summary = db.ledger_summary().unwrap();
        assert_eq!(summary.entries, 6);
        assert_eq!(summary.newest, Some(entries[5].cid()));
        assert_eq!(summary, Summary::of_entries(&entries));
        let of_other = db.ledger_totals(&other.public().to_peer_id()).unwrap();
        assert_eq!(of_other.worked.jobs, 3);
        assert_eq!(of_other.worked.fuel, 100 + 101 + 102);
        assert_eq!(of_other.received.jobs, 1);
        assert_eq!(of_other.audits_failed, 1);
        // The ledger holds its receipts pinned.
        let pins = db.pins().unwrap();
        assert!(worked.iter().all(|r| pins.contains(&r.cid())));
        assert!(pins.contains(&got.cid()));

        // Signed with the node's key, the export verifies; signed with
        // another's, its receipts say another node.
        let car = store.ledger_export_blocking(&me).unwrap();
        let verified = phase_protocol::ledger::verify_car(&car).unwrap();
        assert_eq!(verified.node, me.public().to_peer_id());
        assert_eq!(verified.entries, entries);
        let forged = store.ledger_export_blocking(&key(3)).unwrap();
        let err = phase_protocol::ledger::verify_car(&forged).unwrap_err();
        assert!(
            err.to_string().contains("its receipt says another"),
            "{err}"
        );
    }
}
