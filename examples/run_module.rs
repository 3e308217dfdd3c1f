//! Runs a WebAssembly module with the phase-node library, the way a program
//! embedding the sandbox would:
//!
//! ```text
//! cargo run -p phase-examples --example run_module -- wasm-examples/out/hello.wasm "Hello, World"
//! ```

use anyhow::Context;
use phase_node::executor::{Executor, ExecutorConfig, RunSpec, Stdin};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: run_module MODULE.wasm [STDIN]")?;
    let stdin = args.next().unwrap_or_default();
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("cannot read {path}"))?;

    let executor = Executor::new(ExecutorConfig::default())?;
    let module = executor.load(bytes.into()).await?;
    let spec = RunSpec {
        program_name: path.clone(),
        stdin: Stdin::Bytes(stdin.into()),
        ..RunSpec::default()
    };
    let outcome = executor.run(&module, spec).await?;
    print!("{}", String::from_utf8_lossy(&outcome.stdout));
    eprintln!(
        "{} ({}): {} after {} instructions, {:?}, peak memory {} bytes",
        path,
        module.cid(),
        outcome.status,
        outcome.fuel_consumed,
        outcome.wall_time,
        outcome.peak_memory_bytes
    );
    Ok(())
}
