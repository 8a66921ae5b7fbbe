//! After a reload: is the server now presenting the leaf we just wrote?
//!
//! A TLS handshake with rustls (ring), SNI = the domain, then the SHA-256 of the
//! served end-entity certificate is compared with the written leaf's. The chain is not
//! validated (the point is identity, not trust: the CA may be a staging or private
//! one), but the handshake signature is still checked, so the server does hold the
//! key of the certificate it presents.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The served leaf did not become the written one in time.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Every attempt failed or saw another certificate until the deadline; the source
    /// is what the last attempt saw.
    #[error("verify: {addr} does not serve the certificate just written ({written}) after {secs:.1} s and {attempts} attempts")]
    NotServed {
        addr: String,
        /// [`describe`] of the written leaf.
        written: String,
        secs: f64,
        attempts: u32,
        #[source]
        last: ProbeError,
    },
    /// Nothing accepted a connection for as long as the caller allowed
    /// ([`OnRefused::GiveUpAfter`]): the server has no listener on that port.
    #[error("verify: nothing listens on {addr}: every connection was refused for {ms} ms")]
    NothingListening {
        addr: String,
        ms: u128,
        #[source]
        source: std::io::Error,
    },
}

impl VerifyError {
    /// Whether the server refused every connection (see [`OnRefused::GiveUpAfter`]).
    pub fn is_nothing_listening(&self) -> bool {
        matches!(self, VerifyError::NothingListening { .. })
    }

    /// Whether the last attempt found nothing listening.
    pub fn last_refused(&self) -> bool {
        match self {
            VerifyError::NothingListening { .. } => true,
            VerifyError::NotServed { last, .. } => last.refused().is_some(),
        }
    }
}

/// What one handshake attempt saw, when it did not see the written leaf.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no TLS handshake with {addr} within {ms} ms")]
    Timeout { addr: String, ms: u128 },
    #[error("{addr} presented no certificate")]
    NoCertificate { addr: String },
    /// `served` is [`describe`] of the served leaf.
    #[error("it serves another certificate: {served}")]
    Other { served: String },
}

impl ProbeError {
    fn refused(&self) -> Option<&std::io::Error> {
        match self {
            ProbeError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                Some(source)
            }
            _ => None,
        }
    }
}

/// What to do while every connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefused {
    /// Keep trying until the timeout: the server may still be starting.
    KeepTrying,
    /// Stop with [`VerifyError::NothingListening`] once connections have been refused
    /// (and nothing else seen) for this long: the caller can do something about a
    /// missing listener (restart the server) and need not wait the whole timeout.
    GiveUpAfter(Duration),
}

/// One connection and handshake, at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts: short at first (a reload usually takes effect within tens
/// of milliseconds), then every 150 ms.
const RETRY_EVERY: Duration = Duration::from_millis(150);
const FIRST_PAUSES_MS: [u64; 3] = [20, 40, 80];

/// Handshakes with `addr` (SNI = `sni`) until the served leaf's DER equals `leaf_der`,
/// for at most `timeout`. Returns how long it took.
pub async fn wait_for_leaf(
    addr: &str,
    sni: &str,
    leaf_der: &[u8],
    timeout: Duration,
    on_refused: OnRefused,
) -> Result<Duration, VerifyError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let want = Sha256::digest(leaf_der);
    let connector = connector(sni_name(sni).is_some());
    let name = sni_name(sni).unwrap_or_else(|| fallback_name(addr));
    let mut only_refused = true;
    let mut attempts = 0u32;
    let last = loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = ATTEMPT_TIMEOUT.min(left.max(Duration::from_millis(100)));
        let seen =
            match tokio::time::timeout(limit, served_leaf_with(&connector, addr, name.clone()))
                .await
            {
                Ok(Ok(served)) if Sha256::digest(&served)[..] == want[..] => {
                    return Ok(started.elapsed())
                }
                Ok(Ok(served)) => ProbeError::Other {
                    served: describe(&served),
                },
                Ok(Err(e)) => e,
                Err(_) => ProbeError::Timeout {
                    addr: addr.to_owned(),
                    ms: limit.as_millis(),
                },
            };
        only_refused &= seen.refused().is_some();
        if let (OnRefused::GiveUpAfter(grace), true) = (on_refused, only_refused) {
            if started.elapsed() >= grace {
                if let ProbeError::Connect { source, .. } = seen {
                    return Err(VerifyError::NothingListening {
                        addr: addr.to_owned(),
                        ms: started.elapsed().as_millis(),
                        source,
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break seen;
        }
        let pause = FIRST_PAUSES_MS
            .get(attempts as usize - 1)
            .map_or(RETRY_EVERY, |ms| Duration::from_millis(*ms));
        tokio::time::sleep(pause.min(left)).await;
    };
    Err(VerifyError::NotServed {
        addr: addr.to_owned(),
        written: describe(leaf_der),
        secs: timeout.as_secs_f64(),
        attempts,
        last,
    })
}

/// The end-entity certificate (DER) that `addr` presents for `sni`, after one
/// handshake whose signature was checked. For tests and diagnostics.
pub async fn served_leaf(addr: &str, sni: &str) -> Result<Vec<u8>, ProbeError> {
    let connector = connector(sni_name(sni).is_some());
    let name = sni_name(sni).unwrap_or_else(|| fallback_name(addr));
    match tokio::time::timeout(ATTEMPT_TIMEOUT, served_leaf_with(&connector, addr, name)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout {
            addr: addr.to_owned(),
            ms: ATTEMPT_TIMEOUT.as_millis(),
        }),
    }
}

/// A TLS client for identity checks: any chain is accepted, handshake signatures are
/// verified. For tests (e.g. a STUN client over TLS) too.
pub fn client_config(send_sni: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyChain { provider }))
        .with_no_client_auth();
    config.enable_sni = send_sni;
    config
}

