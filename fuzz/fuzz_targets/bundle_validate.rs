//! PEM, key and validation: `bundle::validate` on a candidate made of fuzzed text.
//!
//! It must never panic, and what it accepts must be a pair a TLS server can use: the
//! first certificate a server's PEM reader finds in the fullchain it would write must
//! be the leaf that was validated, and the key it would write must have that leaf's
//! public key. That is checked here with rustls' PEM reader and ring, whatever
//! validation itself uses, so a disagreement between PEM parsers shows up too. A
//! refusal must not quote the key.
//!
//! Input: certificate text, NUL, key text, NUL, domain; each read as UTF-8 (lossily).
//! The same pair is also validated as acme.json stores it (base64 of the PEM text),
//! which must reach the same verdict.

#![no_main]

use std::borrow::Cow;

use base64::Engine;
use certsync::bundle::{self, ValidateError};
use certsync::leaf::Encoding;
use certsync::source::Candidate;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// 2027-01-15: inside the validity of the fixtures' certificates.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (certificate, key, domain) = (next(), next(), next());

    let pem = validate(&certificate, &key, &domain, Encoding::Pem);
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let base64 = validate(&b64(&certificate), &b64(&key), &domain, Encoding::Base64);
    match (&pem, &base64) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.leaf_der, b.leaf_der);
            assert_eq!(a.fullchain, b.fullchain);
            assert_eq!(*a.key, *b.key);
        }
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "{a} / {b}"
        ),
        (a, b) => panic!(
            "PEM and base64 of the same text disagree: {:?} / {:?}",
            a.as_ref().err().map(ToString::to_string),
            b.as_ref().err().map(ToString::to_string)
        ),
    }

    match pem {
        Ok(bundle) => {
            let served = CertificateDer::pem_slice_iter(&bundle.fullchain)
                .next()
                .expect("an accepted fullchain holds a certificate")
                .expect("an accepted fullchain reads as PEM");
            assert_eq!(
                served.as_ref(),
                &bundle.leaf_der[..],
                "a server would serve another leaf than the one validated"
            );
            assert_ne!(
                matches_leaf(&bundle.key, &served),
                Some(false),
                "an accepted key does not match the leaf a server would load"
            );
            assert!(bundle.leaf.covers(&domain));
            assert!(bundle.leaf.not_after > NOW);
        }
        Err(e) => {
            let message = e.to_string();
            for line in key.lines().map(str::trim) {
                let elsewhere = certificate.contains(line)
                    || domain.contains(line)
                    || format!("{domain:?}").contains(line);
                if line.len() >= 16 && !elsewhere {
                    assert!(
                        !message.contains(line),
                        "a refusal quotes the key: {message}"
                    );
                }
            }
        }
    }
});

fn validate(
    certificate: &str,
    key: &str,
    domain: &str,
    encoding: Encoding,
) -> Result<bundle::Bundle, ValidateError> {
    let candidate = Candidate {
        resolver: Some(Cow::Borrowed("fuzz")),
        // Not the fuzzed domain: messages quote the main name, and fuzzed text there
        // would pass for key text quoted from the key field.
        main: Cow::Borrowed("fuzz.example"),
        sans: Vec::new(),
        certificate: Cow::Borrowed(certificate),
        key: Cow::Borrowed(key),
        encoding,
        digest: None,
    };
    bundle::validate(&candidate, domain, NOW)
}

/// Whether the key, read as a rustls server reads it, has the leaf's public key: the
/// public half ring derives from the private key equals the leaf's
/// SubjectPublicKeyInfo. `None` for a key this check cannot load (a type or size ring
/// does not sign with), which validation may still accept.
fn matches_leaf(key_pem: &[u8], leaf: &CertificateDer<'_>) -> Option<bool> {
    let der = PrivateKeyDer::from_pem_slice(key_pem).ok()?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(der).ok()?;
    let public = signing_key.public_key()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(public.as_ref() == cert.public_key().raw)
}
