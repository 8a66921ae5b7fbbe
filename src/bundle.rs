//! From candidates to one checked bundle: select the certificate for a domain, decode
//! it, and validate it before anything may be written.
//!
//! Rule one of certsync is that nothing failing validation reaches disk: the chain
//! parses and starts with the leaf, the key belongs to that leaf, the leaf covers the
//! domain, and it has not expired. Every error names the source entry and the domain.

use std::fmt;

use base64::Engine;
use pkcs8::der::Decode;
use rustls::pki_types::PrivateKeyDer;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::dns;
use crate::leaf::{Encoding, Leaf};
use crate::source::Candidate;

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
    if dns::name_is(&candidate.main, domain) {
        Some(Match::Main)
    } else if candidate.sans.iter().any(|s| dns::name_is(s, domain)) {
        Some(Match::San)
    } else if candidate.names().any(|n| dns::name_covers(n, domain)) {
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
    /// Leaf then chain: the certificates parsed, re-encoded as clean PEM blocks (what
    /// Traefik and certbot store, byte for byte; never text from around the blocks).
    pub fullchain: Vec<u8>,
    /// PEM of the leaf alone.
    pub leaf_pem: Vec<u8>,
    /// PEM of the chain without the leaf (empty when the source had none).
    pub chain_pem: Vec<u8>,
    /// The private key's one PEM block, re-encoded as it was parsed. Wiped from memory
    /// on drop.
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
    #[error("{origin}: the private key is refused: {reason}")]
    KeyRefused { origin: String, reason: KeyRefusal },
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
    let stored =
        decode(&candidate.certificate, candidate.encoding).map_err(base64_err("certificate"))?;
    let stored_key =
        Zeroizing::new(decode(&candidate.key, candidate.encoding).map_err(base64_err("key"))?);

    let chain_err = |reason: String| ValidateError::Chain {
        origin: origin.clone(),
        reason,
    };
    let blocks = ::pem::parse_many(&stored).map_err(|e| chain_err(e.to_string()))?;
    if blocks.is_empty() {
        return Err(chain_err("it holds no PEM block".into()));
    }
    // The PEM parser skips a block without its END line; such a tail is a truncated
    // intermediate, or worse, key text, and must not pass for a shorter chain.
    if let Some(reason) = unterminated(&stored, blocks.len()) {
        return Err(chain_err(reason));
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

    let key = key_matches(&stored_key, leaf).map_err(|e| match e {
        KeyCheck::Unreadable(reason) => ValidateError::Key {
            origin: origin.clone(),
            reason,
        },
        KeyCheck::Refused(reason) => ValidateError::KeyRefused {
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
    let fullchain = blocks.iter().map(encode).collect::<String>().into_bytes();
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

/// Whether a PEM private key belongs to `leaf`: `None` when the key cannot be read
/// (validation then says why). Sources use it to tell a pair caught mid-renewal from a
/// usable one before anything is selected.
pub fn key_fits(key_pem: &[u8], leaf: &Leaf) -> Option<bool> {
    match key_matches(key_pem, leaf) {
        Ok(_) => Some(true),
        Err(KeyCheck::Mismatch) => Some(false),
        Err(KeyCheck::Unreadable(_) | KeyCheck::Refused(_)) => None,
    }
}

/// What is wrong with PEM text, without quoting any of it (rule 6: key material never
/// reaches a message).
fn pem_problem(e: &::pem::PemError) -> String {
    use ::pem::PemError;
    match e {
        PemError::MismatchedTags(..) => "its BEGIN and END lines do not match",
        PemError::MalformedFraming => "its BEGIN/END lines are malformed",
        PemError::MissingBeginTag => "it has no BEGIN line",
        PemError::MissingEndTag => "it has no END line",
        PemError::MissingData => "a PEM block is empty",
        PemError::InvalidData(_) => "a PEM block is not valid base64",
        PemError::InvalidHeader(_) => "a PEM block has an invalid header",
        PemError::NotUtf8(_) => "it is not UTF-8 text",
    }
    .to_owned()
}

enum KeyCheck {
    Unreadable(String),
    Refused(KeyRefusal),
    Mismatch,
}

/// Why a private key that parses is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("it is encrypted; certsync needs it in clear, as Traefik and certbot store it")]
    Encrypted,
    #[error("RSA {bits} bits is too weak for a TLS server (at least 2048)")]
    WeakRsa { bits: usize },
    #[error("its algorithm (OID {0}) is not one a TLS server uses")]
    Algorithm(String),
    #[error("it does not carry its public half, and certsync cannot compute it for this curve")]
    NoPublicHalf,
}

/// The smallest RSA modulus accepted: what CAs issue for and browsers accept.
const MIN_RSA_BITS: usize = 2048;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

/// A message when `text` has more BEGIN or END lines than the `complete` blocks parsed.
fn unterminated(text: &[u8], complete: usize) -> Option<String> {
    let count = |needle: &[u8]| text.windows(needle.len()).filter(|w| *w == needle).count();
    let (begins, ends) = (count(b"-----BEGIN "), count(b"-----END "));
    (begins != complete || ends != complete).then(|| {
        format!(
            "it holds {begins} BEGIN and {ends} END lines but {complete} complete PEM block(s): \
             a block is cut short"
        )
    })
}

/// The public half a private key carries, in the terms of a leaf's SubjectPublicKeyInfo.
enum PublicHalf<'k> {
    Rsa {
        modulus: &'k [u8],
        exponent: &'k [u8],
    },
    /// The encoded point (EC) or key (Ed25519), as the leaf's subjectPublicKey bits.
    Bits(&'k [u8]),
    /// Not stored with the key: derived by loading the key (ring).
    Derive,
}

/// Whether the private key belongs to the leaf, and the key as one clean PEM block.
///
/// The public half stored in the key (RSA modulus and exponent, the EC point) must
/// equal the leaf's; this accepts every key a TLS server such as coturn (OpenSSL) can
/// use, including RSA 8192, RSA-PSS, P-521 and small exponents, which ring cannot
/// load. PKCS#8, PKCS#1 (RSA) and SEC1 (EC) are all read: Traefik writes PKCS#8,
/// older tools the others. Errors never quote key bytes.
fn key_matches(key_pem: &[u8], leaf: &Leaf) -> Result<Zeroizing<Vec<u8>>, KeyCheck> {
    // The pem crate's messages quote the text they stumbled on (a BEGIN label, a
    // header): in a key file that can be key material, so only the kind is said.
    let blocks = ::pem::parse_many(key_pem).map_err(|e| KeyCheck::Unreadable(pem_problem(&e)))?;
    if blocks.iter().any(|b| {
        b.tag() == "ENCRYPTED PRIVATE KEY"
            || b.headers()
                .get("Proc-Type")
                .is_some_and(|v| v.contains("ENCRYPTED"))
    }) {
        return Err(KeyCheck::Refused(KeyRefusal::Encrypted));
    }
    if let Some(reason) = unterminated(key_pem, blocks.len()) {
        return Err(KeyCheck::Unreadable(reason));
    }
    let mut keys = blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY"));
    let (Some(block), None) = (keys.next(), keys.next()) else {
        return Err(KeyCheck::Unreadable(format!(
            "it must hold exactly one PRIVATE KEY block; it holds {} PEM block(s): {}",
            blocks.len(),
            blocks
                .iter()
                .map(|b| b.tag())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let unreadable = |e: pkcs8::der::Error| KeyCheck::Unreadable(e.to_string());
    let der = block.contents();
    // What the leaf's SubjectPublicKeyInfo must name for this key: its algorithm, and
    // for EC the curve when the key names it. Equal bits under another algorithm are
    // not a match: a server could not load that leaf's public key.
    let rsa_kind = Kind {
        algorithms: &[OID_RSA, OID_RSA_PSS],
        curve: None,
    };
    let (public, rsa, kind) = match block.tag() {
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(unreadable)?;
            match info.algorithm.oid.to_string().as_str() {
                OID_RSA | OID_RSA_PSS => {
                    let (public, bits) = rsa_half(info.private_key).map_err(unreadable)?;
                    (public, bits, rsa_kind)
                }
                OID_EC => {
                    let (public, key_curve) = ec_half(info.private_key).map_err(unreadable)?;
                    let curve = info
                        .algorithm
                        .parameters_oid()
                        .ok()
                        .map(|o| o.to_string())
                        .or(key_curve);
                    (public, None, Kind::ec(curve))
                }
                OID_ED25519 => (
                    info.public_key.map_or(PublicHalf::Derive, PublicHalf::Bits),
                    None,
                    Kind {
                        algorithms: &[OID_ED25519],
                        curve: None,
                    },
                ),
                other => return Err(KeyCheck::Refused(KeyRefusal::Algorithm(other.to_owned()))),
            }
        }
        "RSA PRIVATE KEY" => {
            let (public, bits) = rsa_half(der).map_err(unreadable)?;
            (public, bits, rsa_kind)
        }
        "EC PRIVATE KEY" => {
            let (public, curve) = ec_half(der).map_err(unreadable)?;
            (public, None, Kind::ec(curve))
        }
        other => {
            return Err(KeyCheck::Unreadable(format!(
                "a {other:?} block is not a private key certsync reads"
            )))
        }
    };
    if let Some(bits) = rsa.filter(|b| *b < MIN_RSA_BITS) {
        return Err(KeyCheck::Refused(KeyRefusal::WeakRsa { bits }));
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&leaf.spki)
        .map_err(|e| KeyCheck::Unreadable(format!("the leaf's public key: {e}")))?;
    if !kind.fits(&leaf.spki) {
        return Err(KeyCheck::Mismatch);
    }
    let same = match public {
        // The bits are a PKCS#1 RSAPublicKey under either OID (rsaEncryption, RSASSA-PSS).
        PublicHalf::Rsa { modulus, exponent } => {
            match pkcs1::RsaPublicKey::from_der(&spki.subject_public_key.data) {
                Ok(leaf_key) => {
                    strip(leaf_key.modulus.as_bytes()) == modulus
                        && strip(leaf_key.public_exponent.as_bytes()) == exponent
                }
                Err(_) => false,
            }
        }
        PublicHalf::Bits(bits) => spki.subject_public_key.data.as_ref() == bits,
        PublicHalf::Derive => derived_public(block)? == leaf.spki.as_slice(),
    };
    if !same {
        return Err(KeyCheck::Mismatch);
    }
    let clean = ::pem::encode_config(
        block,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    );
    Ok(Zeroizing::new(clean.into_bytes()))
}

/// The modulus and exponent of a PKCS#1 key, and its size in bits.
fn rsa_half(der: &[u8]) -> Result<(PublicHalf<'_>, Option<usize>), pkcs8::der::Error> {
    let key = pkcs1::RsaPrivateKey::from_der(der)?;
    let modulus = strip(key.modulus.as_bytes());
    let bits = modulus
        .first()
        .map_or(0, |b| modulus.len() * 8 - b.leading_zeros() as usize);
    Ok((
        PublicHalf::Rsa {
            modulus,
            exponent: strip(key.public_exponent.as_bytes()),
        },
        Some(bits),
    ))
}

/// The point a SEC1 key stores (every tool in use writes it), or `Derive`; and the
/// curve it names, if it names one.
fn ec_half(der: &[u8]) -> Result<(PublicHalf<'_>, Option<String>), pkcs8::der::Error> {
    let key = sec1::EcPrivateKey::from_der(der)?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .map(|o| o.to_string());
    Ok((
        key.public_key.map_or(PublicHalf::Derive, PublicHalf::Bits),
        curve,
    ))
}

/// The algorithms (and EC curve) a leaf's public key may have for a private key.
struct Kind {
    algorithms: &'static [&'static str],
    curve: Option<String>,
}

impl Kind {
    fn ec(curve: Option<String>) -> Kind {
        Kind {
            algorithms: &[OID_EC],
            curve,
        }
    }

    /// Whether the leaf's public key, read as strict DER, has one of the key's
    /// algorithms with the parameters a TLS library loads it with (RFC 3279, 4055,
    /// 5480, 8410): NULL or none for RSA, a SEQUENCE or none for RSA-PSS, a named
    /// curve (the key's, when it names one) for EC, none for Ed25519; and whole
    /// bytes. x509-parser reads an OID whatever its tag: fuzzing found an unknown
    /// algorithm, an algorithm and a curve tagged as text, all accepted before, and
    /// OpenSSL loads none of them.
    fn fits(&self, leaf_spki: &[u8]) -> bool {
        use pkcs8::der::{Tag, Tagged};
        let Ok(spki) = spki::SubjectPublicKeyInfoRef::from_der(leaf_spki) else {
            return false;
        };
        let algorithm = spki.algorithm.oid.to_string();
        if !self.algorithms.contains(&algorithm.as_str())
            || spki.subject_public_key.unused_bits() != 0
        {
            return false;
        }
        let parameters = spki.algorithm.parameters.as_ref();
        match algorithm.as_str() {
            OID_RSA => parameters.is_none_or(|p| p.tag() == Tag::Null),
            OID_RSA_PSS => parameters.is_none_or(|p| p.tag() == Tag::Sequence),
            OID_EC => {
                let Some(leaf_curve) =
                    parameters.and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                else {
                    return false;
                };
                self.curve
                    .as_ref()
                    .is_none_or(|key| *key == leaf_curve.to_string())
            }
            _ => parameters.is_none(),
        }
    }
}

fn strip(n: &[u8]) -> &[u8] {
    let zeros = n.iter().take_while(|b| **b == 0).count();
    &n[zeros..]
}

/// The SubjectPublicKeyInfo ring derives from a key that does not store its public
/// half (an Ed25519 PKCS#8 v1, an EC key without its point).
fn derived_public(block: &::pem::Pem) -> Result<Vec<u8>, KeyCheck> {
    let der = match block.tag() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(block.contents().to_vec().into()),
        _ => PrivateKeyDer::Sec1(block.contents().to_vec().into()),
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|_| KeyCheck::Refused(KeyRefusal::NoPublicHalf))?;
    signing_key
        .public_key()
        .map(|p| p.as_ref().to_vec())
        .ok_or(KeyCheck::Refused(KeyRefusal::NoPublicHalf))
}
