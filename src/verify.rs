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
#[error("verify: {0}")]
pub struct VerifyError(pub String);

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
) -> Result<Duration, VerifyError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let want = Sha256::digest(leaf_der);
    let connector = connector(sni_name(sni).is_some());
    let name = sni_name(sni).unwrap_or_else(|| fallback_name(addr));
    let mut last;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = ATTEMPT_TIMEOUT.min(left.max(Duration::from_millis(100)));
        match tokio::time::timeout(limit, served_leaf_with(&connector, addr, name.clone())).await {
            Ok(Ok(served)) => {
                if Sha256::digest(&served)[..] == want[..] {
                    return Ok(started.elapsed());
                }
                last = format!("it serves another certificate: {}", describe(&served));
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no TLS handshake within {} ms", limit.as_millis()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let pause = FIRST_PAUSES_MS
            .get(attempts as usize - 1)
            .map_or(RETRY_EVERY, |ms| Duration::from_millis(*ms));
        tokio::time::sleep(pause.min(left)).await;
    }
    Err(VerifyError(format!(
        "{addr} does not serve the certificate just written ({}) after {:.1} s and {attempts} attempts: {last}",
        describe(leaf_der),
        timeout.as_secs_f64()
    )))
}

/// The end-entity certificate (DER) that `addr` presents for `sni`, after one
/// handshake whose signature was checked. For tests and diagnostics.
pub async fn served_leaf(addr: &str, sni: &str) -> Result<Vec<u8>, String> {
    let connector = connector(sni_name(sni).is_some());
    let name = sni_name(sni).unwrap_or_else(|| fallback_name(addr));
    match tokio::time::timeout(ATTEMPT_TIMEOUT, served_leaf_with(&connector, addr, name)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no TLS handshake with {addr} within {} ms",
            ATTEMPT_TIMEOUT.as_millis()
        )),
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
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{addr} presented no certificate"))?
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
}
