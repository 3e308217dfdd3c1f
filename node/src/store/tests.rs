use std::path::Path;

use bytes::Bytes;
use phase_protocol::cid::{self, Cid};
use phase_protocol::unixfs::{self, CHUNK_SIZE};

use super::files::{self, FilesError};
use super::untrusted;
use super::{BlockStore, StoreError, car};

/// Runs one test body against the memory backend, the filesystem backend
/// of a daemon (small blocks inline in the state database) and of a command
/// (every block a file).
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod mem_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::BlockStore::memory()).await; })*
        }
        mod fs_backend {
            $(#[tokio::test] async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = super::BlockStore::open(dir.path().join("store")).await.unwrap();
                super::$name(store).await;
            })*
        }
        // A command's handle: every block a file (small ones too).
        mod fs_files_only {
            $(#[tokio::test] async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = super::BlockStore::open(dir.path().join("store"))
                    .await
                    .unwrap()
                    .with_transient_state();
                super::$name(store).await;
            })*
        }
    };
}

both_backends!(
    untrusted_trees_and_files_are_bounded_by_what_they_expand_to,
    blocks_are_checked_on_put_and_get,
    files_round_trip_with_kubo_cids,
    directories_round_trip,
    gc_keeps_exactly_the_pinned_dags,
    gc_keeps_what_is_held_for_a_while_until_then,
    car_round_trips_and_refuses_damage,
    hostile_dags_are_refused,
    large_files_are_read_ahead_and_every_failure_still_reported,
    tar_uploads_are_the_same_directories_and_refuse_what_leaves_them,
);

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

async fn blocks_are_checked_on_put_and_get(store: BlockStore) {
    let data = Bytes::from_static(b"block");
    let cid = cid::raw_cid(&data);
    store.put(cid, data.clone()).await.unwrap();
    assert_eq!(store.get(&cid).await.unwrap(), Some(data));
    assert!(store.has(&cid).await.unwrap());
    let wrong = cid::raw_cid(b"other");
    assert!(matches!(
        store.put(wrong, Bytes::from_static(b"block")).await,
        Err(StoreError::HashMismatch { .. })
    ));
    assert!(!store.has(&wrong).await.unwrap());
    store.corrupt_for_test(&cid, b"blocc");
    // Hashed once, on the way in: a read trusts the node's own disk...
    assert_eq!(
        store.get(&cid).await.unwrap(),
        Some(Bytes::from_static(b"blocc"))
    );
    // ...unless asked to re-hash, and `verify` always does.
    let paranoid = store.clone().with_hash_on_read(true);
    assert!(matches!(
        paranoid.get(&cid).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.verify(vec![cid]).await.unwrap().corrupt, vec![cid]);
    assert!(store.delete(&cid).await.unwrap());
    assert_eq!(store.get(&cid).await.unwrap(), None);
}

/// A writer that fails once it has taken `left` bytes.
struct FailAfter {
    left: usize,
    taken: Vec<u8>,
}

impl std::io::Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::other("disk full"));
        }
        self.left -= buf.len();
        self.taken.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn large_files_are_read_ahead_and_every_failure_still_reported(store: BlockStore) {
    // 9 MiB + 5: over the read-ahead threshold, a two-level DAG.
    let data = pattern(36 * CHUNK_SIZE + 5, 7);
    let root = files::add_bytes(&store, Bytes::from(data.clone()))
        .await
        .unwrap();
    let (s, d) = (store.clone(), data.clone());
    tokio::task::spawn_blocking(move || {
        let data = d;
        // Whole and identical.
        let mut out = Vec::new();
        assert_eq!(
            files::cat_blocking(&s, &root.cid, &mut out).unwrap(),
            data.len() as u64
        );
        assert!(out == data, "cat of a read-ahead file differs");
        // The writer fails part-way: its error comes back, and the reader
        // thread stops instead of hanging on a full channel.
        let mut full = FailAfter {
            left: 3 * CHUNK_SIZE,
            taken: Vec::new(),
        };
        let err = files::cat_blocking(&s, &root.cid, &mut full).unwrap_err();
        assert!(format!("{err:?}").contains("disk full"), "{err:?}");
        assert_eq!(full.taken, data[..3 * CHUNK_SIZE]);
    })
    .await
    .unwrap();
    // A block deep in the file is gone: the reader's error comes back.
    let gone = cid::raw_cid(&data[20 * CHUNK_SIZE..21 * CHUNK_SIZE]);
    assert!(store.delete(&gone).await.unwrap());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let err = files::cat_blocking(&store, &root.cid, &mut out).unwrap_err();
        assert!(
            matches!(err, FilesError::Store(StoreError::NotFound { cid }) if cid == gone),
            "{err}"
        );
        assert!(out == data[..20 * CHUNK_SIZE]);
    })
    .await
    .unwrap();
}

