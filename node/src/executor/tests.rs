use super::*;

fn executor() -> Executor {
    Executor::new(ExecutorConfig::default()).unwrap()
}

fn load(ex: &Executor, wat: &str) -> LoadedModule {
    ex.load_blocking(&wat::parse_str(wat).unwrap()).unwrap()
}

/// An executor config whose disk cache lives in `dir`.
fn cached(dir: &tempfile::TempDir) -> ExecutorConfig {
    ExecutorConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..ExecutorConfig::default()
    }
}

fn spec() -> RunSpec {
    RunSpec {
        program_name: "test.wasm".into(),
        ..RunSpec::default()
    }
}

const EXIT_WITH_ARGC: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $exit (i32.load (i32.const 0)))))"#;

const LOOP: &str = r#"(module (func (export "_start") (loop (br 0))))"#;

#[test]
fn exit_code_and_args_reach_the_guest() {
    let ex = executor();
    let m = load(&ex, EXIT_WITH_ARGC);
    let mut s = spec();
    s.args = vec!["a".into(), "b".into()];
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::Exited { code: 3 });
    assert!(out.fuel_consumed > 0);
}

#[test]
fn infinite_loop_times_out() {
    let ex = executor();
    let m = load(&ex, LOOP);
    let mut s = spec();
    s.limits.timeout = Duration::from_millis(200);
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::TimedOut);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let ex = executor();
    let m = load(&ex, LOOP);
    let mut s = spec();
    s.limits.fuel = 1_000_000;
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::OutOfFuel);
    assert_eq!(out.fuel_consumed, 1_000_000);
}

#[test]
fn memory_growth_past_the_cap_is_a_memory_limit() {
    let ex = executor();
    // Grows one page at a time and traps when growth is refused, like a Rust
    // guest's allocator aborting.
    let m = load(
        &ex,
        r#"(module (memory 1)
             (func (export "_start")
               (loop (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
                          (then unreachable))
                     (br 0))))"#,
    );
    let mut s = spec();
    s.limits.memory = phase_protocol::ByteSize(64 << 20);
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::MemoryLimit);
    assert_eq!(out.peak_memory_bytes, 64 << 20);
}

#[test]
fn a_guest_that_handles_refused_growth_exits_normally() {
    let ex = executor();
    let m = load(
        &ex,
        r#"(module (memory 1)
             (func (export "_start") (drop (memory.grow (i32.const 100000)))))"#,
    );
    let out = ex.run_blocking(&m, spec()).unwrap();
    assert_eq!(out.status, Status::Exited { code: 0 });
    assert_eq!(out.peak_memory_bytes, 65536);
}

const PRINT_FOREVER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 32))
    (loop (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"#;

#[test]
fn printing_forever_hits_the_output_limit() {
    let ex = executor();
    let m = load(&ex, PRINT_FOREVER);
    let mut s = spec();
    s.limits.max_output = phase_protocol::ByteSize(1 << 20);
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::OutputLimit);
    assert_eq!(out.stdout.len(), 1 << 20);
}

#[test]
fn stack_overflow_is_a_trap() {
    let ex = executor();
    let m = load(&ex, r#"(module (func $f (export "_start") (call $f)))"#);
    let out = ex.run_blocking(&m, spec()).unwrap();
    match out.status {
        Status::Trapped { message } => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn bad_modules_are_refused_with_clear_errors() {
    let ex = executor();
    assert!(matches!(
        ex.load_blocking(b"not wasm at all"),
        Err(ExecError::NotWasm)
    ));
    let lib = wat::parse_str(r#"(module (func (export "add")))"#).unwrap();
    assert!(matches!(ex.load_blocking(&lib), Err(ExecError::NoStart)));
    let foreign = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    assert!(matches!(
        ex.load_blocking(&foreign),
        Err(ExecError::Link(_))
    ));
    let library_component = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        ex.load_blocking(&library_component),
        Err(ExecError::NotACommand(_))
    ));
    let truncated = b"\0asm\x01\0\0\0\x01\x05";
    assert!(matches!(
        ex.load_blocking(truncated),
        Err(ExecError::Invalid(_))
    ));
}

#[test]
fn the_host_environment_is_not_inherited() {
    // environ_sizes_get writes the count of variables; the guest exits with it.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $sizes (i32.const 0) (i32.const 4)))
        (call $exit (i32.load (i32.const 0)))))"#;
    let ex = executor();
    let m = load(&ex, wat);
    assert!(std::env::vars().count() > 0);
    let out = ex.run_blocking(&m, spec()).unwrap();
    assert_eq!(out.status, Status::Exited { code: 0 });
    let mut s = spec();
    s.env = vec![("ONLY".into(), "this".into())];
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::Exited { code: 1 });
}

