//! What the user typed: flags and their environment variables, nothing checked yet
//! beyond syntax. `config` turns this into a validated [`crate::config::Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps a TURN server's TLS certificate in step with the one Traefik (or certbot)
/// gets from Let's Encrypt.
#[derive(Debug, Parser)]
#[command(name = "certsync", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// One pass over every target, then exit (cron, certbot deploy hook).
    #[arg(long, env = "CERTSYNC_ONCE")]
    pub once: bool,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub reload: ReloadArgs,

    /// Coalesce a burst of change events before reading [default: 20ms].
    #[arg(long, env = "CERTSYNC_DEBOUNCE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub debounce: Option<Duration>,

    /// Re-read the source anyway this often, as a safety net [default: 5m].
    #[arg(long, env = "CERTSYNC_RESYNC", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub resync: Option<Duration>,

    /// Serve /metrics and /healthz here; `off` disables [default: 127.0.0.1:9731].
    #[arg(long, env = "CERTSYNC_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// After each pass, write the metrics here for node_exporter's textfile collector.
    #[arg(long, env = "CERTSYNC_TEXTFILE", value_name = "FILE")]
    pub textfile: Option<PathBuf>,

    /// Warn when a target's certificate has less than this left [default: 14d].
    #[arg(long, env = "CERTSYNC_EXPIRY_WARNING", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expiry_warning: Option<Duration>,

    /// Log an error when a target's certificate has less than this left [default: 3d].
    #[arg(long, env = "CERTSYNC_EXPIRY_CRITICAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expiry_critical: Option<Duration>,

    /// TOML file with several targets; exclusive with the target flags.
    #[arg(long, env = "CERTSYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Say what would be written and reloaded; change nothing.
    #[arg(long, env = "CERTSYNC_DRY_RUN")]
    pub dry_run: bool,

    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, env = "CERTSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One line per certificate in acme.json: resolver, main, SANs, key type,
    /// not-after, days left.
    List {
        /// Traefik's acme.json.
        #[arg(long, env = "CERTSYNC_ACME", value_name = "FILE")]
        acme: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Traefik's acme.json (v1 or v2/v3 layout).
    #[arg(
        long,
        env = "CERTSYNC_ACME",
        value_name = "FILE",
        conflicts_with = "certbot_lineage"
    )]
    pub acme: Option<PathBuf>,

    /// A certbot `live/<name>/` folder. With --once and no source, $RENEWED_LINEAGE.
    #[arg(long, env = "CERTSYNC_CERTBOT_LINEAGE", value_name = "DIR")]
    pub certbot_lineage: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The certificate whose main name or SANs cover NAME (required with --acme).
    #[arg(long, env = "CERTSYNC_DOMAIN", value_name = "NAME")]
    pub domain: Option<String>,

    /// Only this resolver (acme.json v2/v3).
    #[arg(long, env = "CERTSYNC_RESOLVER", value_name = "NAME")]
    pub resolver: Option<String>,

    /// Where the files go; created (0755) if missing.
    #[arg(long, env = "CERTSYNC_OUT_DIR", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Leaf + chain, leaf first [default: fullchain.pem].
    #[arg(long, env = "CERTSYNC_CERT_FILE", value_name = "NAME")]
    pub cert_file: Option<String>,

    /// The private key [default: privkey.pem].
    #[arg(long, env = "CERTSYNC_KEY_FILE", value_name = "NAME")]
    pub key_file: Option<String>,

    /// Also write the leaf alone.
    #[arg(long, env = "CERTSYNC_LEAF_FILE", value_name = "NAME")]
    pub leaf_file: Option<String>,

    /// Also write the chain without the leaf.
    #[arg(long, env = "CERTSYNC_CHAIN_FILE", value_name = "NAME")]
    pub chain_file: Option<String>,

    /// Owner of the written files, by name or number [default: the running user].
    #[arg(long, env = "CERTSYNC_OWNER", value_name = "USER[:GROUP]")]
    pub owner: Option<String>,

    /// Mode of the certificate files, octal [default: 0644].
    #[arg(long, env = "CERTSYNC_CERT_MODE", value_name = "MODE")]
    pub cert_mode: Option<String>,

    /// Mode of the key file, octal [default: 0600].
    #[arg(long, env = "CERTSYNC_KEY_MODE", value_name = "MODE")]
    pub key_mode: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Reload this unit through systemd's D-Bus API.
    #[arg(long, env = "CERTSYNC_SYSTEMD_UNIT", value_name = "UNIT")]
    pub systemd_unit: Option<String>,

    /// Which systemd manager to talk to [default: system].
    #[arg(long, env = "CERTSYNC_SYSTEMD_BUS", value_name = "BUS")]
    pub systemd_bus: Option<String>,

    /// Reload this container through the Docker Engine API.
    #[arg(long, env = "CERTSYNC_DOCKER_CONTAINER", value_name = "NAME_OR_ID")]
    pub docker_container: Option<String>,

    /// Reload every running container with this label.
    #[arg(long, env = "CERTSYNC_DOCKER_LABEL", value_name = "KEY=VALUE")]
    pub docker_label: Option<String>,

    /// Run `sh -c CMD` to reload.
    #[arg(long, env = "CERTSYNC_RELOAD_COMMAND", value_name = "CMD")]
    pub reload_command: Option<String>,

    /// `signal` keeps every call; `restart` drops them [default: signal].
    #[arg(long, env = "CERTSYNC_RELOAD_MODE", value_name = "MODE")]
    pub reload_mode: Option<String>,

    /// The signal for signal mode [default: SIGUSR2].
    #[arg(long, env = "CERTSYNC_RELOAD_SIGNAL", value_name = "SIGNAL")]
    pub reload_signal: Option<String>,

    /// After a reload, check that HOST:PORT serves the new leaf.
    #[arg(long, env = "CERTSYNC_VERIFY_TLS", value_name = "HOST:PORT")]
    pub verify_tls: Option<String>,

    /// How long --verify-tls may take [default: 10s].
    #[arg(long, env = "CERTSYNC_VERIFY_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub verify_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
