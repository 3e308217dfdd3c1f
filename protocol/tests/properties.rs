//! Property tests of every wire type: round trips, arbitrary bytes, size
//! caps, and the integrity of signed receipts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use phase_protocol::block::{BlockRequest, BlockResponse, WireBlock};
use phase_protocol::cid::{self, Cid};
use phase_protocol::guest_state;
use phase_protocol::job::{FsAccess, JobState, LimitKind, Permissions, WorkerInfo};
use phase_protocol::receipt::ReceiptError;
use phase_protocol::wire::MAX_RECEIPT;
use phase_protocol::{
    ByteSize, Capability, DecodeError, JobId, JobRequest, JobResponse, JobSpec, Keypair, Limits,
    Message, PeerId, Receipt, Rejection, SignedReceipt, Status,
};
use proptest::prelude::*;

fn arb_cid() -> impl Strategy<Value = Cid> {
    (
        prop::collection::vec(any::<u8>(), 0..16),
        prop_oneof![Just(cid::RAW), Just(cid::DAG_PB), Just(cid::DAG_CBOR)],
    )
        .prop_map(|(bytes, codec)| cid::cid_of(codec, &bytes))
}

fn arb_key() -> impl Strategy<Value = Keypair> {
    any::<[u8; 32]>().prop_map(|seed| Keypair::ed25519_from_bytes(seed).unwrap())
}

fn arb_peer() -> impl Strategy<Value = PeerId> {
    arb_key().prop_map(|k| k.public().to_peer_id())
}

fn arb_limits() -> impl Strategy<Value = Limits> {
    (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(fuel, memory, ms, out)| {
        Limits {
            fuel,
            memory: ByteSize(memory),
            timeout: Duration::from_millis(u64::from(ms)),
            max_output: ByteSize(out),
        }
    })
}

fn arb_capability() -> impl Strategy<Value = Capability> {
    "[a-z0-9-]{1,64}".prop_map(|s| s.parse().unwrap())
}

fn arb_permissions() -> impl Strategy<Value = Permissions> {
    (
        prop_oneof![
            Just(FsAccess::None),
            Just(FsAccess::Read),
            Just(FsAccess::Write)
        ],
        prop::collection::vec("[a-z0-9.]{1,12}:[0-9]{1,5}", 0..3),
    )
        .prop_map(|(fs, net)| Permissions { fs, net })
}

fn arb_spec() -> impl Strategy<Value = JobSpec> {
    (
        arb_cid(),
        prop::option::of(arb_cid()),
        prop::option::of(arb_cid()),
        prop::collection::vec(".{0,12}", 0..4),
        prop::collection::btree_map("[A-Z_]{1,8}", ".{0,8}", 0..4),
        arb_limits(),
        any::<bool>(),
        prop::collection::btree_set(arb_capability(), 0..3),
        any::<u64>(),
        arb_permissions(),
    )
        .prop_map(
            |(
                module,
                stdin,
                input,
                args,
                env,
                limits,
                deterministic,
                capabilities,
                nonce,
                permissions,
            )| {
                JobSpec {
                    module,
                    stdin,
                    input,
                    args,
                    env: env.into_iter().collect::<BTreeMap<_, _>>(),
                    limits,
                    deterministic,
                    capabilities: capabilities.into_iter().collect::<BTreeSet<_>>(),
                    nonce,
                    state: input.filter(|_| nonce % 2 == 0),
                    permissions,
                }
            },
        )
}

fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        any::<i32>().prop_map(|code| Status::Exited { code }),
        ".{0,20}".prop_map(|message| Status::Trapped { message }),
        Just(Status::OutOfFuel),
        Just(Status::TimedOut),
        Just(Status::MemoryLimit),
        Just(Status::TableLimit),
        ".{0,40}".prop_map(|message| Status::Refused { message }),
        Just(Status::OutputLimit),
        Just(Status::Interrupted),
    ]
}

