//! The volunteer install: `packaging/phase-node.service` checked by
//! `systemd-analyze verify`, and the .deb (`cargo deb` from this build's
//! debug binary) installed with `dpkg -i`: its `phase-node` runs
//! `--version`, it is stripped, its unit verifies where it was installed,
//! the service's user and data dir exist with the right modes, and a purge
//! takes it all away again. Installing needs root and happens in CI (or
//! with PHASE_TEST_DPKG=1); outside CI never over a phase-node already
//! installed (in CI, one a killed run left behind is purged first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// `systemd-analyze verify UNIT`: exit 0 and not a word about the unit
/// (unknown keys and bad values are only warnings to it).
fn verify_unit(unit: &Path) {
    let out = run("systemd-analyze", &["verify", unit.to_str().unwrap()]);
    let name = unit.file_name().unwrap().to_str().unwrap();
    let complaints: Vec<_> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(name))
        .map(str::to_owned)
        .collect();
    assert!(out.status.success(), "{}", said(&out));
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn the_systemd_unit_verifies() {
    // Verified with this build's binary in the place of /usr/bin/phase-node
    // (systemd-analyze checks that the command exists).
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root().join("packaging/phase-node.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/phase-node "));
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/phase-node",
        "Restart=on-failure",
        "User=phase-node",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    let here = dir.path().join("phase-node.service");
    std::fs::write(
        &here,
        unit.replace("/usr/bin/phase-node", env!("CARGO_BIN_EXE_phase-node")),
    )
    .unwrap();
    verify_unit(&here);
    // The settings file it names is a config phase-node takes: every key
    // left at its default.
    let out = run(
        env!("CARGO_BIN_EXE_phase-node"),
        &[
            "config",
            "show",
            "--config",
            root().join("packaging/config.toml").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
}

#[test]
fn the_deb_installs_a_stripped_phase_node_and_its_unit_and_purges_clean() {
    let root_user = run("id", &["-u"]).stdout == b"0\n";
    let wanted = std::env::var_os("CI").is_some() || std::env::var_os("PHASE_TEST_DPKG").is_some();
    if !root_user || !wanted {
        eprintln!(
            "skipped: installing a .deb needs root, and runs in CI or with PHASE_TEST_DPKG=1"
        );
        return;
    }
    if run("dpkg-query", &["-W", "-f=${Status}", "phase-node"])
        .stdout
        .starts_with(b"install ok")
    {
        // On a CI machine it can only be this test's, left by a run that
        // was killed; anywhere else it may be a volunteer's own.
        assert!(
            std::env::var_os("CI").is_some(),
            "a phase-node package is installed on this machine: this test would replace it"
        );
        let out = run("dpkg", &["--purge", "phase-node"]);
        assert!(out.status.success(), "{}", said(&out));
    }
    let out_dir = tempfile::tempdir().unwrap();
    // The binary this test build made (the dev profile), packaged as it is.
    let out = Command::new(env!("CARGO"))
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "-p",
            "phase-node",
            "--output",
        ])
        .arg(out_dir.path())
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo deb (scripts/test.sh installs cargo-deb): {}",
        said(&out)
    );
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");

    let out = run("dpkg", &["-i", deb.to_str().unwrap()]);
    // Whatever is asserted below, the package goes again.
    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = run("dpkg", &["--purge", "phase-node"]);
        }
    }
    let _purge = Purge;
    assert!(out.status.success(), "dpkg -i: {}", said(&out));

    let out = run("/usr/bin/phase-node", &["--version"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("phase-node "),
        "{}",
        said(&out)
    );
    // Stripped: the debug build's symbols and debug info are not shipped.
    let installed = std::fs::metadata("/usr/bin/phase-node").unwrap().len();
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_phase-node"))
        .unwrap()
        .len();
    assert!(
        installed < built / 2,
        "installed {installed} bytes of a {built}-byte build: not stripped"
    );
    let sections = run("readelf", &["-S", "/usr/bin/phase-node"]);
    assert!(
        !String::from_utf8_lossy(&sections.stdout).contains(".debug_info"),
        "the installed binary has debug info"
    );
    verify_unit(Path::new("/usr/lib/systemd/system/phase-node.service"));
    assert!(Path::new("/etc/phase-node/config.toml").exists());
    let user = run("getent", &["passwd", "phase-node"]);
    assert!(user.status.success(), "no phase-node user");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let data = std::fs::metadata("/var/lib/phase-node").unwrap();
        assert_eq!(data.permissions().mode() & 0o777, 0o700);
        let uid: u32 = String::from_utf8_lossy(&user.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(data.uid(), uid, "the data dir is the service user's");
    }
    drop(_purge);
    assert!(
        !Path::new("/usr/bin/phase-node").exists(),
        "purge left the binary"
    );
    assert!(
        !Path::new("/var/lib/phase-node").exists(),
        "purge left the data dir"
    );
}
