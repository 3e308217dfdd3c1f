//! Tests of the UnixFS encoder and reader.

mod unit {
    use super::super::*;

    fn blocks_of(bytes: &[u8]) -> (Cid, Vec<Block>) {
        let mut b = FileBuilder::new();
        let mut out = Vec::new();
        b.write(bytes, &mut out);
        let root = b.finish(&mut out);
        (root.cid, out)
    }

    #[test]
    fn small_files_are_one_raw_block() {
        let (root, blocks) = blocks_of(b"hello world\n");
        assert_eq!(
            root.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        assert_eq!(blocks.len(), 1);
        let (root, blocks) = blocks_of(b"");
        assert_eq!(
            root.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(blocks.len(), 1);
        assert_eq!(file_cid(&[7; CHUNK_SIZE]), cid::raw_cid(&[7; CHUNK_SIZE]));
    }

    #[test]
    fn tree_shape_is_balanced() {
        // 175 chunks: a full node of 174 leaves and a node of one leaf under the root.
        let data = vec![1u8; CHUNK_SIZE * 175];
        let (root, blocks) = blocks_of(&data);
        let leaves = blocks.iter().filter(|b| b.cid.codec() == cid::RAW).count();
        let nodes = blocks
            .iter()
            .filter(|b| b.cid.codec() == cid::DAG_PB)
            .count();
        assert_eq!(leaves, 175);
        assert_eq!(nodes, 3);
        assert_eq!(blocks.last().unwrap().cid, root);
        // Exactly 174 chunks fit one node: the root is that node.
        let (root, blocks) = blocks_of(&data[..CHUNK_SIZE * 174]);
        assert_eq!(
            blocks
                .iter()
                .filter(|b| b.cid.codec() == cid::DAG_PB)
                .count(),
            1
        );
        assert_eq!(root.codec(), cid::DAG_PB);
    }

    #[test]
    fn split_writes_give_the_same_root() {
        let data: Vec<u8> = (0..CHUNK_SIZE * 2 + 17).map(|i| (i % 251) as u8).collect();
        let mut b = FileBuilder::new();
        let mut out = Vec::new();
        for piece in data.chunks(1000) {
            b.write(piece, &mut out);
        }
        assert_eq!(b.finish(&mut out).cid, file_cid(&data));
    }
}

/// Root CIDs computed with an independent implementation: Helia's
/// `ipfs-unixfs-importer` 17.1.1 (npm) with Kubo's defaults (CIDv1, raw
/// leaves, 262144-byte chunks, balanced layout, 174 links per node); the
/// script is in `scripts/unixfs-vectors.mjs`.
mod vectors {
    use super::super::*;

    /// Byte `i` of a vector file: `(i * 31 + seed) % 251`.
    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    }

    fn file(bytes: &[u8]) -> (Root, Vec<Block>) {
        let mut b = FileBuilder::new();
        let mut out = Vec::new();
        b.write(bytes, &mut out);
        let root = b.finish(&mut out);
        (root, out)
    }

    #[test]
    fn files_match_the_independent_importer() {
        let cases = [
            (
                0,
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ),
            (
                CHUNK_SIZE + 1,
                "bafybeich6cqd6yabw3cku6edwmz4rvwe275nx2l6ootvc2bpbt5bdvarua",
            ),
            (
                1 << 20,
                "bafybeihui4agg3d5vku5qnjg6luskvvue7twfha5k4uw4mowbowx4i6uke",
            ),
            (
                174 * CHUNK_SIZE + 1,
                "bafybeibo5yjphmmdq6aigqtgrijost25l5lmv5l37von7hrjv7sagnx4sy",
            ),
        ];
        for (len, expected) in cases {
            assert_eq!(
                file(&pattern(len, 7)).0.cid.to_string(),
                expected,
                "file of {len} bytes"
            );
        }
    }

    #[test]
    fn a_nested_directory_matches_the_independent_importer() {
        let a = file(b"alpha\n").0;
        let c = file(&pattern(300_000, 3)).0;
        let e = file(b"").0;
        let z = file(b"zulu").0;
        assert_eq!(
            c.cid.to_string(),
            "bafybeibfy3gtrm3eccfekgjn7fzgchattlxsethyx5ctm7rnf47mng4ua4"
        );
        let (_, d) = directory(vec![("e.txt".into(), e)]).unwrap();
        assert_eq!(
            d.cid.to_string(),
            "bafybeibwauymq45uk4lxgeopsmqe6c2r5mt7zqxv5nsc3ffwi4h25awfba"
        );
        let (_, b) = directory(vec![("d".into(), d), ("c.bin".into(), c)]).unwrap();
        assert_eq!(
            b.cid.to_string(),
            "bafybeib7x5clyexp6tcj2hm6izsiyp2bgwqqyrapgx3yhy4v47t5db5zzi"
        );
        let (blocks, root) = directory(vec![
            ("a.txt".into(), a),
            ("b".into(), b),
            ("Z.txt".into(), z),
        ])
        .unwrap();
        assert_eq!(
            root.cid.to_string(),
            "bafybeihqi6tba55jgy4e5nuu2btuiayjzpmzm5av76iyhy7mxhfnrmzynq"
        );
        // And it reads back: entries sorted by name, bytewise.
        let Node::Directory(entries) =
            decode(&root.cid, &Bytes::from(blocks[0].data.clone())).unwrap()
        else {
            panic!("not a directory")
        };
        let names: Vec<_> = entries.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Z.txt", "a.txt", "b"]);
    }

    #[test]
    fn file_nodes_decode_consistently() {
        let data = pattern(CHUNK_SIZE * 3 + 5, 1);
        let (root, blocks) = file(&data);
        let top = blocks.iter().find(|b| b.cid == root.cid).unwrap();
        let Node::File {
            children,
            filesize,
            data: inline,
        } = decode(&root.cid, &Bytes::from(top.data.clone())).unwrap()
        else {
            panic!("not a file node")
        };
        assert_eq!(filesize, data.len() as u64);
        assert!(inline.is_empty());
        assert_eq!(children.len(), 4);
        assert_eq!(children[3].1, 5);
    }

    #[test]
    fn bad_names_and_bad_nodes_are_refused() {
        let e = file(b"").0;
        for name in ["", ".", "..", "a/b", "../x", "nul\0"] {
            assert!(
                matches!(directory(vec![(name.into(), e)]), Err(UnixfsError::Name(_))),
                "{name:?}"
            );
        }
        assert!(matches!(
            directory(vec![("x".into(), e), ("x".into(), e)]),
            Err(UnixfsError::DuplicateName(_))
        ));
        let pb = cid::cid_of(cid::DAG_PB, b"x");
        for garbage in [
            &b"\xff"[..],
            b"\x0a\x05ab",
            b"\x12\x02\x08\x01",
            b"\x1a\x00",
        ] {
            assert!(
                decode(&pb, &Bytes::copy_from_slice(garbage)).is_err(),
                "{garbage:?}"
            );
        }
    }
}

/// HAMT-sharded directories, against root CIDs from Helia's importer
/// (ipfs-unixfs-importer 17.1.1 with Kubo's settings, `interop/helia/import.mjs`)
/// over the same entries: entry `i` holds the text `"{i}\n"`.
mod sharded {
    use super::super::*;

