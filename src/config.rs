//! The validated configuration: what certsync will do, built from the flags or from a
//! TOML file. clap already refused what it can (exclusive flags, enum values); every
//! other check that needs no I/O happens here, so a bad invocation exits 2 before
//! anything is read or written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::cli::{Cli, ReloadArgs, TargetArgs};
pub use crate::export::Export;
use crate::reload::{Bus, Method, Mode, ReloadSpec, Verify};
use crate::sink::OwnerSpec;
use crate::source::SourceSpec;

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceSpec,
    pub targets: Vec<Target>,
    /// `--all` or `[[export]]`: every certificate (or a filtered set), one folder each.
    pub exports: Vec<Export>,
    pub debounce: Duration,
    pub resync: Duration,
    /// `None` when disabled with `off`.
    pub metrics_listen: Option<SocketAddr>,
    pub textfile: Option<PathBuf>,
    /// Bytes; a larger source is refused.
    pub max_source_size: u64,
    pub dry_run: bool,
    pub expiry_warning: Duration,
    pub expiry_critical: Duration,
    /// The TOML file this came from, re-read on SIGHUP.
    pub file: Option<PathBuf>,
}

/// One set of files to keep in sync, and how to make their reader reload them.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The metrics label; the domain unless set.
    pub name: String,
    /// The name to select by. `None` only with a certbot lineage, which holds one
    /// certificate; its own first name is used then.
    pub domain: Option<String>,
    pub resolver: Option<String>,
    pub out: Output,
    pub reload: Option<ReloadSpec>,
}

/// Where and how a target's files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub dir: PathBuf,
    pub cert_file: String,
    pub key_file: String,
    pub leaf_file: Option<String>,
    pub chain_file: Option<String>,
    /// Key then full chain in one PEM; written with `key_mode`.
    pub bundle_file: Option<String>,
    /// A PKCS#12 of the key and chain; written with `key_mode`.
    pub pkcs12: Option<Pkcs12Output>,
    pub owner: Option<OwnerSpec>,
    pub cert_mode: u32,
    pub key_mode: u32,
    /// Files in generation folders behind one `..current` symlink (`crate::pair`).
    pub pair_atomic: bool,
}

/// The PKCS#12 file of an output, and where its password is read (at every write, so a
/// new password takes effect without a restart; it is never kept nor logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs12Output {
    pub file: String,
    pub password_file: PathBuf,
}

