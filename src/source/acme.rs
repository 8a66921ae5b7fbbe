//! Traefik's `acme.json`, in both layouts it has ever written.
//!
//! v1 keeps one resolver at the top level (`{"Account", "Certificates": [{"Domain":
//! {"Main", "SANs"}, "Certificate", "Key"}]}`); v2 and v3 nest that per resolver and
//! lower-case the fields (`{"<resolver>": {"Account", "Certificates": [{"domain":
//! {"main", "sans"}, "certificate", "key", "Store"}]}}`). The layout is told apart by
//! shape while parsing, in a single pass.
//!
//! Large Traefik instances keep thousands of certificates here and rewrite the whole
//! file on every renewal, so it is read in one of two ways, neither of which builds a
//! DOM or decodes base64 before a certificate is chosen:
//!
//! - [`parse`]: `serde_json` over the whole file in memory, borrowing every string from
//!   it. It is the definition of what certsync accepts.
//! - [`read_streamed`]: a single pass through a small buffer ([`stream`]) that keeps,
//!   of each entry, only what an [`Interest`] asks for. It is a fast path: whatever it
//!   is not sure to read exactly as [`parse`] would, it leaves to [`parse`].

mod stream;

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroizing;

pub use stream::GiveUp;

use super::{Candidate, Candidates, Encoding, Interest, Leaves, Skipped};

/// Every usable entry of one acme.json, plus what was skipped and why.
#[derive(Debug, Default)]
pub struct AcmeDocument<'a> {
    pub entries: Vec<Candidate<'a>>,
    pub skipped: Vec<Skipped>,
    /// Resolver names in file order (empty for v1).
    pub resolvers: Vec<Cow<'a, str>>,
}

/// Why bytes could not be read as an acme.json.
#[derive(Debug, thiserror::Error)]
pub enum AcmeParseError {
    /// Empty or cut short: Traefik truncates and rewrites the file in place, so a reader
    /// can catch it half-written. A complete JSON document is never a prefix of another,
    /// so this is "not ready yet", not "broken".
    #[error("file is empty or incomplete (Traefik may be rewriting it): {0}")]
    Incomplete(String),
    /// Complete but not an acme.json (or not JSON at all).
    #[error("not a Traefik acme.json: {0}")]
    Invalid(String),
}

impl AcmeParseError {
    /// Whether waiting for the writer to finish could fix it.
    pub fn is_not_ready(&self) -> bool {
        matches!(self, AcmeParseError::Incomplete(_))
    }
}

/// Parses the bytes of an acme.json.
pub fn parse(bytes: &[u8]) -> Result<AcmeDocument<'_>, AcmeParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AcmeParseError::Incomplete("no content".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc = AcmeDocument::deserialize(&mut de).and_then(|doc| de.end().map(|()| doc));
    doc.map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => AcmeParseError::Incomplete(e.to_string()),
        _ => AcmeParseError::Invalid(e.to_string()),
    })
}

/// An acme.json read by [`read_streamed`]: the names of every entry, the certificate
/// and key of the entries the [`Interest`] wants, the leaf of each entry if it wants
/// them, and the skipped entries.
pub struct Streamed {
    resolvers: Vec<String>,
    /// Every entry's main name and SANs, one after the other (one allocation, not
    /// thousands: a daemon's heap stays compact between passes).
    names: String,
    san_spans: Vec<Range<usize>>,
    entries: Vec<StreamedEntry>,
    skipped: Vec<Skipped>,
    leaves: Option<Leaves>,
}

struct StreamedEntry {
    resolver: Option<usize>,
    main: Range<usize>,
    /// Into `san_spans`.
    sans: Range<usize>,
    /// The certificate and key, when some target could select this entry.
    material: Option<(String, Zeroizing<String>)>,
}

/// Reads an acme.json from `src` in one pass, keeping what `interest` asks for, and
/// hands every byte read to `on_bytes`. [`GiveUp`] means the file must be read whole
/// and given to [`parse`], which then reports the error, if any, exactly.
pub fn read_streamed(
    src: impl Read,
    interest: &Interest,
    on_bytes: impl FnMut(&[u8]),
) -> Result<Streamed, GiveUp> {
    let mut collector = Collector {
        interest,
        doc: Streamed {
            resolvers: Vec::new(),
            names: String::new(),
            san_spans: Vec::new(),
            entries: Vec::new(),
            skipped: Vec::new(),
            leaves: interest.leaves.then(Leaves::default),
        },
        scratch: Vec::new(),
    };
    stream::scan(src, &mut collector, on_bytes)?;
    Ok(collector.doc)
}

