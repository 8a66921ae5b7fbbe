//! One pass for one target: select, validate, write. The step the daemon repeats on
//! every change and `--once` runs a single time.

use crate::bundle::{self, Bundle, SelectError, ValidateError};
use crate::config::Target;
use crate::sink::{self, Action, SinkError, Wanted};
use crate::source::Candidates;

/// What a successful pass did to a target's files.
#[derive(Debug)]
pub struct Synced {
    pub bundle: Bundle,
    /// Files whose content was replaced (a reload is due when non-empty).
    pub written: Vec<String>,
    /// Unchanged files whose owner or mode was fixed.
    pub repaired: Vec<String>,
}

impl Synced {
    /// The `result` label of `certsync_sync_total`.
    pub fn result_label(&self) -> &'static str {
        if self.written.is_empty() {
            "unchanged"
        } else {
            "written"
        }
    }
}

/// Why a target could not be brought in sync. Its files stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("{0}")]
    Sink(#[from] SinkError),
    #[error("the source holds no certificate")]
    Empty,
}

/// Brings one target's files in line with the source. With `dry_run`, only compares
/// and reports.
pub fn sync_target(
    target: &Target,
    candidates: &Candidates<'_>,
    now: i64,
    dry_run: bool,
) -> Result<Synced, TargetError> {
    let domain = match &target.domain {
        Some(d) => d.clone(),
        // A certbot lineage holds one certificate: its own first name.
        None => candidates
            .list
            .first()
            .ok_or(TargetError::Empty)?
            .main
            .to_string(),
    };
    let chosen = bundle::select(&candidates.list, &domain, target.resolver.as_deref())?;
    let bundle = bundle::validate(chosen, &domain, now)?;
    let owner = match &target.out.owner {
        Some(spec) => spec.resolve()?,
        None => sink::Owner::default(),
    };
    let out = &target.out;
    let mut wanted = vec![
        Wanted {
            name: &out.cert_file,
            content: &bundle.fullchain,
            mode: out.cert_mode,
        },
        Wanted {
            name: &out.key_file,
            content: &bundle.key,
            mode: out.key_mode,
        },
    ];
    if let Some(name) = &out.leaf_file {
        wanted.push(Wanted {
            name,
            content: &bundle.leaf_pem,
            mode: out.cert_mode,
        });
    }
    if let Some(name) = &out.chain_file {
        wanted.push(Wanted {
            name,
            content: &bundle.chain_pem,
            mode: out.cert_mode,
        });
    }
    let plan = sink::plan(&out.dir, &wanted, owner)?;
    if !dry_run {
        sink::apply(&plan)?;
    }
    let names = |a| plan.names(a).into_iter().map(str::to_owned).collect();
    let (written, repaired) = (names(Action::Write), names(Action::Repair));
    drop(plan);
    Ok(Synced {
        bundle,
        written,
        repaired,
    })
}