    fn entries(n: usize, name: impl Fn(usize) -> String) -> Vec<(String, Root)> {
        (0..n)
            .map(|i| {
                let mut b = FileBuilder::new();
                let mut out = Vec::new();
                b.write(format!("{i}\n").as_bytes(), &mut out);
                (name(i), b.finish(&mut out))
            })
            .collect()
    }

    fn by_cid(blocks: &[Block]) -> std::collections::HashMap<Cid, Bytes> {
        blocks
            .iter()
            .map(|b| (b.cid, Bytes::from(b.data.clone())))
            .collect()
    }

    /// Every entry of the trie under `cid`, checking each entry's hash
    /// leads to where it sits.
    fn walk(
        blocks: &std::collections::HashMap<Cid, Bytes>,
        cid: Cid,
        depth: u32,
        out: &mut Vec<PbLink>,
    ) {
        let Node::Shard(shard) = decode(&cid, &blocks[&cid]).unwrap() else {
            panic!("not a shard node")
        };
        assert_eq!(shard.fanout, 256);
        for (at, link) in shard.links {
            match link {
                ShardLink::Entry(l) => {
                    let h = hamt::name_hash(l.name.as_bytes());
                    assert_eq!(hamt::slot(h, depth, 8), Some(at), "{}", l.name);
                    out.push(l);
                }
                ShardLink::Shard(sub) => walk(blocks, sub, depth + 1, out),
            }
        }
    }

