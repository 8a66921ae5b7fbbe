//! The command line: parse, set up logging, run, and map the result to an exit code
//! (0 in sync, 1 a target failed, 2 usage or configuration).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use certsync::cli::{Cli, Command, ListFormat, LogFormat};
use certsync::config::{self, Config};
use certsync::error::Chain;
use certsync::metrics::Metrics;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // One thread runs the event loop; disk-bound work goes to tokio's blocking pool.
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
        Some(Command::List {
            source,
            format,
            all,
            include,
            exclude,
            resolver,
        }) => {
            let Some(spec) = certsync::source::SourceSpec::from_args(source) else {
                eprintln!("certsync: list needs a source: --acme FILE, --certbot-lineage DIR, --caddy-storage DIR or --pem-cert FILE --pem-key FILE");
                return ExitCode::from(2);
            };
            let all = *all || !include.is_empty() || !exclude.is_empty() || resolver.is_some();
            let filter = match all
                .then(|| certsync::export::Filter::new(include, exclude))
                .transpose()
            {
                Ok(f) => f.map(|f| (resolver.clone(), f)),
                Err(e) => {
                    eprintln!("certsync: {}", Chain(&e));
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(certsync::list::run(
                &spec,
                *format == ListFormat::Json,
                filter,
            ))
        }
        Some(Command::Health { metrics_listen }) => {
            let addr = metrics_listen.as_deref().unwrap_or("127.0.0.1:9731");
            let Ok(addr) = addr.parse() else {
                eprintln!("certsync: --metrics-listen {addr:?} is not HOST:PORT (an IP address)");
                return ExitCode::from(2);
            };
            match runtime.block_on(certsync::health::check(addr)) {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("certsync: {}", Chain(&e));
                    ExitCode::from(1)
                }
            }
        }
        None => run(cli, &runtime),
    }
}

fn run(cli: Cli, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let renewed_lineage = std::env::var_os("RENEWED_LINEAGE").map(PathBuf::from);
    let watchdog = if cli.once {
        Ok(None)
    } else {
        config::watchdog_interval()
    };
    let (config, watchdog) =
        match Config::from_cli(&cli, renewed_lineage).and_then(|c| Ok((c, watchdog?))) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("certsync: {}", Chain(&e));
                return ExitCode::from(2);
            }
        };
    if cli.once {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new(config.expiry_warning, config.expiry_critical));
        metrics.expect_targets(
            &config
                .targets
                .iter()
                .map(|t| t.name.clone())
                .chain(config.exports.iter().map(|e| e.label.clone()))
                .collect::<Vec<_>>(),
        );
        let report = runtime.block_on(certsync::pipeline::once(config, metrics));
        return exit(report.all_ok());
    }
    let _context = runtime.enter();
    let shutdown = match certsync::shutdown::on_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certsync: cannot handle SIGTERM/SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(certsync::watch::run(cli, config, watchdog, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(certsync::logwriter::EscapingStderr { ansi })
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
