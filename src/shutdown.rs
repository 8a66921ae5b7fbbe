//! Stopping cleanly on SIGTERM or SIGINT, within the contract's 2 s.
//!
//! A pass is abandoned wherever it is: its future is dropped at the next await, which
//! ends a D-Bus or Docker call and kills a reload command's process group. Work on the
//! blocking pool cannot be dropped, and it is the work that writes files: it holds an
//! [`InFlight`] guard, and [`drain`] waits for the guards before the process exits, so a
//! temporary file is always either renamed or removed. That work is short (a read, a
//! few fsyncs), so the wait is bounded well inside the 2 s.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, RwLock};

static GATE: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

/// Held by blocking work that must finish before the process exits.
pub struct InFlight {
    _guard: Option<OwnedRwLockReadGuard<()>>,
}

/// A guard for work that must not be cut off. Once [`drain`] has begun, new work gets
/// an empty guard: it is not waited for, and nothing starts it after a shutdown anyway.
pub fn in_flight() -> InFlight {
    InFlight {
        _guard: GATE.clone().try_read_owned().ok(),
    }
}

/// Waits until no blocking work is in flight, for at most `limit`. Returns whether it
/// all finished.
pub async fn drain(limit: Duration) -> bool {
    tokio::time::timeout(limit, GATE.clone().write_owned())
        .await
        .is_ok()
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed at once, so a
/// signal during start-up is not lost to the default action.
pub fn on_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
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