#[test]
fn disk_cache_skips_compilation_in_a_second_executor() {
    let dir = tempfile::tempdir().unwrap();
    let config = cached(&dir);
    let bytes = wat::parse_str(EXIT_WITH_ARGC).unwrap();
    let first = Executor::new(config.clone()).unwrap();
    assert_eq!(
        first.load_blocking(&bytes).unwrap().source(),
        CacheSource::Compiled
    );
    assert_eq!(
        first.load_blocking(&bytes).unwrap().source(),
        CacheSource::Memory
    );
    let second = Executor::new(config).unwrap();
    let m = second.load_blocking(&bytes).unwrap();
    assert_eq!(m.source(), CacheSource::Disk);
    assert_eq!(
        second.run_blocking(&m, spec()).unwrap().status,
        Status::Exited { code: 1 }
    );
}

#[test]
fn a_module_compiled_in_memory_is_found_by_its_cid_alone() {
    let ex = executor();
    let bytes = wat::parse_str(EXIT_WITH_ARGC).unwrap();
    let cid = unixfs::file_cid(&bytes);
    assert!(ex.cached(&cid).is_none(), "nothing compiled yet");
    ex.load_blocking(&bytes).unwrap();
    let m = ex.cached(&cid).unwrap();
    assert_eq!((m.cid(), m.kind()), (cid, ModuleKind::CoreModule));
    assert_eq!(
        ex.run_blocking(&m, spec()).unwrap().status,
        Status::Exited { code: 1 }
    );
    assert!(ex.cached(&phase_protocol::cid::raw_cid(b"other")).is_none());
}

#[test]
fn a_corrupt_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = cached(&dir);
    let bytes = wat::parse_str(EXIT_WITH_ARGC).unwrap();
    let first = Executor::new(config.clone()).unwrap();
    let cid = first.load_blocking(&bytes).unwrap().cid();
    let path = first.cache_dir().unwrap().join(format!("{cid}.cwasm"));
    std::fs::write(&path, b"garbage").unwrap();
    let second = Executor::new(config).unwrap();
    assert_eq!(
        second.load_blocking(&bytes).unwrap().source(),
        CacheSource::Compiled
    );
}

/// On a runtime with a single thread, a timer keeps firing while a guest
/// spins: `run` must not occupy the runtime's thread. (Were it to, the run
/// would finish before the timer could.)
#[tokio::test(flavor = "current_thread")]
async fn async_run_does_not_block_the_runtime() {
    let ex = executor();
    let m = ex
        .load(Bytes::from(wat::parse_str(LOOP).unwrap()))
        .await
        .unwrap();
    let mut s = spec();
    s.limits.timeout = Duration::from_secs(2);
    let run = tokio::spawn({
        let ex = ex.clone();
        async move { ex.run(&m, s).await }
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !run.is_finished(),
        "the timer only fired after the guest ended"
    );
    assert_eq!(run.await.unwrap().unwrap().status, Status::TimedOut);
}

#[test]
fn the_wasmtime_version_receipts_name_is_the_one_built() {
    let lock = include_str!("../../../Cargo.lock");
    let entry = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
    assert!(lock.contains(&entry), "Cargo.lock has no {entry}");
}

/// Calls `sock_shutdown(fd, 0)` and exits with its errno.
fn sock_shutdown_of(fd: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $shut (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $shut (i32.const {fd}) (i32.const 0)))))"#
    )
}

#[test]
fn sock_shutdown_answers_ebadf_or_enotsock_instead_of_trapping() {
    let ex = executor();
    let out = ex
        .run_blocking(&load(&ex, &sock_shutdown_of(99)), spec())
        .unwrap();
    assert_eq!(out.status, Status::Exited { code: 8 }, "EBADF"); // errno 8
    let out = ex
        .run_blocking(&load(&ex, &sock_shutdown_of(1)), spec())
        .unwrap();
    assert_eq!(out.status, Status::Exited { code: 57 }, "ENOTSOCK"); // errno 57
}

