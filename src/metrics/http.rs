//! `GET /metrics` and `GET /healthz`, served with axum.
//!
//! The listener is open to whoever can reach it, so it is bounded: at most
//! [`max_connections`] at a time (a connection over the bound is closed as soon as it is
//! accepted, so none waits in the kernel's queue and the fds stay free for the real
//! work), 5 s to send the request head, one request per connection. Thousands of
//! half-open connections then cost a handful of fds for 5 s, and /healthz answers.
//! One fd is held in reserve, so that /healthz still answers when the daemon has
//! none left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::Metrics;

/// The OpenMetrics text format that prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (so a busy port fails start-up, not later) and returns the server,
/// to be spawned; it stops when `shutdown` completes.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(metrics);
    Ok((local, serve(listener, app, max_connections(), shutdown)))
}

/// How long a client may take to send its request line and headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once: an eighth of the fd limit, between 8 and 128, so that
/// a flood leaves the daemon the fds it needs for acme.json, the out dirs, inotify,
/// D-Bus and Docker (under systemd's default soft limit of 1,024: 128).
pub fn max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 8).unwrap_or(128).clamp(8, 128)
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limit: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let spare = Arc::new(Spare::take());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of fds: give up the spare one, so that the next accept can
                // take a scrape and /healthz can say why.
                Err(e) if is_out_of_fds(&e) && spare.give_up() => continue,
                // Out of fds with the spare in use, or a connection reset before it
                // was accepted: the listener stays; a pause lets fds come back.
                Err(e) => {
                    tracing::debug!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    spare.retake();
                    continue;
                }
            },
        };
        // Over the bound: closed at once (dropped), never queued.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let connection =
            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let spare = spare.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
            // The connection's fd is free again: hold one in reserve once more.
            spare.retake();
        });
    }
}

fn is_out_of_fds(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE)
    )
}

/// One fd held in reserve (on /dev/null) for the listener. When the daemon has no fd
/// left, a pass fails with "Too many open files" and nothing could accept a scrape to
/// say so; closing the spare lets one connection in, and its fd becomes the spare
/// again when it closes.
struct Spare(std::sync::Mutex<Option<std::fs::File>>);

impl Spare {
    fn take() -> Spare {
        Spare(std::sync::Mutex::new(std::fs::File::open("/dev/null").ok()))
    }

    /// Closes the spare fd; false when there was none to close.
    fn give_up(&self) -> bool {
        self.0.lock().expect("spare fd lock").take().is_some()
    }

    fn retake(&self) {
        let mut spare = self.0.lock().expect("spare fd lock");
        if spare.is_none() {
            *spare = std::fs::File::open("/dev/null").ok();
        }
    }
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    // Thousands of series take milliseconds to encode: off the thread that serves
    // /healthz and runs the daemon's timers.
    let text = tokio::task::spawn_blocking(move || metrics.encode(crate::leaf::unix_now()))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reasons}\n")),
    }
}