/// The name to present: the domain itself, a name under a wildcard, or the IP.
/// `None` when it is neither a DNS name nor an IP address (then no SNI is sent).
pub fn sni_name(domain: &str) -> Option<ServerName<'static>> {
    let domain = match domain.strip_prefix("*.") {
        Some(rest) => format!("certsync-verify.{rest}"),
        None => domain.to_owned(),
    };
    if let Ok(ip) = domain.parse::<IpAddr>() {
        return Some(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(domain).ok()
}

fn fallback_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    host.parse::<IpAddr>()
        .map(|ip| ServerName::IpAddress(ip.into()))
        .unwrap_or_else(|_| ServerName::try_from("certsync.invalid").expect("a valid DNS name"))
}

fn connector(send_sni: bool) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(send_sni)))
}

async fn served_leaf_with(
    connector: &TlsConnector,
    addr: &str,
    name: ServerName<'static>,
) -> Result<Vec<u8>, ProbeError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|source| ProbeError::Handshake {
            addr: addr.to_owned(),
            source,
        })?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| ProbeError::NoCertificate {
            addr: addr.to_owned(),
        })?
        .as_ref()
        .to_vec();
    // A polite close; the answer is already in hand.
    let mut tls = tls;
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncWriteExt::shutdown(&mut tls),
    )
    .await;
    Ok(leaf)
}

/// "serial 0A:1B…, sha256 3f2a…" of a DER certificate.
pub fn describe(der: &[u8]) -> String {
    let sha = hex(&Sha256::digest(der)[..8]);
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => format!(
            "serial {}, subject {}, sha256 {sha}…",
            cert.raw_serial_as_string(),
            cert.subject()
        ),
        Err(_) => format!("sha256 {sha}… (not parseable as X.509)"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Accepts any certificate chain; checks the handshake signatures.
#[derive(Debug)]
struct AnyChain {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_for_plain_wildcard_ip_and_junk() {
        assert_eq!(
            sni_name("turn.example.com"),
            Some(ServerName::try_from("turn.example.com").unwrap())
        );
        assert_eq!(
            sni_name("*.example.com"),
            Some(ServerName::try_from("certsync-verify.example.com").unwrap())
        );
        assert!(matches!(
            sni_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert_eq!(sni_name("not a name"), None);
    }

    #[test]
    fn a_port_nobody_listens_on_is_nothing_listening_only_when_asked() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let grace = Duration::from_millis(300);
        let t = Instant::now();
        let e = rt
            .block_on(wait_for_leaf(
                &addr,
                "turn.example.test",
                b"leaf",
                Duration::from_secs(10),
                OnRefused::GiveUpAfter(grace),
            ))
            .unwrap_err();
        assert!(e.is_nothing_listening(), "{e}");
        assert!(t.elapsed() >= grace && t.elapsed() < Duration::from_secs(2));
        assert_eq!(
            e.to_string(),
            format!(
                "verify: nothing listens on {addr}: every connection was refused for {} ms",
                match &e {
                    VerifyError::NothingListening { ms, .. } => *ms,
                    _ => unreachable!(),
                }
            )
        );

        let e = rt
            .block_on(wait_for_leaf(
                &addr,
                "turn.example.test",
                b"leaf",
                Duration::from_millis(400),
                OnRefused::KeepTrying,
            ))
            .unwrap_err();
        assert!(!e.is_nothing_listening());
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert_eq!(source, format!("cannot connect to {addr}"));
    }
}