/// A usage or configuration error: exit code 2. Each names the flag or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no source: give --acme FILE, --certbot-lineage DIR, --caddy-storage DIR or --pem-cert FILE --pem-key FILE (or run --once from a certbot deploy hook)")]
    NoSource,
    #[error("no target: the config file needs at least one [[target]] or [[export]]")]
    NoTarget,
    #[error("--out-dir is required")]
    NoOutDir,
    #[error("cannot read the config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("target {name:?}")]
    InTarget {
        name: String,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("{0}")]
    Conflict(&'static str),
    #[error("a domain is required with an acme.json or Caddy storage source")]
    NoDomain,
    #[error("two targets are named {0:?}: names label the metrics and must differ")]
    DuplicateName(String),
    #[error("two of its files have the same name: {0}")]
    DuplicateFile(String),
    #[error("{key}: {value:?} must be a plain file name (no '/', not '..', not '.certsync-…')")]
    FileName { key: &'static str, value: String },
    /// `..current` and `..certsync-<n>` are the pair-atomic mode's own names.
    #[error(
        "{key}: {value:?} cannot start with '..' with pair-atomic, whose folders use such names"
    )]
    PairAtomicName { key: &'static str, value: String },
    #[error("{key}: {value:?} is not an octal file mode such as 0640")]
    FileMode { key: &'static str, value: String },
    #[error("owner: {0}")]
    Owner(String),
    #[error("{key} must be longer than zero")]
    ZeroDuration { key: &'static str },
    #[error("--metrics-listen {0:?} is not HOST:PORT (an IP address) or 'off'")]
    Listen(String),
    #[error("docker label {0:?} is not KEY=VALUE")]
    DockerLabel(String),
    #[error("verify address {0:?} is not HOST:PORT")]
    VerifyAddress(String),
    #[error("signal: {0}")]
    Signal(String),
    #[error("signal process {0:?} is not an executable name (no '/', not empty)")]
    ProcessName(String),
    #[error("reload mode 'restart' cannot be used with {0}: certsync can only signal that process, it has nothing to restart it with (use --systemd-unit or --docker-container, or signal mode)")]
    NothingToRestart(&'static str),
    #[error("{key}: {pattern:?} is not a glob")]
    Glob {
        key: &'static str,
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("WATCHDOG_USEC={0} asks for a watchdog ping more often than every millisecond")]
    Watchdog(u64),
    #[error("domain {0:?} is not a DNS name")]
    BadDomain(String),
    #[error("{what} {} is the source itself: certsync would overwrite what it reads", path.display())]
    OverwritesSource { what: &'static str, path: PathBuf },
    #[error("--textfile {} is the target's {key} file: the metrics would replace it", path.display())]
    TextfileIsTargetFile { key: &'static str, path: PathBuf },
    #[error("max_source_size {0:?}: {1}")]
    Size(String, String),
}

impl ConfigError {
    fn in_target(self, name: &str) -> ConfigError {
        ConfigError::InTarget {
            name: name.to_owned(),
            source: Box::new(self),
        }
    }
}

const DEFAULT_METRICS: &str = "127.0.0.1:9731";

impl Config {
    /// Builds the configuration from the command line. `renewed_lineage` is certbot's
    /// `RENEWED_LINEAGE`, used by `--once` when no source is named.
    pub fn from_cli(cli: &Cli, renewed_lineage: Option<PathBuf>) -> Result<Config, ConfigError> {
        let file = cli.config.as_deref().map(FileConfig::load).transpose()?;

        let source = SourceSpec::from_args(&cli.source)
            .or_else(|| file.as_ref().and_then(|f| f.source.clone()))
            .or_else(|| {
                renewed_lineage
                    .filter(|_| cli.once)
                    .map(SourceSpec::Certbot)
            })
            .ok_or(ConfigError::NoSource)?;

        let (targets, exports) = match &file {
            Some(f) => (f.targets.clone(), f.exports.clone()),
            None if cli.target.all => (
                Vec::new(),
                vec![export_from_flags(&cli.target, &cli.reload)?],
            ),
            None => {
                // clap cannot tell an absent `--all` from a false one.
                let t = &cli.target;
                if !t.include.is_empty() || !t.exclude.is_empty() || t.prune {
                    return Err(ConfigError::Conflict(
                        "--include, --exclude and --prune go with --all",
                    ));
                }
                (vec![target_from_flags(t, &cli.reload)?], Vec::new())
            }
        };
        let globals = file.as_ref().map(|f| &f.globals);
        let pick = |cli: Option<Duration>, file: Option<Duration>, default: Duration| {
            cli.or(file).unwrap_or(default)
        };
        let metrics_listen = cli
            .metrics_listen
            .clone()
            .or_else(|| globals.and_then(|g| g.metrics_listen.clone()))
            .unwrap_or_else(|| DEFAULT_METRICS.to_owned());
        let config = Config {
            source,
            targets,
            exports,
            debounce: pick(
                cli.debounce,
                globals.and_then(|g| g.debounce),
                Duration::from_millis(20),
            ),
            resync: pick(
                cli.resync,
                globals.and_then(|g| g.resync),
                Duration::from_secs(300),
            ),
            metrics_listen: parse_listen(&metrics_listen)?,
            textfile: cli
                .textfile
                .clone()
                .or_else(|| globals.and_then(|g| g.textfile.clone())),
            max_source_size: match (
                cli.max_source_size,
                globals.and_then(|g| g.max_source_size.as_ref()),
            ) {
                (Some(n), _) => n,
                (None, Some(s)) => {
                    crate::cli::parse_size(s).map_err(|e| ConfigError::Size(s.clone(), e))?
                }
                (None, None) => crate::source::open::DEFAULT_MAX_SIZE,
            },
            dry_run: cli.dry_run,
            expiry_warning: pick(
                cli.expiry_warning,
                globals.and_then(|g| g.expiry_warning),
                Duration::from_secs(14 * 86400),
            ),
            expiry_critical: pick(
                cli.expiry_critical,
                globals.and_then(|g| g.expiry_critical),
                Duration::from_secs(3 * 86400),
            ),
            file: cli.config.clone(),
        };
        config.check()?;
        Ok(config)
    }

    /// Re-reads the TOML file named at start-up (SIGHUP), keeping the command line's
    /// other settings.
    pub fn reload_file(&self, cli: &Cli) -> Result<Config, ConfigError> {
        Config::from_cli(cli, None).map(|mut c| {
            if SourceSpec::from_args(&cli.source).is_none() && c.file.is_none() {
                c.source = self.source.clone();
            }
            c
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() && self.exports.is_empty() {
            return Err(ConfigError::NoTarget);
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.targets {
            if self.source.needs_domain() && t.domain.is_none() {
                return Err(ConfigError::NoDomain.in_target(&t.name));
            }
            if !names.insert(&t.name) {
                return Err(ConfigError::DuplicateName(t.name.clone()));
            }
            self.check_paths(t).map_err(|e| e.in_target(&t.name))?;
        }
        for e in &self.exports {
            // Two exports into one folder would fight over its files and prune each other.
            if !names.insert(&e.label) {
                return Err(ConfigError::DuplicateName(e.label.clone()));
            }
        }
        // A zero interval would make the timers spin (tokio refuses one outright).
        for (key, d) in [
            ("debounce", self.debounce),
            ("resync", self.resync),
            ("expiry-warning", self.expiry_warning),
            ("expiry-critical", self.expiry_critical),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { key });
            }
        }
        if self.expiry_critical > self.expiry_warning {
            return Err(ConfigError::Conflict(
                "--expiry-critical must not be longer than --expiry-warning",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// No output file may be the source, nor the textfile one of a target's files: the
    /// names are checked resolved (symlinks, `..`), as the writes will meet them.
    fn check_paths(&self, t: &Target) -> Result<(), ConfigError> {
        let source = resolved(self.source.path());
        let textfile = self.textfile.as_deref().map(resolved);
        for (key, name) in t.out.files() {
            let path = resolved(&t.out.dir.join(name));
            if path == source {
                return Err(ConfigError::OverwritesSource {
                    what: key,
                    path: t.out.dir.join(name),
                });
            }
            if textfile.as_ref() == Some(&path) {
                return Err(ConfigError::TextfileIsTargetFile {
                    key,
                    path: t.out.dir.join(name),
                });
            }
        }
        if let (Some(textfile), Some(path)) = (&textfile, &self.textfile) {
            if *textfile == source {
                return Err(ConfigError::OverwritesSource {
                    what: "--textfile",
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Output {
    /// Each file a target writes, with the option that names it.
    fn files(&self) -> Vec<(&'static str, &str)> {
        let mut files = vec![
            ("cert-file", &*self.cert_file),
            ("key-file", &*self.key_file),
        ];
        files.extend(self.leaf_file.as_deref().map(|n| ("leaf-file", n)));
        files.extend(self.chain_file.as_deref().map(|n| ("chain-file", n)));
        files
    }
}

/// `path` with its folder resolved as far as it exists (the file itself may not yet),
/// so that two spellings of one file compare equal.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => resolved(dir).join(name),
        _ => absolute,
    }
}

/// Half the watchdog period systemd asked for (`WATCHDOG_USEC`, for this process), if
/// it asked. A period too short to keep is a configuration error, not a panic.
pub fn watchdog_interval() -> Result<Option<Duration>, ConfigError> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return Ok(None);
    }
    let every = Duration::from_micros(usec / 2);
    if every < Duration::from_millis(1) {
        return Err(ConfigError::Watchdog(usec));
    }
    Ok(Some(every))
}

fn target_from_flags(t: &TargetArgs, r: &ReloadArgs) -> Result<Target, ConfigError> {
    let dir = t.out_dir.clone().ok_or(ConfigError::NoOutDir)?;
    let raw = RawTarget {
        name: None,
        domain: t.domain.clone(),
        resolver: t.resolver.clone(),
        out_dir: dir,
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        leaf_file: t.leaf_file.clone(),
        chain_file: t.chain_file.clone(),
        bundle_file: t.bundle_file.clone(),
        pkcs12_file: t.pkcs12_file.clone(),
        pkcs12_password_file: t.pkcs12_password_file.clone(),
        owner: t.owner.clone(),
        cert_mode: t.cert_mode.clone(),
        key_mode: t.key_mode.clone(),
        pair_atomic: t.pair_atomic.then_some(true),
        reload: RawReload::from_args(r),
    };
    raw.build()
}

fn export_from_flags(t: &TargetArgs, r: &ReloadArgs) -> Result<Export, ConfigError> {
    let raw = RawExport {
        out_dir: t.out_dir.clone().ok_or(ConfigError::NoOutDir)?,
        resolver: t.resolver.clone(),
        include: t.include.clone(),
        exclude: t.exclude.clone(),
        prune: t.prune,
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        leaf_file: t.leaf_file.clone(),
        chain_file: t.chain_file.clone(),
        bundle_file: t.bundle_file.clone(),
        pkcs12_file: t.pkcs12_file.clone(),
        pkcs12_password_file: t.pkcs12_password_file.clone(),
        owner: t.owner.clone(),
        cert_mode: t.cert_mode.clone(),
        key_mode: t.key_mode.clone(),
        reload: RawReload::from_args(r),
    };
    raw.build()
}

/// An `[[export]]` as written in TOML (or assembled from `--all` and its flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    out_dir: PathBuf,
    resolver: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    prune: bool,
    cert_file: Option<String>,
    key_file: Option<String>,
    leaf_file: Option<String>,
    chain_file: Option<String>,
    bundle_file: Option<String>,
    pkcs12_file: Option<String>,
    pkcs12_password_file: Option<PathBuf>,
    owner: Option<String>,
    cert_mode: Option<String>,
    key_mode: Option<String>,
    reload: Option<RawReload>,
}

impl RawExport {
    fn build(self) -> Result<Export, ConfigError> {
        let label = format!("export {}", self.out_dir.display());
        let in_export = |e: ConfigError| e.in_target(&label);
        // The file names, owner, modes and reload follow the rules of a target's.
        let as_target = RawTarget {
            name: Some(label.clone()),
            domain: None,
            resolver: self.resolver,
            out_dir: self.out_dir,
            cert_file: self.cert_file,
            key_file: self.key_file,
            leaf_file: self.leaf_file,
            chain_file: self.chain_file,
            bundle_file: self.bundle_file,
            pkcs12_file: self.pkcs12_file,
            pkcs12_password_file: self.pkcs12_password_file,
            owner: self.owner,
            cert_mode: self.cert_mode,
            key_mode: self.key_mode,
            reload: self.reload,
            // One generation folder per export folder is not built: exports write
            // their files in place.
            pair_atomic: None,
        }
        .build()?;
        if as_target
            .reload
            .as_ref()
            .is_some_and(|r| r.verify.is_some())
        {
            // Which of many certificates would the probe expect? A single target's job.
            return Err(in_export(ConfigError::Conflict(
                "verify-tls checks one served certificate: use it on a [[target]], not an export",
            )));
        }
        let filter = crate::export::Filter::new(&self.include, &self.exclude).map_err(in_export)?;
        Ok(Export {
            label,
            out: as_target.out,
            resolver: as_target.resolver,
            filter,
            prune: self.prune,
            reload: as_target.reload,
            memo: Default::default(),
        })
    }
}

/// A target as written in TOML (or assembled from flags), before checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<String>,
    domain: Option<String>,
    resolver: Option<String>,
    out_dir: PathBuf,
    cert_file: Option<String>,
    key_file: Option<String>,
    leaf_file: Option<String>,
    chain_file: Option<String>,
    bundle_file: Option<String>,
    pkcs12_file: Option<String>,
    pkcs12_password_file: Option<PathBuf>,
    owner: Option<String>,
    cert_mode: Option<String>,
    key_mode: Option<String>,
    pair_atomic: Option<bool>,
    reload: Option<RawReload>,
}

impl RawTarget {
    fn build(self) -> Result<Target, ConfigError> {
        let domain = self
            .domain
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase());
        let name = self
            .name
            .or_else(|| domain.clone())
            .unwrap_or_else(|| "certbot".to_owned());
        let in_target = |e: ConfigError| e.in_target(&name);
        if let Some(d) = &domain {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            let rest = d.strip_prefix("*.").unwrap_or(d);
            if d.len() > 253 || !rest.split('.').all(label_ok) {
                return Err(in_target(ConfigError::BadDomain(d.clone())));
            }
        }
        let file_name =
            |key: &'static str, v: Option<String>| -> Result<Option<String>, ConfigError> {
                v.map(|n| check_file_name(key, n)).transpose()
            };
        let mode = |key: &'static str, v: Option<String>, default: u32| match v {
            None => Ok(default),
            Some(s) => parse_mode(key, s),
        };
        let out = Output {
            cert_file: check_file_name(
                "cert-file",
                self.cert_file.unwrap_or_else(|| "fullchain.pem".into()),
            )
            .map_err(in_target)?,
            key_file: check_file_name(
                "key-file",
                self.key_file.unwrap_or_else(|| "privkey.pem".into()),
            )
            .map_err(in_target)?,
            leaf_file: file_name("leaf-file", self.leaf_file).map_err(in_target)?,
            chain_file: file_name("chain-file", self.chain_file).map_err(in_target)?,
            bundle_file: file_name("bundle-file", self.bundle_file).map_err(in_target)?,
            pkcs12: match (
                file_name("pkcs12-file", self.pkcs12_file).map_err(in_target)?,
                self.pkcs12_password_file,
            ) {
                (Some(file), Some(password_file)) => Some(Pkcs12Output {
                    file,
                    password_file,
                }),
                (None, None) => None,
                _ => {
                    return Err(in_target(ConfigError::Conflict(
                        "pkcs12-file and pkcs12-password-file go together (an empty password is an empty file)",
                    )))
                }
            },
            owner: self
                .owner
                .map(|o| o.parse::<OwnerSpec>().map_err(ConfigError::Owner))
                .transpose()
                .map_err(in_target)?,
            cert_mode: mode("cert-mode", self.cert_mode, 0o644).map_err(in_target)?,
            key_mode: mode("key-mode", self.key_mode, 0o600).map_err(in_target)?,
            pair_atomic: self.pair_atomic.unwrap_or(false),
            dir: self.out_dir,
        };
        let mut names: Vec<&str> = vec![&out.cert_file, &out.key_file];
        names.extend(out.leaf_file.as_deref());
        names.extend(out.chain_file.as_deref());
        names.extend(out.bundle_file.as_deref());
        names.extend(out.pkcs12.as_ref().map(|p| p.file.as_str()));
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != names.len() {
            return Err(in_target(ConfigError::DuplicateFile(names.join(", "))));
        }
        if out.pair_atomic {
            if let Some((key, value)) = out.files().into_iter().find(|(_, n)| n.starts_with("..")) {
                return Err(in_target(ConfigError::PairAtomicName {
                    key,
                    value: value.to_owned(),
                }));
            }
        }
        let reload = self
            .reload
            .map(RawReload::build)
            .transpose()
            .map_err(in_target)?
            .flatten();
        Ok(Target {
            name,
            domain,
            resolver: self.resolver,
            out,
            reload,
        })
    }
}

/// The `[target.reload]` table of the TOML file, or the reload flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    systemd_unit: Option<String>,
    bus: Option<Bus>,
    docker_container: Option<String>,
    docker_label: Option<String>,
    command: Option<String>,
    signal_pid_file: Option<PathBuf>,
    signal_process: Option<String>,
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "signal_name")]
    signal: Option<Signal>,
    verify_tls: Option<String>,
    #[serde(default, with = "humantime_serde")]
    verify_timeout: Option<Duration>,
}

fn signal_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Signal>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    name.map(|n| crate::reload::parse_signal(&n).map_err(serde::de::Error::custom))
        .transpose()
}

impl RawReload {
    fn from_args(a: &ReloadArgs) -> Option<RawReload> {
        let raw = RawReload {
            systemd_unit: a.systemd_unit.clone(),
            bus: a.systemd_bus,
            docker_container: a.docker_container.clone(),
            docker_label: a.docker_label.clone(),
            command: a.reload_command.clone(),
            signal_pid_file: a.signal_pid_file.clone(),
            signal_process: a.signal_process.clone(),
            mode: a.reload_mode,
            signal: a.reload_signal,
            verify_tls: a.verify_tls.clone(),
            verify_timeout: a.verify_timeout,
        };
        let any = raw.systemd_unit.is_some()
            || raw.docker_container.is_some()
            || raw.docker_label.is_some()
            || raw.command.is_some()
            || raw.signal_pid_file.is_some()
            || raw.signal_process.is_some()
            || raw.verify_tls.is_some()
            || raw.mode.is_some()
            || raw.signal.is_some()
            || raw.verify_timeout.is_some();
        any.then_some(raw)
    }

    /// `None` when the table sets nothing a reload could act on.
    fn build(self) -> Result<Option<ReloadSpec>, ConfigError> {
        let mut methods = Vec::new();
        if let Some(unit) = self.systemd_unit {
            methods.push(Method::Systemd {
                unit,
                bus: self.bus.unwrap_or_default(),
            });
        } else if self.bus.is_some() {
            return Err(ConfigError::Conflict(
                "a systemd bus is set without a systemd unit",
            ));
        }
        if let Some(c) = self.docker_container {
            methods.push(Method::DockerContainer(c));
        }
        if let Some(l) = self.docker_label {
            let (key, value) = l
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ConfigError::DockerLabel(l.clone()))?;
            methods.push(Method::DockerLabel {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        if let Some(c) = self.command {
            methods.push(Method::Command(c));
        }
        if let Some(p) = self.signal_pid_file {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::Conflict(
                    "the signal PID file is an empty path",
                ));
            }
            methods.push(Method::SignalPidFile(p));
        }
        if let Some(n) = self.signal_process {
            if n.is_empty() || n.contains('/') {
                return Err(ConfigError::ProcessName(n));
            }
            methods.push(Method::SignalProcess(n));
        }
        if methods.len() > 1 {
            return Err(ConfigError::Conflict("at most one reload method per target: systemd unit, docker container, docker label, signal PID file, signal process or command"));
        }
        let mode = self.mode.unwrap_or_default();
        match (mode, methods.last()) {
            (Mode::Restart, Some(Method::SignalPidFile(_))) => {
                return Err(ConfigError::NothingToRestart("a signal PID file"))
            }
            (Mode::Restart, Some(Method::SignalProcess(_))) => {
                return Err(ConfigError::NothingToRestart("a signal process"))
            }
            _ => {}
        }
        let verify = match self.verify_tls {
            None => None,
            Some(addr) => {
                if addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(ConfigError::VerifyAddress(addr));
                }
                let timeout = self.verify_timeout.unwrap_or(Duration::from_secs(10));
                if timeout.is_zero() {
                    return Err(ConfigError::ZeroDuration {
                        key: "verify-timeout",
                    });
                }
                Some(Verify { addr, timeout })
            }
        };
        if methods.is_empty() && verify.is_none() {
            return Err(ConfigError::Conflict(
                "--reload-mode, --reload-signal and --verify-timeout need a reload method: --systemd-unit, --docker-container, --docker-label, --signal-pid-file, --signal-process, --reload-command or --verify-tls",
            ));
        }
        Ok(Some(ReloadSpec {
            method: methods.pop(),
            mode,
            signal: self.signal.unwrap_or(Signal::SIGUSR2),
            verify,
        }))
    }
}

/// A file name inside the out dir: never a path, so nothing can be written elsewhere,
/// and never one of certsync's own markers.
fn check_file_name(key: &'static str, name: String) -> Result<String, ConfigError> {
    // A control character (a newline above all) would forge lines in logs and in
    // every tool that lists the folder.
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains(char::is_control)
        || name.starts_with(".certsync-")
    {
        Err(ConfigError::FileName { key, value: name })
    } else {
        Ok(name)
    }
}

fn parse_mode(key: &'static str, s: String) -> Result<u32, ConfigError> {
    let digits = s.strip_prefix("0o").unwrap_or(&s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(ConfigError::FileMode { key, value: s }),
    }
}

fn parse_listen(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| ConfigError::Listen(s.to_owned()))
}

/// The TOML file, as in the contract's "Config file" section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    acme: Option<PathBuf>,
    certbot_lineage: Option<PathBuf>,
    caddy_storage: Option<PathBuf>,
    pem_cert: Option<PathBuf>,
    pem_key: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    debounce: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    resync: Option<Duration>,
    metrics_listen: Option<String>,
    textfile: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    expiry_warning: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    expiry_critical: Option<Duration>,
    max_source_size: Option<String>,
    #[serde(default)]
    target: Vec<RawTarget>,
    #[serde(default)]
    export: Vec<RawExport>,
}

