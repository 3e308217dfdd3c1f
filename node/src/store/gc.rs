//! What `gc` keeps, and how: pins (the state database), roots held by
//! work under way ([`Held`], [`BlockStore::hold_for`]), DAGs being written
//! in this process ([`BlockStore::writing`]) or another ([`Lease`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use phase_protocol::Cid;
use phase_protocol::unixfs;
use tracing::warn;

use super::leases::{self, Lease};
use super::{Backend, BlockStore, MAX_DEPTH, StoreError, inline};

/// Roots held until a deadline at most; past it the soonest to expire goes.
const MAX_HELD_UNTIL: usize = 4096;

/// Roots held against [`BlockStore::gc`] until this is dropped.
#[derive(Debug)]
pub struct Held {
    roots: Vec<Cid>,
    held: Arc<Mutex<HashMap<Cid, usize>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for root in &self.roots {
            if let Some(n) = held.get_mut(root) {
                *n -= 1;
                if *n == 0 {
                    held.remove(root);
                }
            }
        }
    }
}

impl BlockStore {
    /// Keeps [`BlockStore::gc`] out while the caller stores a new DAG;
    /// drop it once the root is held ([`BlockStore::hold`]) or pinned.
    pub async fn writing(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        Arc::clone(&self.gc_lock).read_owned().await
    }

    /// A write lease ([`leases`]): while it is held, the `gc` of another
    /// process on this store (a running daemon) keeps what this process
    /// writes. For a command that stores a DAG beside a daemon; hold it
    /// until the daemon has pinned the root. `None` for a memory store.
    ///
    /// # Errors
    /// The lease file cannot be made.
    pub async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        let Some(root) = self.state_path.as_deref().and_then(Path::parent) else {
            return Ok(None);
        };
        let root = root.to_owned();
        let lease = tokio::task::spawn_blocking(move || {
            leases::take(&root).map_err(|source| StoreError::Io {
                path: root.join("leases"),
                source,
            })
        })
        .await??;
        Ok(Some(lease))
    }

    /// Holds `roots` (and what they link to, as far as it is stored)
    /// against [`BlockStore::gc`] until the guard is dropped: work under
    /// way, like a job's inputs while it is queued or running.
    #[must_use]
    pub fn hold(&self, roots: impl IntoIterator<Item = Cid>) -> Held {
        let roots: Vec<Cid> = roots.into_iter().collect();
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for root in &roots {
            *held.entry(*root).or_insert(0) += 1;
        }
        Held {
            roots,
            held: Arc::clone(&self.held),
        }
    }

    /// Holds `roots` against [`BlockStore::gc`] for `how_long`: for a DAG
    /// fetched for a client that reads it next (`get`, `cat` through the
    /// daemon), whose own hold ended with the fetch. At most
    /// [`MAX_HELD_UNTIL`] roots are held so at once.
    pub fn hold_for(&self, roots: impl IntoIterator<Item = Cid>, how_long: std::time::Duration) {
        let until = std::time::Instant::now() + how_long;
        let mut held = self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for root in roots {
            let at = held.entry(root).or_insert(until);
            *at = (*at).max(until);
        }
        while held.len() > MAX_HELD_UNTIL {
            let Some(soonest) = held.iter().min_by_key(|(_, at)| **at).map(|(c, _)| *c) else {
                break;
            };
            held.remove(&soonest);
        }
    }

    /// Deletes every block not reachable from a pin or a held root
    /// ([`BlockStore::hold`]); returns how many.
    ///
    /// The blocks are listed before the live ones are walked, so a block
    /// stored meanwhile is never a candidate. A pinned DAG with a missing or
    /// corrupt block is kept as far as it can be walked, and the rest of the
    /// store is still collected.
    ///
    /// # Errors
    /// I/O.
    pub async fn gc(&self) -> Result<usize, StoreError> {
        // No DAG is half-written meanwhile by this process (see
        // `writing`); another process's writes are kept through its lease.
        let _alone = self.gc_lock.write().await;
        let started = std::time::SystemTime::now();
        let all = self.blocking(BlockStore::cids_blocking).await?;
        // Held roots first, pins after: work lets go of a root only once
        // the record that pins it is committed, so a root let go of after
        // this snapshot is in it, and one let go of before is pinned by the
        // time the pins are read. (The other order lost a worker's receipt
        // in the chaos suite: pinned after the pins were read, let go of
        // before the holds were.)
        let mut roots: Vec<Cid> = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        {
            let now = std::time::Instant::now();
            let mut until = self
                .held_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            until.retain(|_, at| *at > now);
            roots.extend(until.keys().copied());
        }
        let mut pins = self.pins().await?;
        pins.extend(roots);
        self.blocking(move |s| {
            let mut live = HashSet::new();
            let mut stack: Vec<(Cid, usize)> = pins.into_iter().map(|c| (c, 0)).collect();
            while let Some((cid, depth)) = stack.pop() {
                if depth > MAX_DEPTH || !live.insert(cid) {
                    continue;
                }
                let data = match s.get_blocking(&cid) {
                    Ok(Some(data)) => data,
                    Ok(None) | Err(StoreError::Corrupt { .. }) => continue,
                    Err(e) => return Err(e),
                };
                match unixfs::links(&cid, &data) {
                    Ok(links) => stack.extend(links.into_iter().map(|c| (c, depth + 1))),
                    Err(e) => warn!(%cid, error = %e, "pinned block does not decode; not following its links"),
                }
            }
            // While another process writes (a command beside a daemon),
            // what it may be writing stays: see `leases`. The leases are
            // looked at again every so many deletions.
            let root = s.state_path.as_deref().and_then(Path::parent);
            let kept_since = |root: Option<&Path>| {
                root.and_then(leases::oldest_live).map(|lease| {
                    lease
                        .min(started)
                        .checked_sub(std::time::Duration::from_secs(1))
                        .unwrap_or(std::time::UNIX_EPOCH)
                })
            };
            let mut since = kept_since(root);
            let mut removed = 0;
            let garbage: Vec<Cid> = all.into_iter().filter(|c| !live.contains(c)).collect();
            // Inline blocks are added only by the process holding the state
            // database (this one, or no other: `inline`), so no lease
            // applies to them; removed in one commit per thousand.
            let mut inline_gone = HashSet::new();
            if let (Backend::Fs(_), Some(db)) = (s.backend.as_ref(), s.inline_db(false)?) {
                for chunk in garbage.chunks(1024) {
                    let gone = inline::delete(&db, chunk)?;
                    inline_gone.extend(chunk.iter().zip(gone).filter(|(_, g)| *g).map(|(c, _)| *c));
                }
            }
            for (i, cid) in garbage.into_iter().enumerate() {
                if i % 256 == 255 {
                    since = match (kept_since(root), since) {
                        (Some(now), Some(before)) => Some(now.min(before)),
                        (now, before) => now.or(before),
                    };
                }
                let gone = match (s.backend.as_ref(), since) {
                    (Backend::Mem(m), _) => m.delete(&cid),
                    (Backend::Fs(f), None) => f.delete(&cid)?,
                    (Backend::Fs(f), Some(since)) => f.delete_if_older(&cid, since)?,
                };
                removed += usize::from(gone || inline_gone.contains(&cid));
            }
            Ok(removed)
        })
        .await
    }
}
