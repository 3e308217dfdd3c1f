//! Reading UnixFS directories, one node or HAMT-sharded, out of a
//! [`BlockStore`].
//!
//! A sharded directory is read as a trie: every entry must sit where its
//! name's hash leads, so one name cannot appear twice, a sub-shard cannot be
//! linked from two slots, and the walk is at most eight levels deep (the
//! 64-bit hash, 8 bits a level).

use phase_protocol::Cid;
use phase_protocol::unixfs::{self, Node, PbLink, Shard, ShardLink, hamt};

use super::files::FilesError;
use super::{BlockStore, StoreError};

fn misplaced(cid: Cid, reason: &'static str) -> FilesError {
    StoreError::Inconsistent { cid, reason }.into()
}

fn decode_blocking(store: &BlockStore, cid: &Cid) -> Result<Node, StoreError> {
    let data = store.require_blocking(cid)?;
    decode_bytes(cid, &data)
}

fn decode_bytes(cid: &Cid, data: &bytes::Bytes) -> Result<Node, StoreError> {
    unixfs::decode(cid, data).map_err(|source| StoreError::Unixfs {
        cid: *cid,
        source: Box::new(source),
    })
}

/// A sub-shard's node, which must be a shard of the same fanout.
fn sub_shard(cid: Cid, node: Node, fanout: u32) -> Result<Shard, FilesError> {
    match node {
        Node::Shard(shard) if shard.fanout == fanout => Ok(shard),
        _ => Err(misplaced(
            cid,
            "a HAMT sub-shard is not a shard of its parent's fanout",
        )),
    }
}

/// The entries of the directory `cid`, whose root node is `node`: a
/// directory node's links, or every entry of a sharded directory's trie
/// (its sub-shards read from the store). At most `max` entries and `max`
/// shard nodes are read.
///
/// # Errors
/// `node` is not a directory, the directory has more than `max` entries, or
/// a sub-shard is missing, corrupt or misplaced.
pub(super) fn entries_blocking(
    store: &BlockStore,
    cid: Cid,
    node: Node,
    max: u64,
) -> Result<Vec<PbLink>, FilesError> {
    let root = match node {
        Node::Directory(links) if links.len() as u64 <= max => return Ok(links),
        Node::Directory(_) => return Err(FilesError::TooManyEntries { cid, max }),
        Node::Shard(shard) => shard,
        Node::Raw(_) | Node::File { .. } => return Err(FilesError::NotADirectory(cid)),
    };
    let (fanout, bits) = (root.fanout, root.bits());
    let mut out = Vec::new();
    let mut nodes = 1u64;
    // (shard, its cid, the slots leading to it from the root)
    let mut stack = vec![(root, cid, Vec::new())];
    while let Some((shard, at, path)) = stack.pop() {
        let depth = path.len() as u32;
        for (slot, link) in shard.links {
            match link {
                ShardLink::Entry(entry) => {
                    let hash = hamt::name_hash(entry.name.as_bytes());
                    let leads_here = path
                        .iter()
                        .chain(std::iter::once(&slot))
                        .enumerate()
                        .all(|(d, s)| hamt::slot(hash, d as u32, bits) == Some(*s));
                    if !leads_here {
                        return Err(misplaced(
                            at,
                            "a HAMT entry is not where its name's hash leads",
                        ));
                    }
                    if out.len() as u64 >= max {
                        return Err(FilesError::TooManyEntries { cid, max });
                    }
                    out.push(entry);
                }
                ShardLink::Shard(sub) => {
                    nodes += 1;
                    if hamt::slot(0, depth + 1, bits).is_none() {
                        return Err(misplaced(sub, "a HAMT is deeper than its hash"));
                    }
                    if nodes > max.max(1) {
                        return Err(FilesError::TooManyEntries { cid, max });
                    }
                    let node = sub_shard(sub, decode_blocking(store, &sub)?, fanout)?;
                    let mut deeper = path.clone();
                    deeper.push(slot);
                    stack.push((node, sub, deeper));
                }
            }
        }
    }
    Ok(out)
}

