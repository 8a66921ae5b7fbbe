//! `GET /metrics` and `GET /healthz`, served with axum.

use std::net::SocketAddr;
use std::sync::Arc;

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
    Ok((local, async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }))
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.encode(crate::unix_now()),
    )
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reasons}\n")),
    }
}
