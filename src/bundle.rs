//! From candidates to one checked bundle: select the certificate for a domain, decode
//! it, and validate it before anything may be written.
//!
//! Rule one of certsync is that nothing failing validation reaches disk: the chain
//! parses and starts with the leaf, the key belongs to that leaf, the leaf covers the
//! domain, and it has not expired. Every error names the source entry and the domain.

use std::fmt;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use crate::leaf::{self, Leaf};
use crate::source::{Candidate, Encoding};

/// How well a candidate's names match the requested domain; lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    Main,
    San,
    Wildcard,
}

/// Why no certificate could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no certificate{in_resolver} covers {domain:?}; it holds: {present}")]
    NotFound {
        domain: String,
        in_resolver: String,
        present: String,
    },
}

/// How a candidate matches `domain`, if it does.
pub fn rank(candidate: &Candidate<'_>, domain: &str) -> Option<Match> {
    if leaf::name_is(&candidate.main, domain) {
        Some(Match::Main)
    } else if candidate.sans.iter().any(|s| leaf::name_is(s, domain)) {
        Some(Match::San)
    } else if candidate.names().any(|n| leaf::name_covers(n, domain)) {
        Some(Match::Wildcard)
    } else {
        None
    }
}

/// Picks the certificate for `domain`: an exact main name first, then an exact SAN,
/// then a wildcard; among equals, the one that expires last (Traefik can hold an old
/// and a renewed entry for a while, or the same domain under two resolvers).
pub fn select<'c, 'a>(
    candidates: &'c [Candidate<'a>],
    domain: &str,
    resolver: Option<&str>,
) -> Result<&'c Candidate<'a>, SelectError> {
    let in_scope = |c: &&Candidate<'_>| resolver.is_none() || c.resolver.as_deref() == resolver;
    let ranked = candidates
        .iter()
        .filter(in_scope)
        .filter_map(|c| rank(c, domain).map(|r| (r, c)));
    let Some(best) = ranked.clone().map(|(r, _)| r).min() else {
        let present: Vec<String> = candidates
            .iter()
            .filter(in_scope)
            .map(|c| c.describe())
            .take(10)
            .collect();
        let total = candidates.iter().filter(in_scope).count();
        let mut present = if present.is_empty() {
            "no certificates".to_owned()
        } else {
            present.join("; ")
        };
        if total > 10 {
            present.push_str(&format!("; and {} more", total - 10));
        }
        return Err(SelectError::NotFound {
            domain: domain.to_owned(),
            in_resolver: resolver
                .map(|r| format!(" of resolver {r:?}"))
                .unwrap_or_default(),
            present,
        });
    };
    let mut tied = ranked.filter(|(r, _)| *r == best).map(|(_, c)| c);
    let first = tied.next().expect("best rank has a candidate");
    let Some(second) = tied.next() else {
        return Ok(first);
    };
    // Only ties pay for decoding; an entry that does not decode loses the tie and is
    // reported by validation if it is all there is.
    let not_after = |c: &Candidate<'_>| decode_leaf(c).map(|l| l.not_after).unwrap_or(i64::MIN);
    Ok([first, second]
        .into_iter()
        .chain(tied)
        .max_by_key(|c| not_after(c))
        .expect("at least two"))
}

fn decode_leaf(c: &Candidate<'_>) -> Option<Leaf> {
    let pem = decode(&c.certificate, c.encoding).ok()?;
    let block = ::pem::parse(&pem).ok()?;
    Leaf::from_der(block.contents()).ok()
}

fn decode(text: &str, encoding: Encoding) -> Result<Vec<u8>, base64::DecodeError> {
    match encoding {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text.trim()),
        Encoding::Pem => Ok(text.as_bytes().to_vec()),
    }
}

/// A certificate and key that passed every check, ready to be written.
pub struct Bundle {
    /// Leaf then chain, PEM text exactly as the source stored it.
    pub fullchain: Vec<u8>,
    /// PEM of the leaf alone.
    pub leaf_pem: Vec<u8>,
    /// PEM of the chain without the leaf (empty when the source had none).
    pub chain_pem: Vec<u8>,
    /// The private key as the source stored it. Wiped from memory on drop.
    pub key: Zeroizing<Vec<u8>>,
    /// DER of the leaf, to compare with what a server presents.
    pub leaf_der: Vec<u8>,
    pub leaf: Leaf,
    /// `resolver "le", certificate "turn.example.com"`.
    pub origin: String,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("origin", &self.origin)
            .field("leaf", &self.leaf)
            .finish_non_exhaustive()
    }
}