impl Streamed {
    /// The same candidates [`parse`] gives, except that the certificate and key of an
    /// entry no target can select are empty.
    pub fn candidates(&self) -> Candidates<'_> {
        let text = |r: &Range<usize>| Cow::Borrowed(&self.names[r.clone()]);
        let list = self
            .entries
            .iter()
            .map(|e| {
                let (certificate, key) = match &e.material {
                    Some((c, k)) => (c.as_str(), k.as_str()),
                    None => ("", ""),
                };
                Candidate {
                    resolver: e.resolver.map(|i| Cow::Borrowed(self.resolvers[i].as_str())),
                    main: text(&e.main),
                    sans: self.san_spans[e.sans.clone()].iter().map(text).collect(),
                    certificate: Cow::Borrowed(certificate),
                    key: Cow::Borrowed(key),
                    encoding: Encoding::Base64,
                }
            })
            .collect();
        Candidates {
            list,
            skipped: self.skipped.clone(),
            leaves: self.leaves.as_ref(),
        }
    }

    /// Resolver names in file order (empty for v1).
    pub fn resolvers(&self) -> &[String] {
        &self.resolvers
    }
}

/// Turns the scanner's entries into a [`Streamed`], with the rules of
/// [`AcmeDocument::push_all`].
struct Collector<'i> {
    interest: &'i Interest,
    doc: Streamed,
    scratch: Vec<u8>,
}

impl stream::Handler for Collector<'_> {
    fn resolver(&mut self, name: &str) {
        self.doc.resolvers.push(name.to_owned());
    }

    fn entry(&mut self, raw: stream::RawEntry<'_>) {
        let doc = &mut self.doc;
        let resolver = raw.resolver.map(|i| doc.resolvers[i].as_str());
        let main = raw.main.unwrap_or_default();
        let sans = raw.sans.unwrap_or_default();
        let certificate = raw.certificate.filter(|c| !c.is_empty());
        let key = raw.key.filter(|k| !k.is_empty());
        let (certificate, key) = match (certificate, key) {
            _ if main.is_empty() => return doc.skip(raw.resolver, main, "no main domain"),
            (None, _) => return doc.skip(raw.resolver, main, "empty certificate"),
            (_, None) => return doc.skip(raw.resolver, main, "empty key"),
            (Some(c), Some(k)) => (c, k),
        };
        let material = self
            .interest
            .wants_material(resolver, main, sans)
            .then(|| (certificate.to_owned(), Zeroizing::new(key.to_owned())));
        if let Some(leaves) = &mut doc.leaves {
            leaves.push(certificate, Encoding::Base64, &mut self.scratch);
        }
        let main = doc.push_name(main);
        let first_san = doc.san_spans.len();
        for san in sans {
            let span = doc.push_name(san);
            doc.san_spans.push(span);
        }
        doc.entries.push(StreamedEntry {
            resolver: raw.resolver,
            main,
            sans: first_san..doc.san_spans.len(),
            material,
        });
    }
}

impl Streamed {
    fn push_name(&mut self, name: &str) -> Range<usize> {
        let start = self.names.len();
        self.names.push_str(name);
        start..self.names.len()
    }

    fn skip(&mut self, resolver: Option<usize>, main: &str, reason: &'static str) {
        self.skipped.push(Skipped {
            resolver: resolver.map(|i| self.resolvers[i].clone()),
            main: main.to_owned(),
            reason,
        });
    }
}

#[derive(Deserialize)]
struct RawCertificate<'a> {
    #[serde(alias = "Domain", borrow, default)]
    domain: Option<RawDomain<'a>>,
    #[serde(alias = "Certificate", borrow, default)]
    certificate: Option<Text<'a>>,
    #[serde(alias = "Key", borrow, default)]
    key: Option<Text<'a>>,
    // `Store`, and anything a later Traefik adds, are ignored.
}

#[derive(Deserialize)]
struct RawDomain<'a> {
    #[serde(alias = "Main", borrow, default)]
    main: Option<Text<'a>>,
    #[serde(alias = "SANs", borrow, default)]
    sans: Option<Vec<Text<'a>>>,
}

/// One resolver's object in the v2/v3 layout.
#[derive(Deserialize)]
struct RawResolver<'a> {
    #[serde(rename = "Certificates", borrow, default)]
    certificates: Option<Vec<RawCertificate<'a>>>,
    // `Account` is optional and never needed.
}

/// A JSON string that borrows from the input unless it holds escapes.
///
/// `#[serde(borrow)]` only borrows a field whose type is `Cow<str>` itself: inside an
/// `Option` or a `Vec`, serde's own `Cow` impl copies every string. For the base64
/// payloads that is the whole file copied once more, so this does what `borrow` means.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(TextVisitor).map(Text)
    }
}

impl<'a> AcmeDocument<'a> {
    fn push_all(&mut self, resolver: Option<Cow<'a, str>>, certs: Vec<RawCertificate<'a>>) {
        for raw in certs {
            let (main, sans) = match raw.domain {
                Some(d) => (
                    d.main.map(|t| t.0).unwrap_or_default(),
                    d.sans
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| t.0)
                        .collect(),
                ),
                None => (Cow::Borrowed(""), Vec::new()),
            };
            let skip = |reason| Skipped {
                resolver: resolver.as_deref().map(str::to_owned),
                main: main.to_string(),
                reason,
            };
            let certificate = raw.certificate.map(|t| t.0).filter(|c| !c.is_empty());
            let key = raw.key.map(|t| t.0).filter(|k| !k.is_empty());
            match (certificate, key) {
                _ if main.is_empty() => self.skipped.push(skip("no main domain")),
                (None, _) => self.skipped.push(skip("empty certificate")),
                (_, None) => self.skipped.push(skip("empty key")),
                (Some(certificate), Some(key)) => self.entries.push(Candidate {
                    resolver: resolver.clone(),
                    main,
                    sans,
                    certificate,
                    key,
                    encoding: Encoding::Base64,
                }),
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AcmeDocument<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DocumentVisitor(std::marker::PhantomData))
    }
}

