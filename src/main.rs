//! The command line: parse, set up logging, run, and map the result to an exit code
//! (0 in sync, 1 a target failed, 2 usage or configuration).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use certsync::cli::{Cli, Command, LogFormat};
use certsync::config::Config;
use certsync::source::{self, SourceSpec};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certsync: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match &cli.command {
        Some(Command::List { acme }) => runtime.block_on(list(acme.clone())),
        None => {
            let renewed_lineage = std::env::var_os("RENEWED_LINEAGE").map(PathBuf::from);
            let config = match Config::from_cli(&cli, renewed_lineage) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("certsync: {e}");
                    return ExitCode::from(2);
                }
            };
            if cli.once {
                exit(runtime.block_on(certsync::once(&config)))
            } else {
                let shutdown = match terminate(&runtime) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("certsync: cannot handle SIGTERM/SIGINT: {e}");
                        return ExitCode::from(1);
                    }
                };
                match runtime.block_on(certsync::watch::run(cli, config, shutdown)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        ExitCode::from(1)
                    }
                }
            }
        }
    }
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed at once, so
/// a signal during start-up is not lost to the default action.
fn terminate(
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _context = runtime.enter();
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn list(acme: PathBuf) -> ExitCode {
    let spec = SourceSpec::Acme(acme);
    let backoff = certsync::not_ready_backoff(
        std::time::Duration::from_millis(20),
        Some(certsync::ONCE_SOURCE_PATIENCE),
    );
    let interest = source::Interest::leaves();
    let rows = source::read_when_ready_for(&spec, &interest, backoff, certsync::list::rows).await;
    match rows {
        Ok(rows) => {
            let printed =
                certsync::list::print(&rows, certsync::unix_now(), std::io::stdout().lock());
            // A closed pipe (`certsync list | head`) is not a failure.
            exit(
                printed.is_ok()
                    || printed.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
            )
        }
        Err(e) => {
            eprintln!("certsync: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