/// Why a chosen certificate was refused. Messages never quote key material.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{origin}: the {what} field is not valid base64: {reason}")]
    Base64 {
        origin: String,
        what: &'static str,
        reason: String,
    },
    #[error("{origin}: the certificate is not a PEM chain: {reason}")]
    Chain { origin: String, reason: String },
    #[error("{origin}: the private key does not parse: {reason}")]
    Key { origin: String, reason: String },
    #[error("{origin}: the private key does not match the leaf certificate (serial {serial})")]
    KeyMismatch { origin: String, serial: String },
    #[error("{origin}: the leaf (serial {serial}) does not cover {domain:?}; it covers {names}")]
    NotCovered {
        origin: String,
        serial: String,
        domain: String,
        names: String,
    },
    #[error("{origin}: the certificate expired: not-after {not_after} (serial {serial})")]
    Expired {
        origin: String,
        serial: String,
        not_after: String,
    },
}

/// Decodes and checks a candidate for `domain` at Unix time `now`.
pub fn validate(
    candidate: &Candidate<'_>,
    domain: &str,
    now: i64,
) -> Result<Bundle, ValidateError> {
    let origin = candidate.describe();
    let base64_err = |what| {
        let origin = origin.clone();
        move |e: base64::DecodeError| ValidateError::Base64 {
            origin,
            what,
            reason: e.to_string(),
        }
    };
    let fullchain =
        decode(&candidate.certificate, candidate.encoding).map_err(base64_err("certificate"))?;
    let key =
        Zeroizing::new(decode(&candidate.key, candidate.encoding).map_err(base64_err("key"))?);

    let chain_err = |reason: String| ValidateError::Chain {
        origin: origin.clone(),
        reason,
    };
    let blocks = ::pem::parse_many(&fullchain).map_err(|e| chain_err(e.to_string()))?;
    if blocks.is_empty() {
        return Err(chain_err("it holds no PEM block".into()));
    }
    if let Some(b) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(chain_err(format!("it holds a {:?} block", b.tag())));
    }
    let parsed: Vec<Leaf> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Leaf::from_der(b.contents())
                .map_err(|e| chain_err(format!("certificate #{}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    let leaf = &parsed[0];
    if leaf.is_ca {
        return Err(chain_err(format!(
            "the first certificate (serial {}) is a CA certificate: the chain must start with the leaf",
            leaf.serial
        )));
    }
    if let Some(next) = blocks.get(1) {
        let issuer_of_next = x509_parser::parse_x509_certificate(next.contents())
            .map(|(_, c)| c.subject().as_raw().to_vec())
            .unwrap_or_default();
        if issuer_of_next != leaf.issuer_der {
            return Err(chain_err(format!(
                "certificate #2 did not issue the first one (serial {}): the chain is out of order",
                leaf.serial
            )));
        }
    }

    key_matches(&key, leaf).map_err(|e| match e {
        KeyCheck::Unreadable(reason) => ValidateError::Key {
            origin: origin.clone(),
            reason,
        },
        KeyCheck::Mismatch => ValidateError::KeyMismatch {
            origin: origin.clone(),
            serial: leaf.serial.clone(),
        },
    })?;

    if !leaf.covers(domain) {
        return Err(ValidateError::NotCovered {
            origin: origin.clone(),
            serial: leaf.serial.clone(),
            domain: domain.to_owned(),
            names: leaf.names.join(", "),
        });
    }
    if leaf.not_after <= now {
        return Err(ValidateError::Expired {
            origin: origin.clone(),
            serial: leaf.serial.clone(),
            not_after: leaf.not_after_rfc3339(),
        });
    }

    let encode = |b: &::pem::Pem| {
        ::pem::encode_config(
            b,
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        )
    };
    let leaf_pem = encode(&blocks[0]).into_bytes();
    let chain_pem = blocks[1..]
        .iter()
        .map(encode)
        .collect::<String>()
        .into_bytes();
    Ok(Bundle {
        fullchain,
        leaf_pem,
        chain_pem,
        key,
        leaf_der: blocks[0].contents().to_vec(),
        leaf: parsed.into_iter().next().expect("non-empty"),
        origin,
    })
}

enum KeyCheck {
    Unreadable(String),
    Mismatch,
}

/// Whether the private key belongs to the leaf: the public half rustls derives from the
/// key must equal the leaf's SubjectPublicKeyInfo, byte for byte. PKCS#8, PKCS#1 (RSA)
/// and SEC1 (EC) are all accepted: Traefik writes PKCS#8, older tools the others.
fn key_matches(key_pem: &[u8], leaf: &Leaf) -> Result<(), KeyCheck> {
    // The error types of these parsers never carry key bytes, only a description.
    let der =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| KeyCheck::Unreadable(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| KeyCheck::Unreadable(e.to_string()))?;
    let public = signing_key.public_key().ok_or_else(|| {
        KeyCheck::Unreadable("the key type cannot be checked against the leaf".into())
    })?;
    if public.as_ref() == leaf.spki.as_slice() {
        Ok(())
    } else {
        Err(KeyCheck::Mismatch)
    }
}
