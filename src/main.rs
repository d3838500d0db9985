use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use benchlink::cli::{Cli, Subcommand};
use benchlink::config::{Settings, user_themes_dir};
use benchlink::engine::Engine;
use benchlink::headless::{self, Format};
use benchlink::tui::theme::Theme;

fn main() -> ExitCode {
    keep_large_buffers();
    let cli = Cli::parse();
    if let Some(Subcommand::Watch(args)) = cli.command.clone() {
        let full_screen = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
        init_tracing(full_screen);
        let mut theme = match Theme::load(
            cli.theme.as_deref().unwrap_or("default"),
            user_themes_dir().as_deref(),
        ) {
            Ok(t) => t,
            Err(e) => return fail(&e.to_string()),
        };
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            theme = theme.without_colors();
        }
        return with_runtime(|| async move { benchlink::watch::run(args, theme).await });
    }
    if let Some(command) = cli.command.clone() {
        return with_runtime(|| async move {
            match command {
                Subcommand::Send(args) => benchlink::device::send::run(args).await,
                Subcommand::Device(args) => benchlink::device::simulator::run(args).await,
                Subcommand::Bridge(args) => benchlink::device::bridge::run(args).await,
                Subcommand::Watch(_) => ExitCode::SUCCESS,
            }
        });
    }
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let mut theme = match Theme::load(&settings.theme, user_themes_dir().as_deref()) {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string()),
    };
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.without_colors();
    }
    let full_screen = !cli.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    init_tracing(full_screen);
    let format = if cli.json { Format::Json } else { Format::Human };
    with_runtime(|| async move {
        let mqtt = settings
            .mqtt
            .clone()
            .map(|spec| (spec, settings.bench.clone(), settings.mqtt_commands));
        let metrics_at = settings.metrics.clone();
        let files_url = settings.files_url.clone();
        let received = settings.dir.clone();
        let mut engine = match Engine::bind(settings).await {
            Ok(engine) => engine,
            Err(e) => return fail(&e.to_string()),
        };
        // The broker is one more consumer of the events, with a queue of its own.
        let mut broker_depth = None;
        let publisher = mqtt.map(|(spec, bench, take_commands)| {
            let events = engine.subscribe(benchlink::mqtt::QUEUE_BYTES);
            broker_depth = Some(events.depth());
            let commands = take_commands.then(|| engine.command_sender());
            let front_end = Some(engine.front_end_events());
            // The folder as file_saved paths give it (the engine made it, so it exists).
            let files_url = files_url.map(|base| benchlink::mqtt::FilesUrl {
                dir: std::fs::canonicalize(&received).unwrap_or(received),
                base,
            });
            tokio::spawn(benchlink::mqtt::run(
                spec, bench, events, commands, front_end, files_url,
            ))
        });
        let metrics = match metrics_at.as_deref().map(benchlink::metrics::bind) {
            Some(Ok(server)) => {
                let events = engine.subscribe(benchlink::metrics::QUEUE_BYTES);
                Some(tokio::spawn(benchlink::metrics::run(
                    server,
                    events,
                    broker_depth,
                )))
            }
            Some(Err(e)) => return fail(&e),
            None => None,
        };
        let code = if full_screen {
            match benchlink::tui::run(engine, theme).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("benchlink: the terminal failed: {e}");
                    ExitCode::FAILURE
                }
            }
        } else {
            headless::run(engine, format).await;
            ExitCode::SUCCESS
        };
        // A moment for the last events and the bench's "offline" to reach the broker.
        if let Some(publisher) = publisher {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), publisher).await;
        }
        if let Some(metrics) = metrics {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), metrics).await;
        }
        code
    })
}

/// Engine warnings (dropped frames and the like) go to the TUI's log pane, or to
/// stderr when headless, where they never mix with the events on stdout.
fn init_tracing(full_screen: bool) {
    if full_screen {
        let _ = tui_logger::init_logger(tui_logger::LevelFilter::Info);
        let _ = tracing_subscriber::registry()
            .with(tui_logger::TuiTracingSubscriberLayer)
            .with(benchlink::tui::log_count::LogCounter)
            .try_init();
    } else {
        // Colours only for a person at a terminal: a log file or a pipe gets plain text.
        let colours =
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(colours)
            .with_max_level(tracing::Level::WARN)
            .with_target(false)
            .try_init();
    }
}

/// Every file moves through buffers of 256 KiB (reads) and 1 MiB (batches to
/// disk) that come and go. glibc maps each one afresh from the kernel, which
/// zeroes every page of it: on a transfer, a fifth of the console's CPU and a
/// quarter of the sender's (512 MiB: 39,000 page faults, 1,500 with this). So
/// buffers up to 4 MiB come from the heap, and up to 8 MiB of freed heap is
/// kept for the next ones; larger ones (an image preview) are still mapped and
/// given back when freed. Set before any thread starts.
fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

fn with_runtime<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    // The I/O driver is polled every 8 task polls (tokio's default is 61): with
    // many devices streaming, a quiet device's PING is noticed within a few
    // turns, not after 61 of them (see docs/performance.md).
    //
    // One worker more than there are cores: at most one stream reads per core
    // (engine `bulk_turns`), so a worker is always free, asleep in the I/O
    // driver, and the kernel wakes it at once for a quiet device's PING, as it
    // would a separate process (PING p50 with 100 uploading: 7.4 -> 0.7 ms).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(benchlink::engine::cores() + 1)
        .enable_all()
        .event_interval(8)
        // File writes run on blocking threads: a few keep two cores busy; a
        // hundred at once (100 devices uploading) only thrash caches and locks.
        .max_blocking_threads(16)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(body()),
        Err(e) => {
            eprintln!("benchlink: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A mistake the user can fix: one clear line, exit code 2, no backtrace.
fn fail(message: &str) -> ExitCode {
    eprintln!("benchlink: {message}");
    ExitCode::from(2)
}
