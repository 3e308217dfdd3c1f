//! The `phase-node` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use clap::Parser;

use phase_node::cli::Cli;

/// How long the process waits at exit for work still on the blocking pool.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Exit code of a command line that does not parse (as clap's own).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // A worker compiling an untrusted module runs this binary as a child
    // under rlimits; no runtime, no logging, nothing else.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(phase_node::executor::COMPILE_CHILD_ARG) {
        let code = phase_node::executor::compile_child_main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A flag's value that does not parse is one line, like every other
        // bad input; help, version and usage errors print as clap prints them.
        Err(err)
            if matches!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let text = err.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid value"));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(err) => err.exit(),
    };
    let filter = match EnvFilter::try_new(cli.log_filter()) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("error: --log (or RUST_LOG): {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(phase_node::cli::EXIT_INTERNAL);
        }
    };
    let failure_code = cli.failure_code();
    let code = match runtime.block_on(cli.execute()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(failure_code)
        }
    };
    // A guest still running on the blocking pool (a daemon stopped mid-job)
    // must not hold the exit for up to its own timeout.
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}
