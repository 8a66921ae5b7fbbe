//! What the user typed: flags and their environment variables, nothing checked yet
//! beyond syntax. `config` turns this into a validated [`crate::config::Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;

use crate::reload::{parse_signal, Bus, Mode};

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

    /// Refuse a source larger than this, e.g. 512MB or 2GiB [default: 512MB].
    #[arg(long, env = "CERTSYNC_MAX_SOURCE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_source_size: Option<u64>,

    /// TOML file with several targets; exclusive with the target flags.
    #[arg(long, env = "CERTSYNC_CONFIG", value_name = "FILE",
          conflicts_with_all = ["TargetArgs", "ReloadArgs"])]
    pub config: Option<PathBuf>,

    /// Say what would be written and reloaded; change nothing.
    #[arg(long, env = "CERTSYNC_DRY_RUN")]
    pub dry_run: bool,

    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, env = "CERTSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `512MB`, `2GiB`, `1000`: decimal and binary units, as people write them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    match parse_size::parse_size(s) {
        Ok(0) => Err("must be larger than zero".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One line per certificate in the source: resolver (or issuer), main, SANs, key
    /// type, not-after, days left.
    List {
        #[command(flatten)]
        source: SourceArgs,

        /// `table` for people, `json` (one object per certificate) for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,

        /// Mark, in an EXPORT column, the folder an `--all` export with these
        /// filters writes each certificate to.
        #[arg(long)]
        all: bool,

        /// As `--all --include` (repeatable; implies --all).
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,

        /// As `--all --exclude` (repeatable; implies --all).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,

        /// As `--all --resolver` (implies --all).
        #[arg(long, value_name = "NAME")]
        resolver: Option<String>,
    },
    /// Asks a running daemon's /healthz: exit 0 when healthy, 1 when not. A container
    /// HEALTHCHECK that needs no shell nor curl.
    Health {
        /// Where the daemon serves /healthz [default: 127.0.0.1:9731].
        #[arg(long, env = "CERTSYNC_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Exactly one source. Not a `multiple = false` group: that would also refuse
/// --pem-cert with --pem-key, the one pair of flags that goes together.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Traefik's acme.json (v1 or v2/v3 layout).
    #[arg(long, env = "CERTSYNC_ACME", value_name = "FILE",
          conflicts_with_all = ["certbot_lineage", "caddy_storage", "pem_cert", "pem_key"])]
    pub acme: Option<PathBuf>,

    /// A certbot `live/<name>/` folder. With --once and no source, $RENEWED_LINEAGE.
    #[arg(long, env = "CERTSYNC_CERTBOT_LINEAGE", value_name = "DIR",
          conflicts_with_all = ["caddy_storage", "pem_cert", "pem_key"])]
    pub certbot_lineage: Option<PathBuf>,

    /// Caddy's storage folder, the one holding `certificates/` (--resolver names the
    /// issuer folder).
    #[arg(long, env = "CERTSYNC_CADDY_STORAGE", value_name = "DIR",
          conflicts_with_all = ["pem_cert", "pem_key"])]
    pub caddy_storage: Option<PathBuf>,

    /// A PEM certificate file, leaf first (e.g. a Kubernetes TLS Secret's tls.crt).
    #[arg(
        long,
        env = "CERTSYNC_PEM_CERT",
        value_name = "FILE",
        requires = "pem_key"
    )]
    pub pem_cert: Option<PathBuf>,

    /// The PEM private key of --pem-cert (e.g. tls.key).
    #[arg(
        long,
        env = "CERTSYNC_PEM_KEY",
        value_name = "FILE",
        requires = "pem_cert"
    )]
    pub pem_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The certificate whose main name or SANs cover NAME (required with --acme and
    /// --caddy-storage).
    #[arg(
        long,
        env = "CERTSYNC_DOMAIN",
        value_name = "NAME",
        conflicts_with = "all"
    )]
    pub domain: Option<String>,

    /// Every certificate of the source, each in OUT_DIR/<main domain>/ (instead of --domain).
    #[arg(long, env = "CERTSYNC_ALL")]
    pub all: bool,

    /// With --all: only certificates with a name (main or SAN) matching GLOB; repeatable.
    #[arg(long, env = "CERTSYNC_INCLUDE", value_name = "GLOB")]
    pub include: Vec<String>,

    /// With --all: not the certificates with a name (main or SAN) matching GLOB; repeatable.
    #[arg(long, env = "CERTSYNC_EXCLUDE", value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// With --all: remove the folders certsync created for certificates no longer exported.
    #[arg(long, env = "CERTSYNC_PRUNE")]
    pub prune: bool,

    /// Only this resolver (acme.json v2/v3) or issuer folder (Caddy).
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

    /// Also write the key and the full chain in one PEM (HAProxy, 3CX); gets --key-mode.
    #[arg(long, env = "CERTSYNC_BUNDLE_FILE", value_name = "NAME")]
    pub bundle_file: Option<String>,

    /// Also write a PKCS#12 of the key and the chain; gets --key-mode.
    #[arg(
        long,
        env = "CERTSYNC_PKCS12_FILE",
        value_name = "NAME",
        requires = "pkcs12_password_file"
    )]
    pub pkcs12_file: Option<String>,

    /// The PKCS#12 password: the first line of FILE (an empty FILE: an empty password).
    #[arg(
        long,
        env = "CERTSYNC_PKCS12_PASSWORD_FILE",
        value_name = "FILE",
        requires = "pkcs12_file"
    )]
    pub pkcs12_password_file: Option<PathBuf>,

    /// Owner of the written files, by name or number [default: the running user].
    #[arg(long, env = "CERTSYNC_OWNER", value_name = "USER[:GROUP]")]
    pub owner: Option<String>,

    /// Mode of the certificate files, octal [default: 0644].
    #[arg(long, env = "CERTSYNC_CERT_MODE", value_name = "MODE")]
    pub cert_mode: Option<String>,

    /// Mode of the key file, octal [default: 0600].
    #[arg(long, env = "CERTSYNC_KEY_MODE", value_name = "MODE")]
    pub key_mode: Option<String>,

    /// Switch the key and certificate as one: files go in a new generation folder,
    /// then the symlink OUT/..current is swapped to it; OUT/<file> link through it.
    #[arg(long, env = "CERTSYNC_PAIR_ATOMIC")]
    pub pair_atomic: bool,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Reload this unit through systemd's D-Bus API.
    #[arg(long, env = "CERTSYNC_SYSTEMD_UNIT", value_name = "UNIT",
          conflicts_with_all = ["docker_container", "docker_label", "reload_command", "signal_pid_file", "signal_process"])]
    pub systemd_unit: Option<String>,

    /// Which systemd manager to talk to [default: system].
    #[arg(
        long,
        env = "CERTSYNC_SYSTEMD_BUS",
        value_enum,
        requires = "systemd_unit"
    )]
    pub systemd_bus: Option<Bus>,

    /// Reload this container through the Docker Engine API.
    #[arg(long, env = "CERTSYNC_DOCKER_CONTAINER", value_name = "NAME_OR_ID",
          conflicts_with_all = ["docker_label", "reload_command", "signal_pid_file", "signal_process"])]
    pub docker_container: Option<String>,

    /// Reload every running container with this label.
    #[arg(
        long,
        env = "CERTSYNC_DOCKER_LABEL",
        value_name = "KEY=VALUE",
        conflicts_with = "reload_command"
    )]
    pub docker_label: Option<String>,

    /// Signal the process whose PID is in FILE (coturn's `pidfile=`).
    #[arg(long, env = "CERTSYNC_SIGNAL_PID_FILE", value_name = "FILE",
          conflicts_with_all = ["signal_process", "reload_command"])]
    pub signal_pid_file: Option<PathBuf>,

    /// Signal every process of this executable name visible in /proc.
    #[arg(
        long,
        env = "CERTSYNC_SIGNAL_PROCESS",
        value_name = "NAME",
        conflicts_with = "reload_command"
    )]
    pub signal_process: Option<String>,

    /// Run `sh -c CMD` to reload.
    #[arg(long, env = "CERTSYNC_RELOAD_COMMAND", value_name = "CMD")]
    pub reload_command: Option<String>,

    /// `signal` keeps every call; `restart` drops them [default: signal].
    #[arg(long, env = "CERTSYNC_RELOAD_MODE", value_enum)]
    pub reload_mode: Option<Mode>,

    /// The signal for signal mode [default: SIGUSR2].
    #[arg(long, env = "CERTSYNC_RELOAD_SIGNAL", value_name = "SIGNAL", value_parser = parse_signal)]
    pub reload_signal: Option<Signal>,

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
