#![no_main]
//! Decoding arbitrary bytes as a dag-pb UnixFS node (a block from a peer:
//! a file, a directory or a HAMT shard) never panics, and listing its links
//! (what `gc`, pinning and export do) never panics either.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use phase_protocol::cid::{DAG_PB, cid_of};
use phase_protocol::unixfs;

fuzz_target!(|data: &[u8]| {
    let cid = cid_of(DAG_PB, data);
    let _ = unixfs::decode(&cid, &Bytes::copy_from_slice(data));
    let _ = unixfs::links(&cid, data);
});