async fn files_round_trip_with_kubo_cids(store: BlockStore) {
    for len in [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17] {
        let data = pattern(len, len);
        let root = files::add_bytes(&store, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(root.cid, unixfs::file_cid(&data), "{len} bytes");
        assert_eq!(root.filesize, len as u64);
        assert_eq!(
            files::cat_to_vec(&store, root.cid).await.unwrap(),
            data,
            "{len} bytes"
        );
    }
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("b/d")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(root.join("b/c.bin"), pattern(300_000, 3)).unwrap();
    std::fs::write(root.join("b/d/e.txt"), "").unwrap();
    std::fs::write(root.join("Z.txt"), "zulu").unwrap();
}

async fn directories_round_trip(store: BlockStore) {
    let src = tempfile::tempdir().unwrap();
    write_tree(&src.path().join("root"));
    let (root, added) = files::add_path(&store, src.path().join("root"), true)
        .await
        .unwrap();
    // The independent importer's CID for this tree (protocol/src/unixfs.rs).
    assert_eq!(
        root.cid.to_string(),
        "bafybeihqi6tba55jgy4e5nuu2btuiayjzpmzm5av76iyhy7mxhfnrmzynq"
    );
    let paths: Vec<_> = added.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        paths,
        ["", "Z.txt", "a.txt", "b", "b/c.bin", "b/d", "b/d/e.txt"]
    );

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("copy");
    files::get(&store, root.cid, target.clone()).await.unwrap();
    assert_eq!(
        std::fs::read(target.join("b/c.bin")).unwrap(),
        pattern(300_000, 3)
    );
    assert_eq!(
        std::fs::read_to_string(target.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert!(target.join("b/d/e.txt").is_file());
    assert!(matches!(
        files::get(&store, root.cid, target).await,
        Err(FilesError::Exists(_))
    ));
    assert!(matches!(
        files::cat_to_vec(&store, root.cid).await,
        Err(FilesError::CidIsADirectory(_))
    ));
    assert!(matches!(
        files::add_path(&store, src.path().join("root"), false).await,
        Err(FilesError::IsADirectory(_))
    ));
}

/// A tar archive of `entries` (name bytes as given, unchecked: so it can
/// hold what a hostile client sends).
fn raw_tar(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

async fn add_tar(store: &BlockStore, tar: Vec<u8>) -> Result<unixfs::Root, FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || files::add_tar_blocking(&store, &tar[..]))
        .await
        .unwrap()
}

async fn tar_uploads_are_the_same_directories_and_refuse_what_leaves_them(store: BlockStore) {
    let src = tempfile::tempdir().unwrap();
    write_tree(&src.path().join("root"));
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_dir_all(".", src.path().join("root"))
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let root = add_tar(&store, tar).await.unwrap();
    // The same CID as `add -r` of the folder.
    assert_eq!(
        root.cid.to_string(),
        "bafybeihqi6tba55jgy4e5nuu2btuiayjzpmzm5av76iyhy7mxhfnrmzynq"
    );
    // Files whose folders the archive never names, and an empty archive.
    let implied = raw_tar(&[(b"x/y/z.txt", tar::EntryType::Regular, b"deep")]);
    let root = add_tar(&store, implied).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    files::get(&store, root.cid, out.path().join("t"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.path().join("t/x/y/z.txt")).unwrap(),
        b"deep"
    );
    let empty = add_tar(&store, tar::Builder::new(Vec::new()).into_inner().unwrap()).await;
    assert!(empty.is_ok(), "{empty:?}");

    use tar::EntryType::{Directory, Regular, Symlink};
    for (entries, says) in [
        (
            vec![(&b"../up.txt"[..], Regular, &b"x"[..])],
            "leaves the archive",
        ),
        (
            vec![(&b"/etc/cron.d/x"[..], Regular, &b"x"[..])],
            "leaves the archive",
        ),
        (
            vec![(&b"a/../../b"[..], Regular, &b"x"[..])],
            "leaves the archive",
        ),
        (
            vec![(&b"link"[..], Symlink, &b""[..])],
            "not a regular file or a directory",
        ),
        (
            vec![
                (&b"a.txt"[..], Regular, &b"1"[..]),
                (&b"a.txt"[..], Regular, &b"2"[..]),
            ],
            "twice",
        ),
        (
            vec![
                (&b"a"[..], Regular, &b"1"[..]),
                (&b"a/b"[..], Regular, &b"2"[..]),
            ],
            "a is a file",
        ),
        (
            vec![
                (&b"d/"[..], Directory, &b""[..]),
                (&b"d"[..], Regular, &b"2"[..]),
            ],
            "twice",
        ),
    ] {
        match add_tar(&store, raw_tar(&entries)).await {
            Err(FilesError::Tar(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("{says}: {other:?}"),
        }
    }
    let garbage = add_tar(&store, vec![7u8; 1536]).await;
    assert!(matches!(garbage, Err(FilesError::Tar(_))), "{garbage:?}");
}

async fn gc_keeps_exactly_the_pinned_dags(store: BlockStore) {
    let kept = files::add_bytes(&store, Bytes::from(pattern(2 * CHUNK_SIZE + 1, 1)))
        .await
        .unwrap();
    let dropped = files::add_bytes(&store, Bytes::from(pattern(2 * CHUNK_SIZE + 1, 2)))
        .await
        .unwrap();
    store.pin(&kept.cid).await.unwrap();
    assert_eq!(store.pins().await.unwrap(), [kept.cid]);
    assert_eq!(store.gc().await.unwrap(), 4); // 3 leaves and a root
    assert_eq!(
        files::cat_to_vec(&store, kept.cid).await.unwrap(),
        pattern(2 * CHUNK_SIZE + 1, 1)
    );
    assert!(!store.has(&dropped.cid).await.unwrap());
    assert!(store.unpin(&kept.cid).await.unwrap());
    assert_eq!(store.gc().await.unwrap(), 4);
    assert!(store.cids().await.unwrap().is_empty());
}

async fn gc_keeps_what_is_held_for_a_while_until_then(store: BlockStore) {
    let fetched = files::add_bytes(&store, Bytes::from(pattern(2 * CHUNK_SIZE + 1, 3)))
        .await
        .unwrap();
    store.hold_for([fetched.cid], std::time::Duration::from_secs(600));
    assert_eq!(store.gc().await.unwrap(), 0, "held: kept");
    assert!(store.has(&fetched.cid).await.unwrap());
    // A hold that has run out keeps nothing.
    store.hold_for([fetched.cid], std::time::Duration::ZERO);
    let other = files::add_bytes(&store, Bytes::from(pattern(2 * CHUNK_SIZE + 1, 4)))
        .await
        .unwrap();
    store.hold_for([other.cid], std::time::Duration::ZERO);
    assert_eq!(
        store.gc().await.unwrap(),
        4,
        "only the expired one's DAG goes"
    );
    assert!(store.has(&fetched.cid).await.unwrap());
}

async fn car_round_trips_and_refuses_damage(store: BlockStore) {
    let data = pattern(3 * CHUNK_SIZE + 5, 9);
    let root = files::add_bytes(&store, Bytes::from(data.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.car");
    assert_eq!(
        car::export(&store, root.cid, path.clone()).await.unwrap(),
        5
    );

    let other = BlockStore::memory();
    let (roots, n) = car::import(&other, path.clone()).await.unwrap();
    assert_eq!((roots, n), (vec![root.cid], 5));
    assert_eq!(files::cat_to_vec(&other, root.cid).await.unwrap(), data);

    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.car");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let fresh = BlockStore::memory();
    let err = car::import(&fresh, truncated).await.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // What was stored before the damage is whole and valid.
    for cid in fresh.cids().await.unwrap() {
        fresh.get(&cid).await.unwrap().unwrap();
    }
    let mut corrupted = bytes.clone();
    let last = corrupted.len() - 10;
    corrupted[last] ^= 0xff;
    let corrupted_path = dir.path().join("corrupted.car");
    std::fs::write(&corrupted_path, corrupted).unwrap();
    assert!(matches!(
        car::import(&BlockStore::memory(), corrupted_path).await,
        Err(car::CarError::Store(StoreError::HashMismatch { .. }))
    ));
    let garbage = dir.path().join("garbage.car");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
    assert!(matches!(
        car::import(&BlockStore::memory(), garbage).await,
        Err(car::CarError::Invalid { .. })
    ));
}

/// A dag-pb node by hand: links of (cid, name), then UnixFS data.
fn pb_node(links: &[(Cid, &str)], unixfs_data: &[u8]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
        out.push(key);
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
    let mut node = Vec::new();
    for (cid, name) in links {
        let mut link = Vec::new();
        field(&mut link, 0x0a, &cid.to_bytes());
        field(&mut link, 0x12, name.as_bytes());
        field(&mut node, 0x12, &link);
    }
    field(&mut node, 0x0a, unixfs_data);
    node
}

async fn hostile_dags_are_refused(store: BlockStore) {
    let leaf = files::add_bytes(&store, Bytes::from_static(b"secret"))
        .await
        .unwrap();
    // A directory whose entry tries to climb out of the target.
    for name in ["../x", "a/b", ".."] {
        let node = pb_node(&[(leaf.cid, name)], &[0x08, 0x01]);
        let cid = cid::cid_of(cid::DAG_PB, &node);
        store.put(cid, Bytes::from(node)).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = files::get(&store, cid, out.path().join("t"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FilesError::Store(StoreError::Unixfs { .. })),
            "{name}: {err}"
        );
        assert!(!out.path().join("x").exists());
        assert!(!out.path().parent().unwrap().join("x").exists());
    }
    // A chain of 10,000 file nodes, each covering 6 bytes through one child.
    let mut top = leaf.cid;
    for _ in 0..10_000 {
        let node = pb_node(&[(top, "")], &[0x08, 0x02, 0x18, 0x06, 0x20, 0x06]);
        top = cid::cid_of(cid::DAG_PB, &node);
        store.put(top, Bytes::from(node)).await.unwrap();
    }
    assert!(matches!(
        files::cat_to_vec(&store, top).await,
        Err(FilesError::Store(StoreError::TooDeep))
    ));
    // A node that lies about its size.
    let liar = pb_node(&[(leaf.cid, "")], &[0x08, 0x02, 0x18, 0x07, 0x20, 0x07]);
    let liar_cid = cid::cid_of(cid::DAG_PB, &liar);
    store.put(liar_cid, Bytes::from(liar)).await.unwrap();
    assert!(matches!(
        files::cat_to_vec(&store, liar_cid).await,
        Err(FilesError::Store(StoreError::Inconsistent { .. }))
    ));
}

mod round_trip {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Random trees: up to 12 files at paths of depth 1 to 3 over a small
    /// alphabet (so directories are shared), sizes around chunk boundaries.
    fn arb_tree() -> impl Strategy<Value = BTreeMap<Vec<String>, (usize, usize)>> {
        let name = prop::sample::select(vec!["a", "b", "c.txt", "Δ", "e f"]).prop_map(String::from);
        let size =
            prop::sample::select(vec![0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1]);
        prop::collection::btree_map(
            prop::collection::vec(name, 1..4),
            (size, any::<usize>()),
            1..12,
        )
    }

    fn materialise(root: &Path, tree: &BTreeMap<Vec<String>, (usize, usize)>) -> usize {
        let mut files = 0;
        for (path, (size, seed)) in tree {
            let full = path.iter().fold(root.to_path_buf(), |p, c| p.join(c));
            // A path that is both a file and a directory prefix: keep the first.
            if std::fs::create_dir_all(full.parent().unwrap()).is_ok()
                && !full.exists()
                && std::fs::write(&full, pattern(*size, *seed % 251)).is_ok()
            {
                files += 1;
            }
        }
        files
    }

    fn same_tree(a: &Path, b: &Path) {
        let mut names_a: Vec<_> = std::fs::read_dir(a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names_b: Vec<_> = std::fs::read_dir(b)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names_a.sort();
        names_b.sort();
        assert_eq!(names_a, names_b);
        for name in names_a {
            let (pa, pb) = (a.join(&name), b.join(&name));
            if pa.is_dir() {
                same_tree(&pa, &pb);
            } else {
                assert_eq!(
                    std::fs::read(&pa).unwrap(),
                    std::fs::read(&pb).unwrap(),
                    "{}",
                    pa.display()
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn get_of_add_is_the_same_tree(tree in arb_tree()) {
            let store = BlockStore::memory();
            let src = tempfile::tempdir().unwrap();
            let root = src.path().join("root");
            std::fs::create_dir(&root).unwrap();
            materialise(&root, &tree);
            let (added, _) = files::add_path_blocking(&store, &root, true).unwrap();
            let out = tempfile::tempdir().unwrap();
            files::get_blocking(&store, &added.cid, &out.path().join("copy")).unwrap();
            same_tree(&root, &out.path().join("copy"));
            // Adding the copy gives the same root: the CID is a function of content.
            let (again, _) = files::add_path_blocking(&store, &out.path().join("copy"), true).unwrap();
            prop_assert_eq!(again.cid, added.cid);
        }

        #[test]
        fn cat_of_add_is_the_same_file(size in 0..3 * CHUNK_SIZE, seed in 0..251usize) {
            let store = BlockStore::memory();
            let data = pattern(size, seed);
            let root = files::add_reader_blocking(&store, &data[..], Path::new("x")).unwrap();
            let mut out = Vec::new();
            files::cat_blocking(&store, &root.cid, &mut out).unwrap();
            prop_assert_eq!(out, data);
        }
    }
}

/// A directory of `levels` levels, each linking the one below twice under
/// two names, over one file: about `levels` blocks that export as
/// 2^`levels` copies of the file.
pub(crate) async fn doubling_tree(store: &BlockStore, file: &[u8], levels: usize) -> Cid {
    let mut root = files::add_bytes(store, Bytes::copy_from_slice(file))
        .await
        .unwrap();
    for _ in 0..levels {
        let (blocks, dir) =
            unixfs::directory(vec![("a".into(), root), ("b".into(), root)]).unwrap();
        let [block] = &blocks[..] else {
            panic!("one block")
        };
        store
            .put(block.cid, Bytes::from(block.data.clone()))
            .await
            .unwrap();
        root = dir;
    }
    root.cid
}

async fn untrusted_trees_and_files_are_bounded_by_what_they_expand_to(store: BlockStore) {
    let limit = untrusted::Limit {
        bytes: 1 << 30,
        entries: untrusted::MAX_ENTRIES,
    };
    // 2^20 links to one 256 KiB block: 256 GiB if written out.
    let bytes_bomb = doubling_tree(&store, &pattern(CHUNK_SIZE, 3), 20).await;
    let err = untrusted::check_tree_blocking(&store, &bytes_bomb, limit).unwrap_err();
    assert!(matches!(err, FilesError::TreeTooLarge { .. }), "{err}");
    // 2^40 empty files: no bytes at all, too many entries.
    let entries_bomb = doubling_tree(&store, b"", 40).await;
    let err = untrusted::check_tree_blocking(&store, &entries_bomb, limit).unwrap_err();
    assert!(matches!(err, FilesError::TreeTooLarge { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let err = untrusted::get_capped(&store, entries_bomb, target.clone(), limit)
        .await
        .unwrap_err();
    assert!(matches!(err, FilesError::TreeTooLarge { .. }), "{err}");
    assert!(!target.exists(), "refused before anything is written");
    // A small tree within the limit is written.
    let small = doubling_tree(&store, b"ok", 3).await;
    untrusted::get_capped(&store, small, target.clone(), limit)
        .await
        .unwrap();
    assert_eq!(std::fs::read(target.join("a/b/a")).unwrap(), b"ok");
    // A file is read only up to its cap.
    let file = files::add_bytes(&store, Bytes::from(pattern(3 * CHUNK_SIZE, 4)))
        .await
        .unwrap();
    let err = untrusted::cat_to_vec_capped(&store, file.cid, CHUNK_SIZE as u64)
        .await
        .unwrap_err();
    assert!(matches!(err, FilesError::TooLarge { .. }), "{err}");
    assert_eq!(
        untrusted::cat_to_vec_capped(&store, file.cid, 3 * CHUNK_SIZE as u64)
            .await
            .unwrap(),
        pattern(3 * CHUNK_SIZE, 4)
    );
}

/// The files under `store/blocks`.
fn block_files(root: &Path) -> usize {
    walkdir(&root.join("blocks"))
}

fn walkdir(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walkdir(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[tokio::test]
async fn small_blocks_of_the_database_holder_are_rows_and_every_process_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let daemon = BlockStore::open(root.clone()).await.unwrap().held_alone();
    // A small file and a directory: inline; a 1 MiB file's leaves: files.
    let small = files::add_bytes(&daemon, Bytes::from_static(b"result"))
        .await
        .unwrap();
    let big = files::add_bytes(&daemon, Bytes::from(pattern(4 * CHUNK_SIZE, 5)))
        .await
        .unwrap();
    assert_eq!(
        block_files(&root),
        4,
        "the four 256 KiB leaves, not the rest"
    );
    assert!(daemon.has(&small.cid).await.unwrap());
    assert_eq!(daemon.cids().await.unwrap().len(), 6);
    assert_eq!(
        files::cat_to_vec(&daemon, big.cid).await.unwrap(),
        pattern(4 * CHUNK_SIZE, 5)
    );
    // A command beside the daemon cannot open its database: the inline
    // blocks are not there for it until the daemon writes them out.
    let command = BlockStore::open(root.clone())
        .await
        .unwrap()
        .with_transient_state();
    assert!(!command.has(&small.cid).await.unwrap());
    assert_eq!(daemon.export_inline_blocking(&big.cid).unwrap(), 1);
    assert_eq!(daemon.export_inline_blocking(&big.cid).unwrap(), 0, "once");
    assert_eq!(
        files::cat_to_vec(&command, big.cid).await.unwrap(),
        pattern(4 * CHUNK_SIZE, 5)
    );
    // A guest state: its root and its value blocks (dag-cbor links) go
    // out with it.
    let state = daemon.clone();
    let state_root = tokio::task::spawn_blocking(move || {
        let (empty, bytes) = phase_protocol::guest_state::empty();
        state.put_blocking(&empty, &bytes).unwrap();
        let mut guest =
            phase_protocol::guest_state::GuestState::open(state.clone(), &empty).unwrap();
        guest.set(b"big".to_vec(), vec![7; 2000]).unwrap();
        let (summary, blocks) = guest.commit();
        for (cid, data) in blocks {
            state.put_blocking(&cid, &data).unwrap();
        }
        summary.root
    })
    .await
    .unwrap();
    assert_eq!(block_files(&root), 5, "the state is inline");
    assert_eq!(
        daemon.export_inline_blocking(&state_root).unwrap(),
        2,
        "root and value"
    );
    assert_eq!(block_files(&root), 7);
    // A command writes files, small ones too.
    let note = files::add_bytes(&command, Bytes::from_static(b"note"))
        .await
        .unwrap();
    assert_eq!(block_files(&root), 8);
    assert!(daemon.has(&note.cid).await.unwrap());
    // Once the daemon is gone, a command reads its inline blocks itself.
    drop(daemon);
    assert_eq!(
        files::cat_to_vec(&command, small.cid).await.unwrap(),
        b"result"
    );
    // gc and delete clear both places: the file of the root the daemon
    // wrote out and its row.
    assert_eq!(command.gc().await.unwrap(), 10);
    assert_eq!(block_files(&root), 0);
    let again = BlockStore::open(root).await.unwrap();
    assert!(again.cids().await.unwrap().is_empty());
}
