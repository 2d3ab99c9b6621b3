//! Thin entry point: parse, start tracing, run, map the error to an exit code.

use std::process::ExitCode;

use aurora_sidecar::cli::Cli;
use aurora_sidecar::display::chain;
use aurora_sidecar::error::Error;
use aurora_sidecar::exit;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; everything else is a usage error.
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    aurora_sidecar::init_tracing(cli.log_format);
    if let Err(e) = aurora_sidecar::privileges::no_dumps() {
        tracing::warn!(error = %e, "could not mark the process non-dumpable");
    }
    // --drop-to first, while this is the only thread; then one thread for the runtime:
    // the sidecar lives for weeks beside the app and does little, and a multi-threaded
    // runtime would only add idle threads and memory.
    let outcome = aurora_sidecar::drop_privileges(&cli).and_then(|()| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let outcome = runtime.block_on(aurora_sidecar::run(cli));
        // A name lookup (getaddrinfo blocks a thread of its own) may still be running after
        // a deadline or a stop signal; dropping the runtime would wait for it, past
        // --wait-timeout and --step-timeout. The process is ending: leave it.
        runtime.shutdown_background();
        outcome
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            let message = match e.next_step() {
                Some(next) => format!("{}; {next}", chain(&e)),
                None => chain(&e),
            };
            tracing::error!(exit_code = code, error_class = %e.class(), "{message}");
            code.into()
        }
    }
}
