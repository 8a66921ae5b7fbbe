//! `certsync health`: asks a running daemon's `/healthz`, for a container HEALTHCHECK
//! that has no shell and no curl. Healthy is a 200 within [`TIMEOUT`]; anything else
//! (503, refused, silence) is not, and the reason is printed.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// A HEALTHCHECK must answer well within Docker's default 30 s timeout.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// More than any real /healthz answer; a larger body is cut.
const MAX_BODY: usize = 64 * 1024;

/// Why the daemon is not healthy, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot connect to {0}")]
    Connect(SocketAddr, #[source] std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("asking {0}")]
    Http(SocketAddr, #[source] hyper::Error),
    #[error("unhealthy ({status}): {reasons}")]
    Unhealthy { status: u16, reasons: String },
}

/// Asks `addr`'s `/healthz`. `Ok` carries the daemon's answer. A daemon listening on
/// every address (`0.0.0.0`, `[::]`, as a container that opens its metrics does) is
/// asked on loopback, where a HEALTHCHECK inside the container reaches it.
pub async fn check(addr: SocketAddr) -> Result<String, HealthError> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    tokio::time::timeout(TIMEOUT, ask(addr))
        .await
        .map_err(|_| HealthError::Timeout(addr, TIMEOUT))?
}

async fn ask(addr: SocketAddr) -> Result<String, HealthError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| HealthError::Connect(addr, e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| HealthError::Http(addr, e))?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/healthz")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a constant request is valid");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| HealthError::Http(addr, e))?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if status == hyper::StatusCode::OK {
        Ok(text)
    } else {
        Err(HealthError::Unhealthy {
            status: status.as_u16(),
            reasons: text,
        })
    }
}
