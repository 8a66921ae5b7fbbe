//! Expiry and sync metrics, and the health of each target.
//!
//! The names and labels are the contract's: dashboards and alerts are written against
//! them. Each `record_*` method is the one place an event is both logged and counted,
//! so the log and the metrics cannot tell different stories.

pub mod http;
pub mod textfile;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{error, warn};

use crate::leaf::{rfc3339, Leaf};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    target: Label,
    domain: Label,
    serial: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetDomain {
    target: Label,
    domain: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcmeLabels {
    resolver: Label,
    main: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    target: Label,
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    target: Label,
    method: Label,
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: Label,
}

/// A label value, escaped as the text format requires when encoded: a name from
/// acme.json holding `"` or a newline must not end the value and forge a series.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Label(String);

impl<S: Into<String>> From<S> for Label {
    fn from(s: S) -> Label {
        Label(s.into())
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

/// The certificate a target's files hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Current {
    domain: String,
    serial: String,
    not_after: i64,
}

/// Every metric of the contract, and the per-target state behind the time-dependent ones.
pub struct Metrics {
    registry: Registry,
    not_after: Family<CertLabels, Gauge>,
    not_before: Family<CertLabels, Gauge>,
    expires_in: Family<TargetDomain, Gauge>,
    expired: Family<TargetDomain, Gauge>,
    acme_not_after: Family<AcmeLabels, Gauge>,
    sync: Family<SyncLabels, Counter>,
    last_success: Family<TargetLabel, Gauge>,
    reload: Family<ReloadLabels, Counter>,
    source_up: Gauge,
    current: Mutex<BTreeMap<String, Current>>,
    health: Mutex<BTreeMap<String, Result<(), String>>>,
    warning: Duration,
    critical: Duration,
}

impl Metrics {
    /// `warning` and `critical`: how little time left makes a target's certificate worth
    /// a warning, then an error, in the log.
    pub fn new(warning: Duration, critical: Duration) -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            not_after: Family::default(),
            not_before: Family::default(),
            expires_in: Family::default(),
            expired: Family::default(),
            acme_not_after: Family::default(),
            sync: Family::default(),
            last_success: Family::default(),
            reload: Family::default(),
            source_up: Gauge::default(),
            current: Mutex::default(),
            health: Mutex::default(),
            warning,
            critical,
            registry: Registry::default(),
        };
        registry.register(
            "certsync_certificate_not_after_seconds",
            "Not-after of the certificate a target's files hold, Unix seconds",
            metrics.not_after.clone(),
        );
        registry.register(
            "certsync_certificate_not_before_seconds",
            "Not-before of the certificate a target's files hold, Unix seconds",
            metrics.not_before.clone(),
        );
        registry.register(
            "certsync_certificate_expires_in_seconds",
            "Seconds until a target's certificate expires (negative once expired)",
            metrics.expires_in.clone(),
        );
        registry.register(
            "certsync_certificate_expired",
            "1 when a target's certificate has expired",
            metrics.expired.clone(),
        );
        registry.register(
            "certsync_acme_certificate_not_after_seconds",
            "Not-after of every certificate in the source, targeted or not, Unix seconds",
            metrics.acme_not_after.clone(),
        );
        // The OpenMetrics encoder appends `_total` to counters.
        registry.register(
            "certsync_sync",
            "Passes per target, by result",
            metrics.sync.clone(),
        );
        registry.register(
            "certsync_last_success_timestamp_seconds",
            "When a target's last successful pass ended, Unix seconds",
            metrics.last_success.clone(),
        );
        registry.register(
            "certsync_reload",
            "Reloads per target, by method and result",
            metrics.reload.clone(),
        );
        registry.register(
            "certsync_source_up",
            "1 when the last read of the source parsed",
            metrics.source_up.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: Label::from(env!("CARGO_PKG_VERSION").to_owned()),
            })
            .set(1);
        registry.register(
            "certsync_build_info",
            "Always 1; the version is a label",
            build_info,
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// A target's pass succeeded with `leaf` in its files.
    pub fn record_success(
        &self,
        target: &str,
        domain: &str,
        leaf: &Leaf,
        result: &'static str,
        now: i64,
    ) {
        self.count_sync(target, result);
        self.last_success
            .get_or_create(&TargetLabel {
                target: Label::from(target.to_owned()),
            })
            .set(now);
        let new = Current {
            domain: domain.to_owned(),
            serial: leaf.serial.clone(),
            not_after: leaf.not_after,
        };
        let previous = self
            .current
            .lock()
            .expect("metrics lock")
            .insert(target.to_owned(), new.clone());
        if let Some(old) = previous.filter(|old| *old != new) {
            // A renewal changes the serial label: the old series must go, or dashboards
            // would show the expired certificate forever.
            let old_labels = CertLabels {
                target: Label::from(target.to_owned()),
                domain: Label::from(old.domain.clone()),
                serial: Label::from(old.serial),
            };
            self.not_after.remove(&old_labels);
            self.not_before.remove(&old_labels);
            let old_domain = TargetDomain {
                target: Label::from(target.to_owned()),
                domain: Label::from(old.domain),
            };
            self.expires_in.remove(&old_domain);
            self.expired.remove(&old_domain);
        }
        let labels = CertLabels {
            target: Label::from(target.to_owned()),
            domain: Label::from(domain.to_owned()),
            serial: Label::from(leaf.serial.clone()),
        };
        self.not_after.get_or_create(&labels).set(leaf.not_after);
        self.not_before.get_or_create(&labels).set(leaf.not_before);
        // Only this target's series: an export of thousands of folders calls this once
        // per folder, and refreshing them all each time would be quadratic.
        self.refresh_one(target, &new, now);
        self.set_health(target, Ok(()));
        self.warn_expiry(target, domain, leaf, now);
    }

    /// A target's pass failed; its files (and their metrics) stay as they were.
    pub fn record_failure(&self, target: &str, reason: &str) {
        self.count_sync(target, "error");
        self.set_health(target, Err(reason.to_owned()));
    }

    /// Something with no certificate of its own (an export as a whole) is healthy.
    pub fn set_healthy(&self, name: &str) {
        self.set_health(name, Ok(()));
    }

    /// A reload was attempted; `error` says why it failed.
    pub fn record_reload(&self, target: &str, method: &str, error: Option<&str>) {
        let result = if error.is_none() { "ok" } else { "error" };
        self.reload
            .get_or_create(&ReloadLabels {
                target: Label::from(target.to_owned()),
                method: Label::from(method.to_owned()),
                result: Label::from(result.to_owned()),
            })
            .inc();
        match error {
            None => self.set_health(target, Ok(())),
            Some(reason) => self.set_health(target, Err(format!("reload failed: {reason}"))),
        }
    }

    /// Whether the last read of the source parsed.
    pub fn set_source_up(&self, up: bool) {
        self.source_up.set(i64::from(up));
    }

    /// Replaces the per-certificate series of the whole source.
    pub fn set_source_certificates(&self, certs: impl IntoIterator<Item = (String, String, i64)>) {
        self.acme_not_after.clear();
        for (resolver, main, not_after) in certs {
            self.acme_not_after
                .get_or_create(&AcmeLabels {
                    resolver: Label::from(resolver),
                    main: Label::from(main),
                })
                .set(not_after);
        }
    }

    /// A source problem fails every target (nothing could be checked).
    pub fn record_source_failure(&self, targets: impl IntoIterator<Item = String>, reason: &str) {
        for t in targets {
            self.record_failure(&t, reason);
        }
    }

    /// Forgets targets no longer configured (after SIGHUP).
    pub fn retain_targets(&self, keep: &[String]) {
        // A set: an export can label thousands of folders.
        let keep: std::collections::HashSet<&String> = keep.iter().collect();
        self.health
            .lock()
            .expect("health lock")
            .retain(|t, _| keep.contains(&t));
        let mut current = self.current.lock().expect("metrics lock");
        let gone: Vec<(String, Current)> = current
            .iter()
            .filter(|(t, _)| !keep.contains(t))
            .map(|(t, c)| (t.clone(), c.clone()))
            .collect();
        for (target, c) in gone {
            let labels = CertLabels {
                target: Label::from(target.clone()),
                domain: Label::from(c.domain.clone()),
                serial: Label::from(c.serial),
            };
            self.not_after.remove(&labels);
            self.not_before.remove(&labels);
            self.expires_in.remove(&TargetDomain {
                target: Label::from(target.clone()),
                domain: Label::from(c.domain.clone()),
            });
            self.expired.remove(&TargetDomain {
                target: Label::from(target.clone()),
                domain: Label::from(c.domain),
            });
            current.remove(&target);
        }
    }

    /// Registers targets that have had no pass yet, so /healthz says so.
    pub fn expect_targets(&self, targets: &[String]) {
        let mut health = self.health.lock().expect("health lock");
        for t in targets {
            health
                .entry(t.clone())
                .or_insert_with(|| Err("no pass yet".into()));
        }
    }

    /// `Ok` when every target's last pass succeeded; otherwise one line per failing target.
    pub fn health(&self) -> Result<(), String> {
        let health = self.health.lock().expect("health lock");
        let failing: Vec<String> = health
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("target {t:?}: {e}")))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("\n"))
        }
    }

    /// The exposition text (OpenMetrics), with the time-dependent gauges brought up to `now`.
    pub fn encode(&self, now: i64) -> String {
        self.refresh(now);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    fn refresh(&self, now: i64) {
        for (target, c) in self.current.lock().expect("metrics lock").iter() {
            self.refresh_one(target, c, now);
        }
    }

    fn refresh_one(&self, target: &str, c: &Current, now: i64) {
        let labels = TargetDomain {
            target: Label::from(target.to_owned()),
            domain: Label::from(c.domain.clone()),
        };
        self.expires_in
            .get_or_create(&labels)
            .set(c.not_after - now);
        self.expired
            .get_or_create(&labels)
            .set(i64::from(c.not_after <= now));
    }

    /// A pass found a target's files as they were, without looking at them again (an
    /// exported folder whose entry did not change): counted, its series kept.
    pub fn record_unchanged(&self, target: &str, now: i64) {
        self.count_sync(target, "unchanged");
        self.last_success
            .get_or_create(&TargetLabel {
                target: Label::from(target.to_owned()),
            })
            .set(now);
        self.set_health(target, Ok(()));
    }

    fn count_sync(&self, target: &str, result: &str) {
        self.sync
            .get_or_create(&SyncLabels {
                target: Label::from(target.to_owned()),
                result: Label::from(result.to_owned()),
            })
            .inc();
    }

    fn set_health(&self, target: &str, state: Result<(), String>) {
        self.health
            .lock()
            .expect("health lock")
            .insert(target.to_owned(), state);
    }

    fn warn_expiry(&self, target: &str, domain: &str, leaf: &Leaf, now: i64) {
        let left = leaf.not_after - now;
        let in_words = humantime::format_duration(Duration::from_secs(left.max(0) as u64));
        let not_after = rfc3339(leaf.not_after);
        if left < self.critical.as_secs() as i64 {
            error!(target, domain, serial = %leaf.serial, %not_after, "certificate expires in {in_words}: is the ACME client still renewing it?");
        } else if left < self.warning.as_secs() as i64 {
            warn!(target, domain, serial = %leaf.serial, %not_after, "certificate expires in {in_words}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(serial: &str, not_after: i64) -> Leaf {
        Leaf {
            names: vec!["turn.example.test".into()],
            serial: serial.into(),
            not_before: not_after - 90 * 86400,
            not_after,
            key_type: "EC P-256".into(),
            spki: vec![],
            is_ca: false,
            issuer_der: vec![],
        }
    }

    #[test]
    fn a_renewal_replaces_the_serial_series() {
        let m = Metrics::new(
            Duration::from_secs(14 * 86400),
            Duration::from_secs(3 * 86400),
        );
        m.record_success(
            "coturn",
            "turn.example.test",
            &leaf("0A", 2_000_000_000),
            "written",
            1_000_000_000,
        );
        m.record_success(
            "coturn",
            "turn.example.test",
            &leaf("0B", 2_100_000_000),
            "written",
            1_000_000_100,
        );
        let text = m.encode(1_000_000_200);
        assert!(!text.contains("serial=\"0A\""), "{text}");
        assert!(text.contains(
            "certsync_certificate_not_after_seconds{target=\"coturn\",domain=\"turn.example.test\",serial=\"0B\"} 2100000000"
        ));
        assert!(text.contains("certsync_certificate_expires_in_seconds{target=\"coturn\",domain=\"turn.example.test\"} 1099999800"));
        assert!(text.contains("certsync_sync_total{target=\"coturn\",result=\"written\"} 2"));
        assert!(text.contains("certsync_build_info{version="));
        assert!(m.health().is_ok());
        m.record_failure("coturn", "boom");
        assert_eq!(m.health().unwrap_err(), "target \"coturn\": boom");
    }
}
