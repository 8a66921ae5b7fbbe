//! The validated configuration: what certsync will do, built from the flags or from a
//! TOML file. Every check that needs no I/O happens here, so a bad invocation exits 2
//! before anything is read or written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{Cli, ReloadArgs, TargetArgs};
use crate::reload::ReloadSpec;
use crate::sink::OwnerSpec;
use crate::source::SourceSpec;

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceSpec,
    pub targets: Vec<Target>,
    pub debounce: Duration,
    pub resync: Duration,
    /// `None` when disabled with `off`.
    pub metrics_listen: Option<SocketAddr>,
    pub textfile: Option<PathBuf>,
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
    pub owner: Option<OwnerSpec>,
    pub cert_mode: u32,
    pub key_mode: u32,
}

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

const DEFAULT_METRICS: &str = "127.0.0.1:9731";

impl Config {
    /// Builds the configuration from the command line. `renewed_lineage` is certbot's
    /// `RENEWED_LINEAGE`, used by `--once` when no source is named.
    pub fn from_cli(cli: &Cli, renewed_lineage: Option<PathBuf>) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                if target_flags_given(&cli.target, &cli.reload) {
                    return err("--config and the target flags (--domain, --out-dir, --systemd-unit, …) are exclusive");
                }
                Some(FileConfig::load(path)?)
            }
            None => None,
        };

        let source = match (&cli.source.acme, &cli.source.certbot_lineage) {
            (Some(a), None) => Some(SourceSpec::Acme(a.clone())),
            (None, Some(c)) => Some(SourceSpec::Certbot(c.clone())),
            (Some(_), Some(_)) => return err("--acme and --certbot-lineage are exclusive"),
            (None, None) => None,
        };
        let source = source
            .or_else(|| file.as_ref().and_then(|f| f.source.clone()))
            .or_else(|| {
                renewed_lineage
                    .filter(|_| cli.once)
                    .map(SourceSpec::Certbot)
            });
        let Some(source) = source else {
            return err("no source: give --acme FILE or --certbot-lineage DIR (or run --once from a certbot deploy hook)");
        };

        let targets = match &file {
            Some(f) => f.targets.clone(),
            None => vec![target_from_flags(&cli.target, &cli.reload)?],
        };
        let file_globals = file.as_ref().map(|f| &f.globals);
        let pick = |cli: Option<Duration>, file: Option<Duration>, default: Duration| {
            cli.or(file).unwrap_or(default)
        };
        let metrics_listen = cli
            .metrics_listen
            .clone()
            .or_else(|| file_globals.and_then(|g| g.metrics_listen.clone()))
            .unwrap_or_else(|| DEFAULT_METRICS.to_owned());
        let config = Config {
            source,
            targets,
            debounce: pick(
                cli.debounce,
                file_globals.and_then(|g| g.debounce),
                Duration::from_millis(20),
            ),
            resync: pick(
                cli.resync,
                file_globals.and_then(|g| g.resync),
                Duration::from_secs(300),
            ),
            metrics_listen: parse_listen(&metrics_listen)?,
            textfile: cli
                .textfile
                .clone()
                .or_else(|| file_globals.and_then(|g| g.textfile.clone())),
            dry_run: cli.dry_run,
            expiry_warning: pick(
                cli.expiry_warning,
                file_globals.and_then(|g| g.expiry_warning),
                Duration::from_secs(14 * 86400),
            ),
            expiry_critical: pick(
                cli.expiry_critical,
                file_globals.and_then(|g| g.expiry_critical),
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
            if cli.source.acme.is_none() && cli.source.certbot_lineage.is_none() && c.file.is_none()
            {
                c.source = self.source.clone();
            }
            c
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() {
            return err("no target: the config file needs at least one [[target]]");
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.targets {
            if matches!(self.source, SourceSpec::Acme(_)) && t.domain.is_none() {
                return err(format!(
                    "target {:?}: a domain is required with an acme.json source",
                    t.name
                ));
            }
            if !names.insert(&t.name) {
                return err(format!(
                    "two targets are named {:?}: names label the metrics and must differ",
                    t.name
                ));
            }
        }
        if self.expiry_critical > self.expiry_warning {
            return err("--expiry-critical must not be longer than --expiry-warning");
        }
        Ok(())
    }
}

fn target_flags_given(t: &TargetArgs, r: &ReloadArgs) -> bool {
    let TargetArgs {
        domain,
        resolver,
        out_dir,
        cert_file,
        key_file,
        leaf_file,
        chain_file,
        owner,
        cert_mode,
        key_mode,
    } = t;
    let ReloadArgs {
        systemd_unit,
        systemd_bus,
        docker_container,
        docker_label,
        reload_command,
        reload_mode,
        reload_signal,
        verify_tls,
        verify_timeout,
    } = r;
    [
        domain, resolver, cert_file, key_file, leaf_file, chain_file, owner, cert_mode, key_mode,
    ]
    .iter()
    .any(|o| o.is_some())
        || out_dir.is_some()
        || [
            systemd_unit,
            systemd_bus,
            docker_container,
            docker_label,
            reload_command,
            reload_mode,
            reload_signal,
            verify_tls,
        ]
        .iter()
        .any(|o| o.is_some())
        || verify_timeout.is_some()
}

fn target_from_flags(t: &TargetArgs, r: &ReloadArgs) -> Result<Target, ConfigError> {
    let Some(dir) = t.out_dir.clone() else {
        return err("--out-dir is required");
    };
    let raw = RawTarget {
        name: None,
        domain: t.domain.clone(),
        resolver: t.resolver.clone(),
        out_dir: dir,
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        leaf_file: t.leaf_file.clone(),
        chain_file: t.chain_file.clone(),
        owner: t.owner.clone(),
        cert_mode: t.cert_mode.clone(),
        key_mode: t.key_mode.clone(),
        reload: None,
    };
    let reload = ReloadSpec::from_args(r)?;
    raw.build(reload)
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
    owner: Option<String>,
    cert_mode: Option<String>,
    key_mode: Option<String>,
    reload: Option<crate::reload::RawReload>,
}

impl RawTarget {
    fn build(self, reload: Option<ReloadSpec>) -> Result<Target, ConfigError> {
        let domain = self
            .domain
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase());
        let name = self
            .name
            .or_else(|| domain.clone())
            .unwrap_or_else(|| "certbot".to_owned());
        let ctx = |msg: String| ConfigError(format!("target {name:?}: {msg}"));
        let file_name = |flag: &str,
                         v: Option<String>,
                         default: Option<&str>|
         -> Result<Option<String>, ConfigError> {
            match v.or(default.map(str::to_owned)) {
                None => Ok(None),
                Some(n) => check_file_name(&n)
                    .map(|()| Some(n))
                    .map_err(|m| ctx(format!("{flag}: {m}"))),
            }
        };
        let mode = |flag: &str, v: Option<String>, default: u32| match v {
            None => Ok(default),
            Some(s) => parse_mode(&s).map_err(|m| ctx(format!("{flag}: {m}"))),
        };
        let out = Output {
            cert_file: file_name("cert-file", self.cert_file, Some("fullchain.pem"))?
                .expect("default"),
            key_file: file_name("key-file", self.key_file, Some("privkey.pem"))?.expect("default"),
            leaf_file: file_name("leaf-file", self.leaf_file, None)?,
            chain_file: file_name("chain-file", self.chain_file, None)?,
            owner: self
                .owner
                .map(|o| {
                    o.parse::<OwnerSpec>()
                        .map_err(|m| ctx(format!("owner: {m}")))
                })
                .transpose()?,
            cert_mode: mode("cert-mode", self.cert_mode, 0o644)?,
            key_mode: mode("key-mode", self.key_mode, 0o600)?,
            dir: self.out_dir,
        };
        let mut names: Vec<&str> = vec![&out.cert_file, &out.key_file];
        names.extend(out.leaf_file.as_deref());
        names.extend(out.chain_file.as_deref());
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != names.len() {
            return Err(ctx(format!(
                "two of its files have the same name: {}",
                names.join(", ")
            )));
        }
        let reload = match (reload, self.reload) {
            (Some(r), _) => Some(r),
            (None, Some(raw)) => Some(raw.build().map_err(|e| ctx(e.0))?),
            (None, None) => None,
        };
        Ok(Target {
            name,
            domain,
            resolver: self.resolver,
            out,
            reload,
        })
    }
}

