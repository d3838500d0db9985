use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use benchlink::cli::{Cli, Subcommand};
use benchlink::config::Settings;
use benchlink::engine::Engine;
use benchlink::headless::{self, Format};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command.clone() {
        return run_device_tool(command);
    }
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchlink: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !cli.no_tui && std::io::stdout().is_terminal() {
        eprintln!(
            "benchlink: the full-screen console is not built yet; running headless as with --no-tui"
        );
    }
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    runtime.block_on(async move {
        let engine = match Engine::bind(settings).await {
            Ok(engine) => engine,
            Err(e) => return fail(&e.to_string()),
        };
        headless::run(engine, format).await;
        ExitCode::SUCCESS
    })
}

/// A mistake the user can fix: one clear line, exit code 2, no backtrace.
fn fail(message: &str) -> ExitCode {
    eprintln!("benchlink: {message}");
    ExitCode::from(2)
}

fn run_device_tool(command: Subcommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchlink: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match command {
            Subcommand::Send(args) => benchlink::device::send::run(args).await,
            Subcommand::Device(args) => benchlink::device::simulator::run(args).await,
        }
    })
}