    #[test]
    fn a_directory_at_the_threshold_stays_one_node() {
        // 4,096 links of 28 + 36 bytes: exactly 256 KiB, not over it.
        let (blocks, root) = directory(entries(4096, |i| format!("entry-{i:022}"))).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            root.cid.to_string(),
            "bafybeibswav5qkpmyrk3vnblveyn7ivbninb2yii2etixk5unxo2vglwgu"
        );
    }

    #[test]
    fn one_more_entry_shards_it_as_helia_does() {
        let (blocks, root) = directory(entries(4097, |i| format!("entry-{i:022}"))).unwrap();
        assert!(blocks.len() > 1);
        assert_eq!(blocks.last().unwrap().cid, root.cid);
        assert_eq!(
            root.cid.to_string(),
            "bafybeigk7dpwz2gkphp73oj2lzrgcqztrk3scquqxkgmsdivvix74a7eea"
        );
        let (blocks, root) = directory(entries(8000, |i| format!("file-{i:05}"))).unwrap();
        assert_eq!(
            root.cid.to_string(),
            "bafybeih5lunuw3xvtbdz7npmzyjq45kr6grglhxc5g2pijy466lnxg36lu"
        );
        // Reads back: every entry once, each where its hash leads.
        let mut found = Vec::new();
        walk(&by_cid(&blocks), root.cid, 0, &mut found);
        let mut names: Vec<_> = found.iter().map(|l| l.name.clone()).collect();
        names.sort();
        assert_eq!(
            names,
            (0..8000)
                .map(|i| format!("file-{i:05}"))
                .collect::<Vec<_>>()
        );
        // The dag size counts every block once.
        let total: u64 = blocks.iter().map(|b| b.data.len() as u64).sum::<u64>()
            + found.iter().map(|l| l.tsize).sum::<u64>();
        assert_eq!(root.tsize, total);
    }

    #[test]
    fn the_same_entries_in_any_order_give_the_same_root() {
        let mut e = entries(5000, |i| format!("name-{i}-{}", "x".repeat(i % 40)));
        let (_, a) = directory(e.clone()).unwrap();
        e.reverse();
        let (_, b) = directory(e).unwrap();
        assert_eq!(a.cid, b.cid);
    }

    #[test]
    fn bad_shard_nodes_are_refused() {
        let pb = cid::cid_of(cid::DAG_PB, b"x");
        let leaf = cid::raw_cid(b"");
        let node = |names: &[&str], hash: u64, fanout: u64| {
            let mut node = Vec::new();
            for name in names {
                let mut link = Vec::new();
                put_bytes_field(&mut link, 1, &leaf.to_bytes());
                put_bytes_field(&mut link, 2, name.as_bytes());
                put_varint_field(&mut link, 3, 0);
                put_bytes_field(&mut node, 2, &link);
            }
            let mut unixfs = Vec::new();
            put_varint_field(&mut unixfs, 1, 5);
            put_bytes_field(&mut unixfs, 2, &[1]);
            put_varint_field(&mut unixfs, 5, hash);
            put_varint_field(&mut unixfs, 6, fanout);
            put_bytes_field(&mut node, 1, &unixfs);
            Bytes::from(node)
        };
        assert!(decode(&pb, &node(&["00a", "0Fb", "FF"], 0x22, 256)).is_ok());
        for (names, hash, fanout) in [
            (&["00a"][..], 0x12, 256),    // not murmur3
            (&["00a"], 0x22, 100),        // fanout not a power of two
            (&["00a"], 0x22, 1 << 20),    // fanout too large
            (&["0"], 0x22, 256),          // no slot prefix
            (&["zza"], 0x22, 256),        // not hex
            (&["01a", "01b"], 0x22, 256), // a slot twice
            (&["02a", "01b"], 0x22, 256), // out of order
            (&["00.."], 0x22, 256),       // an escaping entry name
            (&["00a/b"], 0x22, 256),
        ] {
            assert!(
                decode(&pb, &node(names, hash, fanout)).is_err(),
                "{names:?}"
            );
        }
    }
}
