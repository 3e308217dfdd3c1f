#![no_main]
//! A HAMT shard node built from arbitrary links, fanout and hash type (the
//! fields a peer controls) never panics the decoder: the input is read as
//! a dag-pb node whose UnixFS data is forced to say "HAMTShard", so every
//! run reaches the shard decoder instead of stopping at the type field.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use phase_protocol::cid::{DAG_PB, cid_of};
use phase_protocol::unixfs;

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fuzz_target!(|input: (Vec<u8>, u64, u64, Vec<u8>)| {
    let (links, fanout, hash_type, bitfield) = input;
    // UnixFS Data { Type = 5 (HAMTShard); Data = bitfield; hashType; fanout }
    let mut fields = Vec::new();
    varint(&mut fields, 1 << 3);
    varint(&mut fields, 5);
    varint(&mut fields, (2 << 3) | 2);
    varint(&mut fields, bitfield.len() as u64);
    fields.extend_from_slice(&bitfield);
    varint(&mut fields, 5 << 3);
    varint(&mut fields, hash_type);
    varint(&mut fields, 6 << 3);
    varint(&mut fields, fanout);
    // PBNode { Links = the fuzzer's bytes (field 2 entries); Data = fields }
    let mut node = links;
    varint(&mut node, (1 << 3) | 2);
    varint(&mut node, fields.len() as u64);
    node.extend_from_slice(&fields);
    let cid = cid_of(DAG_PB, &node);
    let _ = unixfs::decode(&cid, &Bytes::from(node));
});
