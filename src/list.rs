//! `certsync list`: every certificate in the source, one line each, as a table for
//! people or as JSON for scripts.

use std::io::Write;
use std::process::ExitCode;

use crate::error::Chain;
use crate::leaf::unix_now;
use crate::leaf::{self, Leaf};
use crate::pipeline::{not_ready_backoff, ONCE_SOURCE_PATIENCE};
use crate::source::{self, Candidates, Interest, SourceSpec};

/// Reads `spec` (waiting out a half-written file as `--once` does) and prints its
/// certificates to stdout. Exit 0 when listed, 1 when the source cannot be read.
///
/// With `export` (`list --all`: a resolver and filters), each row also says which
/// folder such an export writes the certificate to.
pub async fn run(
    spec: &SourceSpec,
    json: bool,
    export: Option<(Option<String>, crate::export::Filter)>,
) -> ExitCode {
    let backoff = not_ready_backoff(
        std::time::Duration::from_millis(20),
        Some(ONCE_SOURCE_PATIENCE),
    );
    let rows = source::read_when_ready_for(spec, &Interest::leaves(), backoff, |c| {
        let mut rows = rows(c);
        if let Some((resolver, filter)) = &export {
            mark_export(c, resolver.as_deref(), filter, &mut rows);
        }
        rows
    })
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("certsync: {}", Chain(&e));
            return ExitCode::from(1);
        }
    };
    let out = std::io::stdout().lock();
    let printed = if json {
        print_json_from(spec, &rows, unix_now(), out)
    } else {
        print(&rows, unix_now(), out)
    };
    match printed {
        // A closed pipe (`certsync list | head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("certsync: cannot write the list: {e}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// One row of the table.
pub struct Row {
    pub resolver: String,
    pub main: String,
    pub sans: String,
    pub leaf: Result<Leaf, String>,
    /// `list --all`: the folder an export writes it to, or why not.
    pub export: Option<String>,
}

/// Fills [`Row::export`]: the folder name for the entry an `--all` export writes,
/// `older: <folder>` for an entry that loses its folder to one with a later
/// not-after, `-` for one the filters leave out, and `refused` for an unsafe name. The
/// rule is [`crate::export::plan`]'s, without the key check a list cannot make.
pub fn mark_export(
    candidates: &Candidates<'_>,
    resolver: Option<&str>,
    filter: &crate::export::Filter,
    rows: &mut [Row],
) {
    use std::cmp::Reverse;
    /// Latest not-after first, then resolver, then serial: the order of `plan`.
    type Rank = (Reverse<i64>, String, String);
    let mut best: std::collections::HashMap<String, (usize, Rank)> = Default::default();
    for (i, c) in candidates.list.iter().enumerate() {
        let in_scope = resolver.is_none() || c.resolver.as_deref() == resolver;
        let names = std::iter::once(&*c.main).chain(c.sans.iter().map(|s| &**s));
        if !in_scope || !filter.takes(names) {
            rows[i].export = Some("-".into());
            continue;
        }
        let Ok(folder) = crate::export::folder_name(&c.main) else {
            rows[i].export = Some("refused".into());
            continue;
        };
        let key = match &rows[i].leaf {
            Ok(l) => (
                Reverse(l.not_after),
                rows[i].resolver.clone(),
                l.serial.clone(),
            ),
            Err(_) => (Reverse(i64::MIN), rows[i].resolver.clone(), String::new()),
        };
        rows[i].export = Some(format!("older: {folder}"));
        match best.get(&folder) {
            Some((_, k)) if *k <= key => {}
            _ => {
                best.insert(folder, (i, key));
            }
        }
    }
    for (folder, (i, _)) in best {
        rows[i].export = Some(folder);
    }
    for row in rows.iter_mut().skip(candidates.list.len()) {
        row.export = Some("-".into());
    }
}

/// Reads the leaf of every candidate (keys are not touched). Leaves the source reader
/// already extracted ([`crate::source::Interest::with_leaves`]) are used as they are.
pub fn rows(candidates: &Candidates<'_>) -> Vec<Row> {
    let (mut scratch, mut der) = (Vec::new(), Vec::new());
    let mut rows: Vec<Row> = candidates
        .list
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            resolver: c.resolver.as_deref().unwrap_or("-").to_owned(),
            main: c.main.to_string(),
            sans: if c.sans.is_empty() {
                "-".into()
            } else {
                c.sans.join(",")
            },
            leaf: match candidates.leaves {
                Some(leaves) => leaves.leaf(i),
                // An entry read for its names only (no target could select it).
                None if c.certificate.is_empty() => Err("not read in this pass".to_owned()),
                None => {
                    der.clear();
                    leaf::stored_leaf_der(&c.certificate, c.encoding, &mut scratch, &mut der)
                        .and_then(|()| Leaf::from_der(&der))
                        .map_err(|e| crate::error::chain(&e))
                }
            },
            export: None,
        })
        .collect();
    rows.extend(candidates.skipped.iter().map(|s| Row {
        resolver: s.resolver.clone().unwrap_or_else(|| "-".into()),
        main: if s.main.is_empty() {
            "-".into()
        } else {
            s.main.clone()
        },
        sans: "-".into(),
        leaf: Err(s.reason.to_owned()),
        export: None,
    }));
    rows
}