/// A file name inside the out dir: never a path, so nothing can be written elsewhere.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Err(format!(
            "{name:?} must be a plain file name (no '/', not '..')"
        ))
    } else {
        Ok(())
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal file mode such as 0640")),
    }
}

fn parse_listen(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        ConfigError(format!(
            "--metrics-listen {s:?} is not HOST:PORT (an IP address) or 'off'"
        ))
    })
}

/// The TOML file, as in the contract's "Config file" section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    acme: Option<PathBuf>,
    certbot_lineage: Option<PathBuf>,
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
    #[serde(default)]
    target: Vec<RawTarget>,
}

struct FileConfig {
    source: Option<SourceSpec>,
    /// The global settings (its `target` list is moved out into `targets`).
    globals: RawFile,
    targets: Vec<Target>,
}

impl FileConfig {
    fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let where_ = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {where_}: {e}")))?;
        let mut raw: RawFile =
            toml::from_str(&text).map_err(|e| ConfigError(format!("{where_}: {e}")))?;
        let source = match (raw.acme.take(), raw.certbot_lineage.take()) {
            (Some(a), None) => Some(SourceSpec::Acme(a)),
            (None, Some(c)) => Some(SourceSpec::Certbot(c)),
            (Some(_), Some(_)) => {
                return err(format!("{where_}: acme and certbot_lineage are exclusive"))
            }
            (None, None) => None,
        };
        let targets = std::mem::take(&mut raw.target)
            .into_iter()
            .map(|t| t.build(None))
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError(format!("{where_}: {}", e.0)))?;
        Ok(FileConfig {
            source,
            globals: raw,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("certsync").chain(args.iter().copied())).unwrap();
        Config::from_cli(&cli, None)
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
            let e = config(&[
                "--acme",
                "a",
                "--domain",
                "d",
                "--out-dir",
                "/o",
                "--key-file",
                bad,
            ])
            .unwrap_err();
            assert!(e.0.contains("plain file name"), "{bad}: {e}");
        }
    }

    #[test]
    fn acme_needs_a_domain_and_modes_are_octal() {
        assert!(config(&["--acme", "a", "--out-dir", "/o"])
            .unwrap_err()
            .0
            .contains("domain"));
        let e = config(&[
            "--acme",
            "a",
            "--domain",
            "d",
            "--out-dir",
            "/o",
            "--key-mode",
            "0999",
        ])
        .unwrap_err();
        assert!(e.0.contains("octal"), "{e}");
        let c = config(&[
            "--acme",
            "a",
            "--domain",
            "d",
            "--out-dir",
            "/o",
            "--key-mode",
            "0640",
        ])
        .unwrap();
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
        assert!(e.0.contains("exclusive"));
        std::fs::write(
            &path,
            "acme = \"/a\"\n[[target]]\ndomain = \"d\"\nout_dir = \"/o\"\ntypo = 1\n",
        )
        .unwrap();
        assert!(config(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .0
            .contains("typo"));
    }
}