struct FileConfig {
    source: Option<SourceSpec>,
    /// The global settings (its `target` and `export` lists are moved out).
    globals: RawFile,
    targets: Vec<Target>,
    exports: Vec<Export>,
}

impl FileConfig {
    fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut raw: RawFile = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let in_file = |e: ConfigError| ConfigError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        };
        let pem = match (raw.pem_cert.take(), raw.pem_key.take()) {
            (Some(cert), Some(key)) => Some(SourceSpec::Pem { cert, key }),
            (None, None) => None,
            _ => {
                return Err(in_file(ConfigError::Conflict(
                    "pem_cert and pem_key go together",
                )))
            }
        };
        let mut sources = [
            raw.acme.take().map(SourceSpec::Acme),
            raw.certbot_lineage.take().map(SourceSpec::Certbot),
            raw.caddy_storage.take().map(SourceSpec::Caddy),
            pem,
        ]
        .into_iter()
        .flatten();
        let source = sources.next();
        if sources.next().is_some() {
            return Err(in_file(ConfigError::Conflict(
                "acme, certbot_lineage, caddy_storage and pem_cert + pem_key are exclusive",
            )));
        }
        let targets = std::mem::take(&mut raw.target)
            .into_iter()
            .map(RawTarget::build)
            .collect::<Result<_, _>>()
            .map_err(in_file)?;
        let exports = std::mem::take(&mut raw.export)
            .into_iter()
            .map(RawExport::build)
            .collect::<Result<_, _>>()
            .map_err(in_file)?;
        Ok(FileConfig {
            source,
            globals: raw,
            targets,
            exports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The config for `args`, or the error as the user reads it (clap's or ours).
    fn config(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("certsync").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_cli(&cli, None).map_err(|e| crate::error::chain(&e))
    }

    /// [`config`] for one target of an acme.json, with `extra` flags.
    fn target_config(extra: &[&str]) -> Result<Config, String> {
        let mut args = vec!["--acme", "a", "--domain", "d", "--out-dir", "/o"];
        args.extend_from_slice(extra);
        config(&args)
    }

    #[test]
    fn flags_make_one_target_with_contract_defaults() {
        let c = config(&[
            "--acme",
            "a.json",
            "--domain",
            "Turn.Example.com.",
            "--out-dir",
            "/o",
        ])
        .unwrap();
        let t = &c.targets[0];
        assert_eq!(t.domain.as_deref(), Some("turn.example.com"));
        assert_eq!(t.name, "turn.example.com");
        assert_eq!(
            (t.out.cert_file.as_str(), t.out.key_file.as_str()),
            ("fullchain.pem", "privkey.pem")
        );
        assert_eq!((t.out.cert_mode, t.out.key_mode), (0o644, 0o600));
        assert_eq!(c.debounce, Duration::from_millis(20));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9731".parse().unwrap()));
    }

    #[test]
    fn file_names_cannot_escape_the_out_dir() {
        for bad in ["../x", "a/b", "..", ""] {
            let e = target_config(&["--key-file", bad]).unwrap_err();
            assert!(e.contains("plain file name"), "{bad}: {e}");
        }
    }

    #[test]
    fn acme_needs_a_domain_and_modes_are_octal() {
        assert!(config(&["--acme", "a", "--out-dir", "/o"])
            .unwrap_err()
            .contains("domain"));
        let e = target_config(&["--key-mode", "0999"]).unwrap_err();
        assert!(e.contains("octal"), "{e}");
        let c = target_config(&["--key-mode", "0640"]).unwrap();
        assert_eq!(c.targets[0].out.key_mode, 0o640);
    }

    #[test]
    fn toml_file_as_in_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
            acme = "/letsencrypt/acme.json"
            debounce = "20ms"
            resync = "5m"
            metrics_listen = "0.0.0.0:9731"

            [[target]]
            name = "coturn"
            domain = "turn.example.com"
            resolver = "le"
            out_dir = "/etc/coturn/certs"
            owner = "turnserver:turnserver"
            key_mode = "0640"
            [target.reload]
            systemd_unit = "coturn.service"
            bus = "system"
            mode = "signal"
            verify_tls = "127.0.0.1:5349"

            [[target]]
            domain = "other.example.com"
            out_dir = "/o2"
            "#,
        )
        .unwrap();
        let c = config(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.source, SourceSpec::Acme("/letsencrypt/acme.json".into()));
        assert_eq!(c.resync, Duration::from_secs(300));
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[0].name, "coturn");
        assert_eq!(c.targets[0].out.key_mode, 0o640);
        assert!(c.targets[0].reload.is_some());
        assert_eq!(c.targets[1].name, "other.example.com");

        let e = config(&["--config", path.to_str().unwrap(), "--domain", "x"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        std::fs::write(
            &path,
            "acme = \"/a\"\n[[target]]\ndomain = \"d\"\nout_dir = \"/o\"\ntypo = 1\n",
        )
        .unwrap();
        assert!(config(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .contains("typo"));
    }

    #[test]
    fn exports_from_toml_and_from_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
            acme = "/letsencrypt/acme.json"

            [[export]]
            out_dir = "/srv/certs"
            include = ["*.example.com"]
            exclude = ["internal.*"]
            bundle_file = "haproxy.pem"
            pkcs12_file = "cert.p12"
            pkcs12_password_file = "/etc/certsync/p12-password"
            prune = true
            [export.reload]
            command = "systemctl reload haproxy"
            "#,
        )
        .unwrap();
        let c = config(&["--config", path.to_str().unwrap()]).unwrap();
        assert!(c.targets.is_empty());
        let e = &c.exports[0];
        assert_eq!(e.label, "export /srv/certs");
        assert!(e.prune);
        assert_eq!(e.out.bundle_file.as_deref(), Some("haproxy.pem"));
        assert_eq!(e.out.pkcs12.as_ref().unwrap().file, "cert.p12");
        assert!(e.takes(None, "a.example.com", &[]));
        assert!(!e.takes(None, "internal.example.com", &[]));
        assert!(!e.takes(None, "a.example.org", &[]));

        let c = config(&[
            "--acme",
            "a",
            "--all",
            "--out-dir",
            "/o",
            "--resolver",
            "le",
        ])
        .unwrap();
        assert!(c.targets.is_empty());
        assert!(c.exports[0].takes(Some("le"), "x.test", &[]));
        assert!(!c.exports[0].takes(Some("other"), "x.test", &[]));
        let refused = |args: &[&str], says: &str| {
            let e = config(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        };
        refused(
            &["--acme", "a", "--all", "--domain", "d", "--out-dir", "/o"],
            "cannot be used with",
        );
        refused(
            &[
                "--acme",
                "a",
                "--domain",
                "d",
                "--out-dir",
                "/o",
                "--include",
                "x",
            ],
            "--all",
        );
        refused(
            &[
                "--acme",
                "a",
                "--all",
                "--out-dir",
                "/o",
                "--verify-tls",
                "127.0.0.1:5349",
            ],
            "verify-tls",
        );
        refused(
            &[
                "--acme",
                "a",
                "--all",
                "--out-dir",
                "/o",
                "--include",
                "a[b",
            ],
            "not a glob",
        );
        refused(
            &[
                "--acme",
                "a",
                "--all",
                "--out-dir",
                "/o",
                "--pkcs12-file",
                "c.p12",
            ],
            "pkcs12-password-file",
        );
        refused(
            &[
                "--acme",
                "a",
                "--all",
                "--out-dir",
                "/o",
                "--bundle-file",
                ".certsync-export",
            ],
            "plain file name",
        );
        refused(
            &[
                "--acme",
                "a",
                "--all",
                "--out-dir",
                "/o",
                "--bundle-file",
                "privkey.pem",
            ],
            "same name",
        );
    }

    #[test]
    fn caddy_needs_a_domain_a_pem_pair_does_not_and_sources_are_exclusive() {
        assert!(config(&["--caddy-storage", "/c", "--out-dir", "/o"])
            .unwrap_err()
            .contains("domain is required"));
        let c = config(&["--caddy-storage", "/c", "--domain", "d", "--out-dir", "/o"]).unwrap();
        assert_eq!(c.source, SourceSpec::Caddy("/c".into()));
        let c = config(&[
            "--pem-cert",
            "/t.crt",
            "--pem-key",
            "/t.key",
            "--out-dir",
            "/o",
        ])
        .unwrap();
        assert_eq!(
            c.source,
            SourceSpec::Pem {
                cert: "/t.crt".into(),
                key: "/t.key".into()
            }
        );
        for args in [
            &["--pem-cert", "/t.crt", "--out-dir", "/o"][..],
            &["--pem-key", "/t.key", "--out-dir", "/o"],
            &[
                "--pem-cert",
                "/a",
                "--pem-key",
                "/b",
                "--acme",
                "/a",
                "--out-dir",
                "/o",
            ],
            &[
                "--caddy-storage",
                "/c",
                "--certbot-lineage",
                "/l",
                "--out-dir",
                "/o",
            ],
        ] {
            assert!(config(args).is_err(), "{args:?}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let target = "[[target]]\ndomain = \"d\"\nout_dir = \"/o\"\n";
        for (keys, source) in [
            (
                "caddy_storage = \"/c\"\n",
                Some(SourceSpec::Caddy("/c".into())),
            ),
            (
                "pem_cert = \"/t.crt\"\npem_key = \"/t.key\"\n",
                Some(SourceSpec::Pem {
                    cert: "/t.crt".into(),
                    key: "/t.key".into(),
                }),
            ),
            ("pem_cert = \"/t.crt\"\n", None),
            ("caddy_storage = \"/c\"\nacme = \"/a\"\n", None),
        ] {
            std::fs::write(&path, format!("{keys}{target}")).unwrap();
            let c = config(&["--config", path.to_str().unwrap()]);
            match source {
                Some(source) => assert_eq!(c.unwrap().source, source),
                None => assert!(c.unwrap_err().contains("c.toml: "), "{keys}"),
            }
        }
    }

    #[test]
    fn zero_durations_are_refused_not_panicked_on() {
        for (flag, key) in [("--resync", "resync"), ("--debounce", "debounce")] {
            let e = target_config(&[flag, "0s"]).unwrap_err();
            assert!(e.contains(key) && e.contains("longer than zero"), "{e}");
        }
        let e = target_config(&["--verify-tls", "127.0.0.1:5349", "--verify-timeout", "0s"])
            .unwrap_err();
        assert!(e.contains("verify-timeout"), "{e}");
    }

    #[test]
    fn reload_settings_parse_as_enums() {
        let c = target_config(&[
            "--systemd-unit",
            "coturn.service",
            "--systemd-bus",
            "user",
            "--reload-mode",
            "restart",
            "--reload-signal",
            "hup",
        ])
        .unwrap();
        let r = c.targets[0].reload.as_ref().unwrap();
        assert_eq!(
            r.method,
            Some(Method::Systemd {
                unit: "coturn.service".into(),
                bus: Bus::User
            })
        );
        assert_eq!((r.mode, r.signal), (Mode::Restart, Signal::SIGHUP));
        let e = config(&["--acme", "a", "--out-dir", "/o", "--reload-mode", "bounce"]).unwrap_err();
        assert!(e.contains("bounce"), "{e}");
        let e = target_config(&["--reload-mode", "restart"]).unwrap_err();
        assert!(e.contains("need a reload method"), "{e}");
        let e = target_config(&["--systemd-unit", "a", "--reload-command", "true"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn signal_by_pid_file_or_name_refuses_restart_mode() {
        let with = target_config;
        let c = with(&["--signal-pid-file", "/run/turnserver/turnserver.pid"]).unwrap();
        let m = c.targets[0].reload.as_ref().unwrap().method.clone();
        assert_eq!(
            m,
            Some(Method::SignalPidFile(
                "/run/turnserver/turnserver.pid".into()
            ))
        );
        assert_eq!(m.unwrap().label(), "signal");
        for bad in ["", "/usr/bin/turnserver"] {
            let e = with(&["--signal-process", bad]).unwrap_err();
            assert!(e.contains("not an executable name"), "{e}");
        }
        let e = with(&["--signal-process", "turnserver", "--reload-mode", "restart"]).unwrap_err();
        assert!(e.contains("cannot be used with a signal process"), "{e}");
        let e = with(&["--signal-process", "t", "--signal-pid-file", "/run/t.pid"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn pair_atomic_from_flag_or_toml_and_its_names_are_reserved() {
        assert!(!target_config(&[]).unwrap().targets[0].out.pair_atomic);
        assert!(
            target_config(&["--pair-atomic"]).unwrap().targets[0]
                .out
                .pair_atomic
        );
        let e = target_config(&["--pair-atomic", "--key-file", "..current"]).unwrap_err();
        assert!(e.contains("pair-atomic"), "{e}");
        // Without the mode such a name is only an odd file name.
        assert!(target_config(&["--key-file", "..key"]).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "acme = \"/a\"\n[[target]]\ndomain = \"d\"\nout_dir = \"/o\"\npair_atomic = true\n",
        )
        .unwrap();
        let c = config(&["--config", path.to_str().unwrap()]).unwrap();
        assert!(c.targets[0].out.pair_atomic);
    }
}