/// wasi-testsuite's `sock_shutdown-invalid_fd` built for preview 2 the way
/// the suite builds it: the preview 1 module wrapped into a component with
/// the adapter wasmtime ships. It must answer EBADF, not trap. (The
/// adapter of wasmtime 48 turns every non-zero `proc_exit` into exit code
/// 1, so the guest exits 0 when it got EBADF and 1 otherwise.)
#[test]
fn sock_shutdown_through_the_preview2_adapter_answers_ebadf() {
    let module = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $shut (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $exit (i32.ne (call $shut (i32.const 3) (i32.const 3)) (i32.const 8)))))"#,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    let ex = executor();
    let loaded = ex.load_blocking(&component).unwrap();
    assert_eq!(loaded.kind(), ModuleKind::Component);
    let out = ex.run_blocking(&loaded, spec()).unwrap();
    assert_eq!(out.status, Status::Exited { code: 0 }, "EBADF: {out:?}");
}

#[test]
fn a_run_without_a_fuel_cap_still_counts_fuel() {
    let ex = executor();
    let m = load(&ex, EXIT_WITH_ARGC);
    let mut s = spec();
    s.limits.fuel = u64::MAX;
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::Exited { code: 1 });
    assert!(out.fuel_consumed > 0 && out.fuel_consumed < 1_000_000);
}

/// Opens `/output/out` (fd 3 is the only preopen) and writes 64 KiB to it
/// forever, whatever the writes answer.
const WRITE_FOREVER: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "out")
  (data (i32.const 16) "\00\04\00\00\00\00\01\00")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 3)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))
    (loop $w
      (drop (call $write (i32.load (i32.const 200)) (i32.const 16) (i32.const 1) (i32.const 300)))
      (br $w))))"#;

#[test]
fn writing_to_output_forever_is_stopped_soon_after_max_output() {
    let ex = executor();
    let m = load(&ex, WRITE_FOREVER);
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.output_dir = Some(dir.path().to_path_buf());
    s.limits.max_output = phase_protocol::ByteSize(1 << 20);
    s.limits.timeout = Duration::from_secs(60);
    s.limits.fuel = u64::MAX;
    let out = ex.run_blocking(&m, s).unwrap();
    assert_eq!(out.status, Status::OutputLimit);
    assert!(
        out.wall_time < Duration::from_secs(30),
        "{:?}",
        out.wall_time
    );
    let on_disk = std::fs::metadata(dir.path().join("out")).unwrap().len();
    // The cap plus what the guest wrote between two measurements (one
    // epoch tick); unwatched, it would write until its timeout.
    assert!(on_disk < (1 << 20) + (64 << 20), "{on_disk} bytes on disk");
}

#[test]
fn a_table_past_its_limit_is_a_table_limit_not_a_memory_limit() {
    let ex = executor();
    // Grows its table by a million elements and traps when refused.
    let m = load(
        &ex,
        r#"(module
          (table 1 funcref)
          (func (export "_start")
            (if (i32.eq (table.grow (ref.null func) (i32.const 1000000)) (i32.const -1))
              (then unreachable))))"#,
    );
    let out = ex.run_blocking(&m, spec()).unwrap();
    assert_eq!(out.status, Status::TableLimit);
}

#[test]
fn a_module_the_sandbox_refuses_at_instantiation_is_a_refusal_not_a_trap() {
    let ex = executor();
    // More memories than a store may create (64; validation allows 100).
    let memories = "(memory 0) ".repeat(80);
    let m = load(
        &ex,
        &format!(r#"(module {memories} (func (export "_start")))"#),
    );
    let out = ex.run_blocking(&m, spec()).unwrap();
    assert!(
        matches!(out.status, Status::Refused { .. }),
        "{:?}",
        out.status
    );
}

#[test]
fn a_file_call_with_bad_arguments_ends_with_a_reason() {
    // An iovec whose buffer lies past the end of memory, and a
    // `path_open` with flags no WASI version defines: whatever the host
    // makes of them, the guest's end names a reason.
    let ex = executor();
    for call in [
        r#"(i32.store (i32.const 0) (i32.const 0x7fff0000))
           (i32.store (i32.const 4) (i32.const 64))
           (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
           (unreachable)"#,
        r#"(drop (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
             (i32.const 0xffff) (i64.const -1) (i64.const -1) (i32.const 0xffff) (i32.const 64)))"#,
    ] {
        let wat = format!(
            r#"(module
              (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "path_open"
                (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (func (export "_start") {call}))"#
        );
        let m = load(&ex, &wat);
        let out = ex.run_blocking(&m, spec()).unwrap();
        match &out.status {
            Status::Trapped { message } => assert!(!message.trim().is_empty(), "{out:?}"),
            Status::Exited { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