/// A receipt and the key of its worker.
fn arb_receipt() -> impl Strategy<Value = (Receipt, Keypair)> {
    (
        (
            arb_cid(),
            arb_cid(),
            prop::option::of(arb_cid()),
            prop::option::of(arb_cid()),
            arb_cid(),
        ),
        arb_status(),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        arb_key(),
        arb_peer(),
        ".{0,30}",
    )
        .prop_map(
            |(
                (job, module, stdin, input, result),
                status,
                (fuel, wall, peak, start, end),
                key,
                requester,
                runtime,
            )| {
                let receipt = Receipt {
                    job: JobId(job),
                    module,
                    stdin,
                    input,
                    result,
                    status,
                    fuel_consumed: fuel,
                    wall_time_ms: wall,
                    compile_time_ms: wall / 2,
                    peak_memory: peak,
                    worker: key.public().to_peer_id(),
                    requester,
                    started_at_ms: start,
                    ended_at_ms: end,
                    runtime,
                    state: input.map(|before| phase_protocol::StateTransition {
                        before,
                        after: result,
                        log: stdin,
                        host_fuel: fuel / 3,
                    }),
                    // Present in some, with counts from the other fields.
                    network: stdin.map(|_| phase_protocol::NetworkUse {
                        requests: peak % 65,
                        denied: wall % 3,
                        bytes_sent: start,
                        bytes_received: end,
                    }),
                };
                (receipt, key)
            },
        )
}

fn arb_signed() -> impl Strategy<Value = SignedReceipt> {
    arb_receipt().prop_map(|(r, k)| SignedReceipt::sign(r, &k).unwrap())
}

fn arb_rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        Just(Rejection::Busy),
        (
            prop_oneof![
                Just(LimitKind::Fuel),
                Just(LimitKind::Memory),
                Just(LimitKind::Timeout),
                Just(LimitKind::MaxOutput),
            ],
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(limit, requested, max)| {
                Rejection::LimitsTooHigh {
                    limit,
                    requested,
                    max,
                }
            }),
        arb_capability().prop_map(|capability| Rejection::UnsupportedCapability { capability }),
        ".{0,20}".prop_map(|message| Rejection::Malformed { message }),
        Just(Rejection::Denied),
        Just(Rejection::Paused),
    ]
}

fn arb_request() -> impl Strategy<Value = JobRequest> {
    prop_oneof![
        arb_spec().prop_map(|s| JobRequest::Submit(Box::new(s))),
        arb_cid().prop_map(|c| JobRequest::Status(JobId(c))),
        arb_cid().prop_map(|c| JobRequest::Receipt(JobId(c))),
        Just(JobRequest::Capabilities),
        arb_signed().prop_map(|r| JobRequest::Deliver(Box::new(r))),
    ]
}

fn arb_response() -> impl Strategy<Value = JobResponse> {
    let state = prop_oneof![
        Just(JobState::Queued),
        Just(JobState::Fetching),
        Just(JobState::Running),
        (arb_status(), arb_cid()).prop_map(|(status, receipt)| JobState::Done { status, receipt }),
        ".{0,20}".prop_map(|message| JobState::Failed { message }),
        Just(JobState::Interrupted),
    ];
    let info = (
        prop::collection::btree_set(arb_capability(), 0..3),
        arb_limits(),
        any::<u32>(),
        any::<u32>(),
        ".{0,20}",
        any::<bool>(),
    )
        .prop_map(
            |(capabilities, max_limits, slots, free_slots, runtime, paused)| WorkerInfo {
                capabilities,
                max_limits,
                slots,
                free_slots,
                runtime,
                paused,
            },
        );
    prop_oneof![
        arb_cid().prop_map(|c| JobResponse::Accepted(JobId(c))),
        arb_rejection().prop_map(JobResponse::Rejected),
        (arb_cid(), state).prop_map(|(c, state)| JobResponse::Status {
            job: JobId(c),
            state
        }),
        arb_signed().prop_map(|r| JobResponse::Receipt(Box::new(r))),
        arb_cid().prop_map(|c| JobResponse::NotFound(JobId(c))),
        info.prop_map(JobResponse::Capabilities),
        Just(JobResponse::Delivered),
    ]
}

