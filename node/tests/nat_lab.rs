//! `scripts/nat-lab.sh`: real daemons behind real (iptables) NAT routers in
//! network namespaces: 20 fresh pairs per transport behind two
//! endpoint-independent NATs go direct, symmetric NATs fall back as they
//! should, the relay restarts, private nodes stay DHT clients, `submit
//! --worker` reaches a NATed worker it never met, and two default daemons
//! on a LAN of their own find each other by mDNS and run a job. Needs
//! root (CI runs as root); anywhere else it says why it is skipped.

use std::process::Command;

/// The exit status the script gives when it is not run as root.
const NOT_ROOT: i32 = 77;

#[test]
fn nat_lab_two_nats_go_direct_symmetric_nats_fall_back_the_relay_restarts_and_a_lan_works() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nat-lab.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(["--reps", "20"])
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(NOT_ROOT) {
        eprintln!("skipped: the NAT lab needs root to create network namespaces");
        return;
    }
    assert!(out.status.success(), "{report}");
    for transport in ["tcp", "quic"] {
        let line = report
            .lines()
            .find(|l| l.contains(&format!("direct/{transport}: ")) && l.contains(" of 20 "))
            .unwrap_or_else(|| panic!("no {transport} count: {report}"));
        let direct: u32 = line
            .split("direct/")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(direct >= 19, "{line}\n{report}");
    }
    for expected in [
        "a public requester's job ran on the worker behind a symmetric NAT",
        "two symmetric NATs: done on the public worker",
        "reachable only through a relay",
        "dht: private nodes are DHT clients outside the relay's routing table",
        "relay-restart: a job from h1 ran on h2 after the restart",
        "submit --worker to a worker behind NAT completed over a direct connection",
        "--worker naming no peer: ",
        "lan: a job from l1 ran on l2, found with default flags over mDNS",
        "lan: a file added on l2 was fetched on l1",
        "all scenarios passed",
    ] {
        assert!(report.contains(expected), "{expected}\n{report}");
    }
}