/// Writes the table, aligned, to `out`.
pub fn print(rows: &[Row], now: i64, out: impl Write) -> std::io::Result<()> {
    let mut tw = tabwriter::TabWriter::new(out).padding(2);
    let marked = rows.iter().any(|r| r.export.is_some());
    write!(tw, "RESOLVER\tMAIN\tSANS\tKEY\tNOT AFTER\tDAYS LEFT")?;
    writeln!(tw, "{}", if marked { "\tEXPORT" } else { "" })?;
    for r in rows {
        let export = match (&r.export, marked) {
            (Some(e), _) => format!("\t{}", printable(e)),
            (None, true) => "\t-".to_owned(),
            (None, false) => String::new(),
        };
        match &r.leaf {
            Ok(l) => {
                let days = (l.not_after - now).div_euclid(86_400);
                let left = if l.not_after <= now {
                    "expired".to_owned()
                } else {
                    days.to_string()
                };
                writeln!(
                    tw,
                    "{}\t{}\t{}\t{}\t{}\t{left}{export}",
                    printable(&r.resolver),
                    printable(&r.main),
                    printable(&r.sans),
                    l.key_type,
                    leaf::rfc3339(l.not_after)
                )?;
            }
            Err(reason) => writeln!(
                tw,
                "{}\t{}\t{}\t-\t-\tunusable: {}{export}",
                printable(&r.resolver),
                printable(&r.main),
                printable(&r.sans),
                printable(reason)
            )?,
        }
    }
    tw.flush()
}

/// Writes one JSON object per certificate, in a JSON array.
pub fn print_json(rows: &[Row], now: i64, out: impl Write) -> std::io::Result<()> {
    print_json_with(rows, now, |_| None, out)
}

/// [`print_json`], each object also naming where in `spec` its certificate is kept.
pub fn print_json_from(
    spec: &SourceSpec,
    rows: &[Row],
    now: i64,
    out: impl Write,
) -> std::io::Result<()> {
    print_json_with(rows, now, |r| Some(origin(spec, r)), out)
}

/// The file or folder a row's certificate comes from. Caddy's folder is rebuilt from
/// the issuer and the site name the reader accepted as plain path components.
fn origin(spec: &SourceSpec, row: &Row) -> String {
    match spec {
        SourceSpec::Caddy(dir) if row.resolver != "-" && row.main != "-" => {
            let folder = match row.main.strip_prefix('*') {
                Some(rest) => format!("wildcard_{rest}"),
                None => row.main.clone(),
            };
            dir.join("certificates")
                .join(&row.resolver)
                .join(folder)
                .display()
                .to_string()
        }
        other => other.path().display().to_string(),
    }
}

fn print_json_with(
    rows: &[Row],
    now: i64,
    origin: impl Fn(&Row) -> Option<String>,
    mut out: impl Write,
) -> std::io::Result<()> {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let sans: Vec<&str> = if r.sans == "-" {
                Vec::new()
            } else {
                r.sans.split(',').collect()
            };
            let mut item = match &r.leaf {
                Ok(l) => serde_json::json!({
                    "resolver": r.resolver,
                    "main": r.main,
                    "sans": sans,
                    "key_type": l.key_type,
                    "serial": l.serial,
                    "not_after": leaf::rfc3339(l.not_after),
                    "days_left": (l.not_after - now).div_euclid(86_400),
                    "expired": l.not_after <= now,
                    "origin": origin(r),
                }),
                Err(reason) => serde_json::json!({
                    "resolver": r.resolver,
                    "main": r.main,
                    "sans": sans,
                    "unusable": reason,
                    "origin": origin(r),
                }),
            };
            if let Some(e) = &r.export {
                item["export"] = serde_json::Value::String(e.clone());
            }
            item
        })
        .collect();
    serde_json::to_writer_pretty(&mut out, &items)?;
    writeln!(out)
}

/// Text from the source as a terminal should show it: control characters (newlines,
/// ANSI escapes) escaped, so a hostile name cannot forge lines or recolour the screen.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        std::borrow::Cow::Owned(s.chars().flat_map(char::escape_default).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