struct DocumentVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for DocumentVisitor<'a> {
    type Value = AcmeDocument<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object keyed by resolver name (v2/v3) or with \"Certificates\" (v1)")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut doc = AcmeDocument::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                // v1: the top level is the (single, unnamed) resolver.
                "Certificates" => {
                    let certs: Option<Vec<RawCertificate<'de>>> = map.next_value()?;
                    doc.push_all(None, certs.unwrap_or_default());
                }
                "Account" | "HTTPChallenges" | "TLSChallenges" => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    // No context is added to this error: serde_json's own keeps the
                    // position and, above all, whether the input ended early.
                    let resolver: Option<RawResolver<'de>> = map.next_value()?;
                    doc.resolvers.push(key.clone());
                    if let Some(r) = resolver {
                        doc.push_all(Some(key), r.certificates.unwrap_or_default());
                    }
                }
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_layout_with_two_resolvers() {
        let json = br#"{
          "le": {"Account": {"Email": "a@b"}, "Certificates": [
            {"domain": {"main": "a.test", "sans": ["b.test"]}, "certificate": "Q0VSVA==", "key": "S0VZ", "Store": "default"}
          ]},
          "le-ec": {"Certificates": [
            {"domain": {"main": "*.test"}, "certificate": "Q0VSVA==", "key": "S0VZ", "Extra": 1}
          ]}
        }"#;
        let doc = parse(json).unwrap();
        assert_eq!(doc.entries.len(), 2);
        assert_eq!(doc.entries[0].resolver.as_deref(), Some("le"));
        assert_eq!(doc.entries[0].sans, vec!["b.test"]);
        assert_eq!(doc.entries[1].resolver.as_deref(), Some("le-ec"));
        assert_eq!(doc.entries[1].main, "*.test");
        assert_eq!(doc.resolvers, vec!["le", "le-ec"]);
    }

    #[test]
    fn v1_layout_is_told_apart_by_shape() {
        let json = br#"{"Account": {"Email": "x"}, "Certificates": [
            {"Domain": {"Main": "a.test", "SANs": null}, "Certificate": "Q0VSVA==", "Key": "S0VZ"}
        ], "HTTPChallenges": {}}"#;
        let doc = parse(json).unwrap();
        assert_eq!(doc.entries.len(), 1);
        assert_eq!(doc.entries[0].resolver, None);
        assert!(doc.entries[0].sans.is_empty());
    }

    #[test]
    fn null_and_empty_fields_are_skipped_with_a_reason() {
        let json = br#"{"le": {"Certificates": [
            {"domain": {"main": "a.test"}, "certificate": "", "key": "S0VZ"},
            {"domain": {"main": "b.test"}, "certificate": "Q0VSVA==", "key": null},
            {"domain": null, "certificate": "Q0VSVA==", "key": "S0VZ"}
        ]}, "empty": {"Certificates": null}, "nothing": null}"#;
        let doc = parse(json).unwrap();
        assert!(doc.entries.is_empty());
        let reasons: Vec<_> = doc
            .skipped
            .iter()
            .map(|s| (s.main.as_str(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("a.test", "empty certificate"),
                ("b.test", "empty key"),
                ("", "no main domain")
            ]
        );
    }

    #[test]
    fn missing_account_and_empty_certificates_are_fine() {
        let doc = parse(br#"{"le": {"Certificates": []}}"#).unwrap();
        assert!(doc.entries.is_empty() && doc.skipped.is_empty());
        let doc = parse(br#"{}"#).unwrap();
        assert!(doc.entries.is_empty());
    }

    #[test]
    fn truncation_is_not_ready_but_garbage_is_invalid() {
        let json = br#"{"le": {"Certificates": [{"domain": {"main": "a.test"}, "certificate": "Q0VSVA==", "key": "S0VZ"}]}}"#;
        for cut in [0, 1, 10, 40, json.len() - 1] {
            let err = parse(&json[..cut]).unwrap_err();
            assert!(err.is_not_ready(), "cut at {cut}: {err}");
        }
        assert!(!parse(b"[1, 2]").unwrap_err().is_not_ready());
        assert!(!parse(b"{\"le\": 5}").unwrap_err().is_not_ready());
        assert!(!parse(b"{} trailing").unwrap_err().is_not_ready());
    }

    #[test]
    fn escaped_strings_still_parse() {
        let doc = parse(br#"{"le": {"Certificates": [{"domain": {"main": "a\u002etest"}, "certificate": "Q0\/VSVA==", "key": "S0VZ"}]}}"#).unwrap();
        assert_eq!(doc.entries[0].main, "a.test");
        assert_eq!(doc.entries[0].certificate, "Q0/VSVA==");
    }
}