/// The CID of entry `name` of the directory `dir`; `None` if it has none.
/// A sharded directory is looked up along `name`'s hash, reading one node
/// a level.
///
/// # Errors
/// `dir` (or a sub-shard on the way) is missing or corrupt, or `dir` is not
/// a directory.
pub async fn entry(store: &BlockStore, dir: Cid, name: &str) -> Result<Option<Cid>, FilesError> {
    let read = |cid: Cid| async move {
        let data = store.get(&cid).await?.ok_or(StoreError::NotFound { cid })?;
        Ok::<_, FilesError>(decode_bytes(&cid, &data)?)
    };
    let mut shard = match read(dir).await? {
        Node::Directory(links) => {
            return Ok(links.into_iter().find(|l| l.name == name).map(|l| l.cid));
        }
        Node::Shard(shard) => shard,
        Node::Raw(_) | Node::File { .. } => return Err(FilesError::NotADirectory(dir)),
    };
    let (fanout, bits) = (shard.fanout, shard.bits());
    let hash = hamt::name_hash(name.as_bytes());
    let mut depth = 0;
    loop {
        let Some(slot) = hamt::slot(hash, depth, bits) else {
            return Ok(None);
        };
        depth += 1;
        let Ok(at) = shard.links.binary_search_by_key(&slot, |(s, _)| *s) else {
            return Ok(None);
        };
        match shard.links.swap_remove(at).1 {
            ShardLink::Entry(link) => return Ok((link.name == name).then_some(link.cid)),
            ShardLink::Shard(sub) => shard = sub_shard(sub, read(sub).await?, fanout)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use phase_protocol::cid;

    use super::super::files;
    use super::super::untrusted::{self, Limit};
    use super::*;

    /// A folder of `n` small files, added: its root and the store.
    async fn sharded(n: usize) -> (BlockStore, Cid, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for i in 0..n {
            std::fs::write(src.join(format!("file-{i:05}")), format!("{i}\n")).unwrap();
        }
        let store = BlockStore::memory();
        let (root, _) = files::add_path(&store, src, true).await.unwrap();
        (store, root.cid, dir)
    }

    #[tokio::test]
    async fn sharded_directories_read_as_flat_ones_do() {
        let (store, root, dir) = sharded(6000).await;
        let data = store.get(&root).await.unwrap().unwrap();
        assert!(matches!(unixfs::decode(&root, &data), Ok(Node::Shard(_))));
        // Looked up along the hash, one node a level.
        let one = files::entry(&store, root, "file-01234")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(files::cat_to_vec(&store, one).await.unwrap(), b"1234\n");
        assert_eq!(files::entry(&store, root, "file-6000").await.unwrap(), None);
        assert_eq!(files::entry(&store, root, "").await.unwrap(), None);
        // Exported whole.
        let out = dir.path().join("out");
        files::get(&store, root, out.clone()).await.unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 6000);
        assert_eq!(std::fs::read(out.join("file-05999")).unwrap(), b"5999\n");
        // Its shard nodes are not entries: its 6,000 files fit in 6,000.
        let limit = |entries| Limit {
            bytes: 1 << 20,
            entries,
        };
        let check = |n| untrusted::check_tree_blocking(&store, &root, limit(n));
        check(6000).unwrap();
        assert!(matches!(check(5999), Err(FilesError::TreeTooLarge { .. })));
        // `cat` of it is refused as of any directory.
        let err = files::cat_to_vec(&store, root).await.unwrap_err();
        assert!(matches!(err, FilesError::CidIsADirectory(_)), "{err}");
    }

    /// A shard node with `links` (name, target) over one bitfield byte.
    fn shard_node(links: &[(String, Cid)]) -> Bytes {
        fn field(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
            out.push(key);
            out.push(u8::try_from(bytes.len()).unwrap());
            out.extend_from_slice(bytes);
        }
        let mut node = Vec::new();
        for (name, cid) in links {
            let mut link = Vec::new();
            field(&mut link, 0x0a, &cid.to_bytes());
            field(&mut link, 0x12, name.as_bytes());
            field(&mut node, 0x12, &link);
        }
        // Type 5, Data [1], hashType 0x22, fanout 256.
        field(
            &mut node,
            0x0a,
            &[0x08, 5, 0x12, 1, 1, 0x28, 0x22, 0x30, 0x80, 0x02],
        );
        Bytes::from(node)
    }

    async fn put(store: &BlockStore, node: Bytes) -> Cid {
        let cid = cid::cid_of(cid::DAG_PB, &node);
        store.put(cid, node).await.unwrap();
        cid
    }

    #[tokio::test]
    async fn misplaced_or_repeated_shard_links_are_refused() {
        let store = BlockStore::memory();
        let leaf = cid::raw_cid(b"x");
        store.put(leaf, Bytes::from_static(b"x")).await.unwrap();
        let slot =
            |name: &str, depth| hamt::slot(hamt::name_hash(name.as_bytes()), depth, 8).unwrap();
        let at = |s: u32, name: &str| format!("{s:02X}{name}");
        let dir = tempfile::tempdir().unwrap();
        let get = |root: Cid, n: &str| files::get(&store, root, dir.path().join(n));

        let right = put(&store, shard_node(&[(at(slot("a", 0), "a"), leaf)])).await;
        get(right, "right").await.unwrap();
        assert_eq!(files::entry(&store, right, "a").await.unwrap(), Some(leaf));

        let wrong = put(&store, shard_node(&[(at(slot("a", 0) ^ 1, "a"), leaf)])).await;
        let err = get(wrong, "wrong").await.unwrap_err();
        assert!(
            err.to_string().contains("not where its name's hash leads"),
            "{err}"
        );
        assert_eq!(files::entry(&store, wrong, "a").await.unwrap(), None);

        // One sub-shard linked from two slots: its entry fits only one.
        let sub = put(&store, shard_node(&[(at(slot("a", 1), "a"), leaf)])).await;
        let s = slot("a", 0);
        let (lo, hi) = (s.min(s ^ 1), s.max(s ^ 1));
        let twice = shard_node(&[(at(lo, ""), sub), (at(hi, ""), sub)]);
        let twice = put(&store, twice).await;
        let err = get(twice, "twice").await.unwrap_err();
        assert!(
            err.to_string().contains("not where its name's hash leads"),
            "{err}"
        );
        assert_eq!(files::entry(&store, twice, "a").await.unwrap(), Some(leaf));
    }
}