fn arb_block_response() -> impl Strategy<Value = BlockResponse> {
    (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
        prop::collection::vec(arb_cid(), 0..4),
    )
        .prop_map(|(datas, missing)| BlockResponse {
            blocks: datas
                .into_iter()
                .map(|data| WireBlock {
                    cid: cid::raw_cid(&data),
                    data: data.into(),
                })
                .collect(),
            missing,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn job_spec_round_trips(spec in arb_spec()) {
        prop_assert_eq!(JobSpec::decode(&spec.encode()).unwrap(), spec);
    }

    #[test]
    fn job_request_round_trips(msg in arb_request()) {
        prop_assert_eq!(JobRequest::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn job_response_round_trips(msg in arb_response()) {
        prop_assert_eq!(JobResponse::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn block_messages_round_trip(want in prop::collection::vec(arb_cid(), 0..8), resp in arb_block_response()) {
        let req = BlockRequest { want };
        prop_assert_eq!(BlockRequest::decode(&req.encode()).unwrap(), req);
        prop_assert_eq!(BlockResponse::decode(&resp.encode()).unwrap(), resp);
    }

    #[test]
    fn block_responses_are_encoded_by_hand_exactly_as_serde_encodes_them(resp in arb_block_response()) {
        // Two independent encoders: the hand-written pieces the codec sends,
        // and the derived serde form every other message uses.
        let by_serde = serde_ipld_dagcbor::to_vec(&resp).unwrap();
        prop_assert_eq!(resp.encode_pieces().concat(), by_serde.clone());
        // A decoded frame's blocks are slices of the frame, not copies.
        let decoded = BlockResponse::decode_frame(by_serde).unwrap();
        prop_assert_eq!(&decoded, &resp);
    }

    #[test]
    fn signed_receipt_round_trips_in_cbor_and_json(signed in arb_signed()) {
        prop_assert_eq!(&SignedReceipt::from_cbor(&signed.to_cbor()).unwrap(), &signed);
        prop_assert_eq!(&SignedReceipt::from_json(&signed.to_json()).unwrap(), &signed);
        prop_assert!(signed.verify().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = JobSpec::decode(&bytes);
        let _ = JobRequest::decode(&bytes);
        let _ = JobResponse::decode(&bytes);
        let _ = BlockRequest::decode(&bytes);
        let _ = BlockResponse::decode(&bytes);
        let _ = SignedReceipt::from_cbor(&bytes);
    }

    #[test]
    fn any_single_bit_flip_breaks_a_signed_receipt(signed in arb_signed(), bit in any::<prop::sample::Index>()) {
        let mut bytes = signed.to_cbor();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(SignedReceipt::from_cbor(&bytes).is_err());
    }

    #[test]
    fn a_receipt_signed_by_a_never_verifies_as_b((receipt, a) in arb_receipt(), b in arb_key()) {
        let signed = SignedReceipt::sign(receipt.clone(), &a).unwrap();
        let b_peer = b.public().to_peer_id();
        prop_assert!(signed.verify_signer(&b_peer).is_err());
        // B cannot sign a receipt naming A, and A's signature does not
        // carry over to a receipt naming B.
        prop_assert!(SignedReceipt::sign(receipt.clone(), &b).is_err());
        let mut forged = receipt;
        forged.worker = b_peer;
        let envelope = serde_ipld_dagcbor::to_vec(&Forged { receipt: &forged, signature: serde_bytes::Bytes::new(signed.signature()) }).unwrap();
        prop_assert!(matches!(SignedReceipt::from_cbor(&envelope), Err(ReceiptError::Decode(_))));
    }
}

#[derive(serde::Serialize)]
struct Forged<'a> {
    receipt: &'a Receipt,
    signature: &'a serde_bytes::Bytes,
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let big = vec![0u8; JobRequest::MAX + 1];
    assert!(matches!(
        JobRequest::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
    let big = vec![0u8; MAX_RECEIPT + 1];
    assert!(matches!(
        SignedReceipt::from_cbor(&big),
        Err(ReceiptError::Decode(DecodeError::TooLarge { .. }))
    ));
    let big = vec![0u8; BlockRequest::MAX + 1];
    assert!(matches!(
        BlockRequest::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn non_canonical_encodings_are_refused() {
    // The same request with the integer 5 encoded in two bytes instead of one.
    let canonical = JobRequest::Capabilities.encode();
    assert_eq!(
        JobRequest::decode(&canonical).unwrap(),
        JobRequest::Capabilities
    );
    let spec = JobSpec::new(cid::raw_cid(b"m"));
    let mut bytes = spec.encode();
    // nonce 0 is encoded as 0x00 after the key "nonce"; make it 0x18 0x00.
    let key = b"enonce";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at], 0x00);
    bytes.splice(at..=at, [0x18, 0x00]);
    assert!(matches!(
        JobSpec::decode(&bytes),
        Err(DecodeError::Cbor(_) | DecodeError::NonCanonical)
    ));
}

type StateOps = Vec<(u8, Option<Vec<u8>>)>;

/// Sets and deletes over a few keys (so they hit each other), some values
/// long enough to get a block of their own.
fn arb_state_ops() -> impl Strategy<Value = StateOps> {
    prop::collection::vec(
        (
            0u8..48,
            prop::option::of(prop::collection::vec(any::<u8>(), 0..1100)),
        ),
        0..160,
    )
}

fn state_key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// Applies `ops` to the state at `root` in one commit, storing the blocks.
fn apply_state(
    blocks: &mut BTreeMap<Cid, Vec<u8>>,
    root: &Cid,
    ops: &[(u8, Option<Vec<u8>>)],
) -> guest_state::Summary {
    let mut state = guest_state::GuestState::open(blocks.clone(), root).unwrap();
    for (k, v) in ops {
        match v {
            Some(v) => state.set(state_key(*k), v.clone()).unwrap(),
            None => {
                state.delete(&state_key(*k)).unwrap();
            }
        }
    }
    let (summary, new) = state.commit();
    blocks.extend(new);
    summary
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A guest state reads as the map its operations make, and its root
    /// depends on that map only: built in one go from the final map, the
    /// root is the same; the diff between two states is the map's diff.
    #[test]
    fn guest_states_are_their_map_and_nothing_else(ops in arb_state_ops(), split in 0usize..160) {
        let (empty, bytes) = guest_state::empty();
        let mut blocks = BTreeMap::from([(empty, bytes)]);
        let split = split.min(ops.len());
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in &ops[..split] {
            match v {
                Some(v) => { model.insert(state_key(*k), v.clone()); }
                None => { model.remove(&state_key(*k)); }
            }
        }
        let middle_model = model.clone();
        let middle = apply_state(&mut blocks, &empty, &ops[..split]);
        for (k, v) in &ops[split..] {
            match v {
                Some(v) => { model.insert(state_key(*k), v.clone()); }
                None => { model.remove(&state_key(*k)); }
            }
        }
        let end = apply_state(&mut blocks, &middle.root, &ops[split..]);

        let mut state = guest_state::GuestState::open(blocks.clone(), &end.root).unwrap();
        prop_assert_eq!(state.count(), model.len() as u64);
        let size: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
        prop_assert_eq!(state.bytes(), size as u64);
        for k in 0u8..48 {
            prop_assert_eq!(state.get(&state_key(k)).unwrap(), model.get(&state_key(k)).cloned());
        }
        let listed: Vec<Vec<u8>> = state.entries().unwrap().into_keys().collect();
        prop_assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());

        // The final map written fresh, in key order: the same root.
        let fresh: Vec<(u8, Option<Vec<u8>>)> = (0u8..48)
            .filter_map(|k| model.get(&state_key(k)).map(|v| (k, Some(v.clone()))))
            .collect();
        let direct = apply_state(&mut blocks, &empty, &fresh);
        prop_assert_eq!(direct, end);

        let changes = guest_state::diff(&mut blocks, &middle.root, &end.root).unwrap();
        let changed: Vec<Vec<u8>> = changes.iter().map(|c| c.key.clone()).collect();
        let keys: BTreeSet<&Vec<u8>> = middle_model.keys().chain(model.keys()).collect();
        let expected: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| middle_model.get(*k) != model.get(*k))
            .cloned()
            .collect();
        prop_assert_eq!(changed, expected);

        // Every block a walk would keep is there: no link dangles.
        let mut seen = BTreeSet::new();
        let mut todo = vec![end.root];
        while let Some(cid) = todo.pop() {
            if seen.insert(cid) {
                let data = blocks.get(&cid).expect("every linked block is stored");
                todo.extend(guest_state::links(data));
            }
        }
    }
}
