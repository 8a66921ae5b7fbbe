//! What certsync needs to know about a leaf certificate, read once with x509-parser:
//! the names it covers, its serial, its validity window and its key type.

use base64::Engine;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::dns;

/// How a source stores certificate and key text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Base64 of PEM text, as in acme.json.
    Base64,
    /// PEM text itself, as in certbot's, Caddy's and Kubernetes' files.
    Pem,
}

/// Why a stored certificate could not be read as a leaf. Each layer names itself.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("certificate is not base64")]
    Base64(#[source] base64::DecodeError),
    #[error("certificate is not PEM")]
    Pem(#[source] ::pem::PemError),
    #[error("not an X.509 certificate")]
    X509(#[source] x509_parser::nom::Err<X509Error>),
}

/// Facts about one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// DNS names from the SAN extension (the subject CN when there is none).
    pub names: Vec<String>,
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `RSA 2048`, `EC P-256`, …
    pub key_type: String,
    /// DER of the SubjectPublicKeyInfo, to compare with the private key's.
    pub spki: Vec<u8>,
    /// Whether basicConstraints says CA: a leaf must not.
    pub is_ca: bool,
    pub issuer_der: Vec<u8>,
}

impl Leaf {
    pub fn from_cert(cert: &X509Certificate<'_>) -> Leaf {
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            let cns = cert.subject().iter_common_name();
            names.extend(cns.filter_map(|cn| cn.as_str().ok()).map(str::to_owned));
        }
        let serial = cert.raw_serial();
        let serial = serial.iter().skip_while(|b| **b == 0).collect::<Vec<_>>();
        let serial = if serial.is_empty() {
            "00".to_owned()
        } else {
            serial.iter().map(|b| format!("{b:02X}")).collect()
        };
        Leaf {
            names,
            serial,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            key_type: key_type(cert.public_key()),
            spki: cert.public_key().raw.to_vec(),
            is_ca: cert.is_ca(),
            issuer_der: cert.issuer().as_raw().to_vec(),
        }
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Leaf, LeafError> {
        X509Certificate::from_der(der)
            .map(|(_, cert)| Leaf::from_cert(&cert))
            .map_err(LeafError::X509)
    }

    /// Whether any of the leaf's names covers `domain` (`*.x` covers one label).
    pub fn covers(&self, domain: &str) -> bool {
        self.names.iter().any(|n| dns::name_covers(n, domain))
    }

    /// The not-after as RFC 3339 (UTC), for people.
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }
}

/// The DER of the first certificate of a chain as a source stores it (base64 of PEM
/// text in acme.json, PEM text from certbot), appended to `out`; `scratch` is reused
/// between calls. Errors say which layer is broken, for `certsync list`.
///
/// `list` and the per-certificate metrics do this for every entry of a store, so the
/// PEM step takes a shortcut for the exact shape Go's `pem.Encode` writes; anything
/// else goes through the `pem` crate, with the same result.
pub fn stored_leaf_der(
    text: &str,
    encoding: Encoding,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), LeafError> {
    let pem_text = match encoding {
        Encoding::Pem => text.as_bytes(),
        Encoding::Base64 => {
            scratch.clear();
            base64::engine::general_purpose::STANDARD
                .decode_vec(text.trim(), scratch)
                .map_err(LeafError::Base64)?;
            &scratch[..]
        }
    };
    if first_certificate_fast(pem_text, out) {
        return Ok(());
    }
    let block = ::pem::parse(pem_text).map_err(LeafError::Pem)?;
    out.extend_from_slice(block.contents());
    Ok(())
}

