//! `certsync list`: every certificate in an acme.json, one line each, for people.

use std::io::Write;

use crate::leaf::{self, Leaf};
use crate::source::Candidates;

/// One row of the table.
pub struct Row {
    pub resolver: String,
    pub main: String,
    pub sans: String,
    pub leaf: Result<Leaf, String>,
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
                }
            },
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
    }));
    rows
}

/// Writes the table, aligned, to `out`.
pub fn print(rows: &[Row], now: i64, out: impl Write) -> std::io::Result<()> {
    let mut tw = tabwriter::TabWriter::new(out).padding(2);
    writeln!(tw, "RESOLVER\tMAIN\tSANS\tKEY\tNOT AFTER\tDAYS LEFT")?;
    for r in rows {
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
                    "{}\t{}\t{}\t{}\t{}\t{left}",
                    r.resolver,
                    r.main,
                    r.sans,
                    l.key_type,
                    leaf::rfc3339(l.not_after)
                )?;
            }
            Err(reason) => writeln!(
                tw,
                "{}\t{}\t{}\t-\t-\tunusable: {reason}",
                r.resolver, r.main, r.sans
            )?,
        }
    }
    tw.flush()
}
