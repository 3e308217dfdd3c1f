//! Golden vectors: a fixed key, job spec and receipt pin the encodings. If any
//! of these change, every job id and receipt signature in the wild changes:
//! that is a protocol version bump, never an accident.

use std::str::FromStr;

use phase_protocol::receipt::RECEIPT_DOMAIN;
use phase_protocol::{Capability, Cid, JobSpec, Keypair, Message, Receipt, SignedReceipt, Status};

fn worker_key() -> Keypair {
    Keypair::ed25519_from_bytes([1u8; 32]).unwrap()
}

fn requester_key() -> Keypair {
    Keypair::ed25519_from_bytes([2u8; 32]).unwrap()
}

fn spec() -> JobSpec {
    let mut spec = JobSpec::new(
        Cid::from_str("bafkreidweoqec4mcsoskb3civ3tajfbvobbi3uprjqlmnigapkw2nfam7y").unwrap(),
    );
    spec.stdin =
        Some(Cid::from_str("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").unwrap());
    spec.args = vec!["--upper".into(), "x".into()];
    spec.env.insert("LANG".into(), "C".into());
    spec.deterministic = true;
    spec.capabilities.insert(Capability::WASI_P1);
    spec.nonce = 42;
    spec
}

fn receipt() -> Receipt {
    let spec = spec();
    Receipt {
        job: spec.id(),
        module: spec.module,
        stdin: spec.stdin,
        input: None,
        result: Cid::from_str("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
            .unwrap(),
        status: Status::Exited { code: 0 },
        fuel_consumed: 3980,
        wall_time_ms: 1,
        compile_time_ms: 0,
        peak_memory: 1_114_112,
        worker: worker_key().public().to_peer_id(),
        requester: requester_key().public().to_peer_id(),
        started_at_ms: 1_763_683_200_000,
        ended_at_ms: 1_763_683_200_001,
        runtime: "phase-node/0.1.0 wasmtime/48.0.8".into(),
        state: None,
        network: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const JOB_ID: &str = "bafyreih74b73yj3keqlwq25rjz7btkl5jbitg6dtr5rkc5bf3xua24dv3e";
const SPEC_HEX: &str = "a963656e76a1644c414e476143646172677382672d2d7570706572617865696e707574f6656e6f6e6365182a65737464696ed82a58250001551220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447666c696d697473a4646675656c1b00000002540be400666d656d6f72791a100000006774696d656f757419ea606a6d61785f6f75747075741a01000000666d6f64756c65d82a582500015512207623a041718293a4a0ec48aee604943570428dd1f14c16c6a0c07aada6940cfe6c6361706162696c69746965738167776173692d70316d64657465726d696e6973746963f5";
const WORKER: &str = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";
const RECEIPT_CID: &str = "bafyreih3prndbaop5dsco32wlzubno2yz24tstxp2y74lptjapxw23ytlu";
const SIGNED_HEX: &str = "a26772656365697074ae636a6f62d82a58250001711220ffe07fbc276a2417686bb14e7e19a97d48513378738f62a17425dde80d7075d965696e707574f665737464696ed82a58250001551220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447666d6f64756c65d82a582500015512207623a041718293a4a0ec48aee604943570428dd1f14c16c6a0c07aada6940cfe66726573756c74d82a58250001551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85566737461747573a264636f646500646b696e646665786974656466776f726b657258260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c6772756e74696d65782070686173652d6e6f64652f302e312e30207761736d74696d652f34382e302e386972657175657374657258260024080112208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3946b656e6465645f61745f6d731b0000019aa3b5ec016b7065616b5f6d656d6f72791a001100006c77616c6c5f74696d655f6d73016d6675656c5f636f6e73756d6564190f8c6d737461727465645f61745f6d731b0000019aa3b5ec00697369676e6174757265584008629494d63219c8c9dcf7d63112da5e9efda84ddd1ce72b8452c913bfaccc42bc9e28d743762c81bd804c33537e59e5ae549f888291c5ea078898b67ad5400a";
const SIGNATURE_HEX: &str = "08629494d63219c8c9dcf7d63112da5e9efda84ddd1ce72b8452c913bfaccc42bc9e28d743762c81bd804c33537e59e5ae549f888291c5ea078898b67ad5400a";

#[test]
fn job_spec_encoding_and_id_are_pinned() {
    let spec = spec();
    assert_eq!(hex(&spec.encode()), SPEC_HEX);
    assert_eq!(spec.id().to_string(), JOB_ID);
    assert_eq!(JobSpec::decode(&spec.encode()).unwrap(), spec);
}

#[test]
fn signed_receipt_is_pinned() {
    assert_eq!(RECEIPT_DOMAIN, b"phase-receipt-v1");
    let signed = SignedReceipt::sign(receipt(), &worker_key()).unwrap();
    assert_eq!(signed.receipt().worker.to_string(), WORKER);
    assert_eq!(hex(signed.signature()), SIGNATURE_HEX);
    assert_eq!(hex(&signed.to_cbor()), SIGNED_HEX);
    assert_eq!(signed.cid().to_string(), RECEIPT_CID);
    let decoded = SignedReceipt::from_cbor(&signed.to_cbor()).unwrap();
    assert_eq!(decoded, signed);
}

#[test]
fn the_signature_is_over_domain_and_canonical_bytes() {
    // Recompute what was signed from the pinned bytes alone: the receipt map
    // inside the signed envelope, prefixed with the domain tag.
    let signed = SignedReceipt::sign(receipt(), &worker_key()).unwrap();
    let mut message = RECEIPT_DOMAIN.to_vec();
    message.extend_from_slice(&serde_ipld_dagcbor::to_vec(signed.receipt()).unwrap());
    assert!(worker_key().public().verify(&message, signed.signature()));
}