/// Decodes the first block of `pem` into `out` when the text starts with a
/// `CERTIFICATE` block of plain base64 lines, as Go and OpenSSL write it; false (and
/// `out` untouched) for anything else, which `pem::parse` then handles. For text of
/// that shape `pem::parse` yields exactly these bytes: its block runs from the first
/// BEGIN to the first `-----END ` (the body, being base64, holds no `-`), it has no
/// headers without a blank line in the body, and it decodes the body without its
/// line breaks with the same engine. Anything else in the body fails the decoding.
fn first_certificate_fast(pem: &[u8], out: &mut Vec<u8>) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----\n";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let Some(rest) = pem.strip_prefix(BEGIN) else {
        return false;
    };
    let Some(end) = rest.iter().position(|&b| b == b'-') else {
        return false;
    };
    let body = &rest[..end];
    if !rest[end..].starts_with(END) || body.is_empty() {
        return false;
    }
    let mut joined = Vec::with_capacity(body.len());
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // An empty line but the last (after the final line break) is a blank line.
        if line.is_empty() && lines.peek().is_some() {
            return false;
        }
        joined.extend_from_slice(line);
    }
    let before = out.len();
    match base64::engine::general_purpose::STANDARD.decode_vec(&joined, out) {
        Ok(()) => true,
        Err(_) => {
            out.truncate(before);
            false
        }
    }
}

/// Seconds since the Unix epoch: the clock a leaf's validity is compared with.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> String {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == oid_registry::OID_EC_P256 => "EC P-256".into(),
                Some(c) if c == oid_registry::OID_NIST_EC_P384 => "EC P-384".into(),
                Some(c) if c == oid_registry::OID_NIST_EC_P521 => "EC P-521".into(),
                Some(c) => format!("EC {c}"),
                None => "EC".into(),
            }
        }
        Ok(PublicKey::Unknown(_)) if spki.algorithm.algorithm == oid_registry::OID_SIG_ED25519 => {
            "Ed25519".into()
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `list` did before the shortcut: the whole text through the `pem` crate.
    fn reference(pem: &[u8]) -> Result<Vec<u8>, String> {
        ::pem::parse(pem)
            .map(|b| b.contents().to_vec())
            .map_err(|e| crate::error::chain(&LeafError::Pem(e)))
    }

    fn leaf_der(pem: &[u8]) -> Result<Vec<u8>, String> {
        let (mut scratch, mut out) = (Vec::new(), vec![7]);
        let text = base64::engine::general_purpose::STANDARD.encode(pem);
        stored_leaf_der(&text, Encoding::Base64, &mut scratch, &mut out)
            .map_err(|e| crate::error::chain(&e))?;
        assert_eq!(out[0], 7, "appends");
        Ok(out[1..].to_vec())
    }

    #[test]
    fn the_pem_shortcut_reads_what_the_pem_crate_reads() {
        let acme: serde_json::Value =
            serde_json::from_slice(include_bytes!("../fixtures/acme.json")).unwrap();
        let chain = acme["le"]["Certificates"][0]["certificate"]
            .as_str()
            .unwrap();
        let chain = base64::engine::general_purpose::STANDARD
            .decode(chain)
            .unwrap();
        let text = String::from_utf8(chain).unwrap();
        let variants = [
            text.clone(),
            text.replace('\n', "\r\n"),
            text.replacen("-----\n", "-----\n\n", 1),
            text.replacen("\n", "\nProc-Type: 4,ENCRYPTED\n\n", 1),
            format!("junk before\n{text}"),
            text.replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
            text.replacen("-----END CERTIFICATE-----", "-----END CERTIFICAT-----", 1),
            text.replacen("-----END CERTIFICATE-----", "", 1),
            text.replacen('M', "*", 1),
            text.replacen('M', "", 1),
            text.replacen("\n", " \n", 2),
            text.replacen("=\n", "=\n\n", 1),
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_owned(),
            "-----BEGIN CERTIFICATE-----".to_owned(),
            String::new(),
        ];
        for v in &variants {
            assert_eq!(leaf_der(v.as_bytes()), reference(v.as_bytes()), "{v}");
        }
        assert!(leaf_der(text.as_bytes()).is_ok_and(|der| Leaf::from_der(&der).is_ok()));
        let mut out = Vec::new();
        let e = stored_leaf_der("!!", Encoding::Base64, &mut Vec::new(), &mut out).unwrap_err();
        assert_eq!(
            crate::error::chain(&e),
            format!(
                "certificate is not base64: {}",
                base64::engine::general_purpose::STANDARD
                    .decode("!!")
                    .unwrap_err()
            )
        );
    }
}
