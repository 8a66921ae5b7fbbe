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
//! - [`read_streamed`]: a single pass through a small buffer (`stream`) that keeps,
//!   of each entry, only what an [`Interest`] asks for. It is a fast path: whatever it
//!   is not sure to read exactly as [`parse`] would, it leaves to [`parse`].

mod stream;

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::error::Category;
use zeroize::Zeroizing;

pub use stream::Stop;

use super::{Candidate, Candidates, Interest, Leaves, Skipped};
use crate::leaf::Encoding;

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
        Category::Eof => AcmeParseError::Incomplete(e.to_string()),
        _ if cut_in_a_number(bytes, &e) => AcmeParseError::Incomplete(format!(
            "EOF while parsing a number at line {} column {}",
            e.line(),
            e.column()
        )),
        _ => AcmeParseError::Invalid(without_values(&e)),
    })
}

/// Whether the input ends inside a number that serde_json was skipping (`"n": -`,
/// `1.`, `1e`, `1e+`): it calls that a syntax error ("invalid number"), not an early
/// end, although every in-place rewrite that stops there leaves a prefix of a valid
/// file. The error must lie at the very end, and one more digit must turn it into an
/// early end: only an error caused by the end of the input moves by appending.
/// `IgnoredAny` is enough for that second look, since the typed reading got to the
/// end without complaint (it checks more, such as UTF-8 in names, hence the position
/// test), and it reads the bytes where they are.
fn cut_in_a_number(bytes: &[u8], e: &serde_json::Error) -> bool {
    e.classify() == Category::Syntax
        && matches!(bytes.last(), Some(b'-' | b'+' | b'.' | b'e' | b'E'))
        && (e.line(), e.column()) == end_position(bytes)
        && serde_json::from_reader::<_, IgnoredAny>(bytes.chain(&b"0"[..]))
            .is_err_and(|e| e.is_eof())
}

/// Where serde_json places the end of `bytes`: 1-based line, column in bytes.
fn end_position(bytes: &[u8]) -> (usize, usize) {
    let line_start = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    (lines + 1, bytes.len() - line_start)
}

/// serde_json's message without any value it quotes from the input: when `--acme`
/// names some other JSON file, a string where a resolver should be can be a password,
/// and this message reaches logs and /healthz. `invalid type: string "hunter2",
/// expected struct RawResolver` becomes `invalid type: string, expected struct
/// RawResolver`; the position stays. Field names quoted by serde (`duplicate field
/// `main``) come from this file's types, not from the input.
fn without_values(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let (message, position) = match message.strip_suffix(&position) {
        Some(m) => (m, position.as_str()),
        None => (message.as_str(), ""),
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The expectation comes last and from this file's types; a quoted string
        // value comes before it and may hold anything, ", expected " included.
        let at = rest.rfind(", expected ").unwrap_or(rest.len());
        let (unexpected, expected) = rest.split_at(at);
        // What serde says of a value is its kind, then the value quoted: `string
        // "…"`, `integer `5``, `floating point `1.5``; `map` or `null` quote nothing.
        let quoted = [" `", " \""]
            .iter()
            .filter_map(|q| unexpected.find(q))
            .min();
        let kind = &unexpected[..quoted.unwrap_or(unexpected.len())];
        return format!("{prefix}{kind}{expected}{position}");
    }
    format!("{message}{position}")
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
    /// The certificate and key, when some target could select this entry or some
    /// export needs it.
    material: Option<(String, Zeroizing<String>)>,
    /// [`crate::export::entry_digest`], when some export takes this entry.
    digest: Option<u128>,
}

/// Reads an acme.json from `src` in one pass, keeping what `interest` asks for, and
/// hands every byte read to `on_bytes`. [`Stop::Incomplete`] is what [`parse`] would
/// say of the same bytes; [`Stop::GiveUp`] means the file must be read whole and given
/// to [`parse`], which then reports the error, if any, exactly.
pub fn read_streamed(
    src: impl Read,
    interest: &Interest,
    on_bytes: impl FnMut(&[u8]),
) -> Result<Streamed, Stop> {
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
                    resolver: e
                        .resolver
                        .map(|i| Cow::Borrowed(self.resolvers[i].as_str())),
                    main: text(&e.main),
                    sans: self.san_spans[e.sans.clone()].iter().map(text).collect(),
                    certificate: Cow::Borrowed(certificate),
                    key: Cow::Borrowed(key),
                    encoding: Encoding::Base64,
                    digest: e.digest,
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
        let digest = self
            .interest
            .exported(resolver, main, sans)
            .then(|| crate::export::entry_digest(resolver, main, certificate, key));
        let material = self
            .interest
            .wants_material(resolver, main, sans, digest)
            .then(|| {
                (
                    text(certificate).into_owned(),
                    Zeroizing::new(text(key).into_owned()),
                )
            });
        if let Some(leaves) = &mut doc.leaves {
            leaves.push(&text(certificate), Encoding::Base64, &mut self.scratch);
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
            digest,
        });
    }
}

/// Bytes the scanner checked to be UTF-8 as text; only what is kept pays for it.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
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
                    digest: None,
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

    /// The serde_json reading, as the stream would report it.
    fn reference(json: &[u8]) -> Result<(Vec<String>, String), AcmeParseError> {
        let doc = parse(json)?;
        let resolvers = doc.resolvers.iter().map(|r| r.to_string()).collect();
        Ok((resolvers, describe(&doc.entries, &doc.skipped)))
    }

    fn streamed(json: &[u8], chunk: usize) -> Result<(Vec<String>, String), Stop> {
        let doc = read_streamed(Trickle(json, chunk), &Interest::everything(), |_| {})?;
        let c = doc.candidates();
        Ok((doc.resolvers().to_vec(), describe(&c.list, &c.skipped)))
    }

    fn describe(entries: &[Candidate<'_>], skipped: &[Skipped]) -> String {
        let mut out = String::new();
        for c in entries {
            let (r, m, s, k) = (&c.resolver, &c.main, &c.sans, &*c.key);
            out += &format!(
                "{r:?} {m:?} {s:?} {:?} {k:?} {:?}\n",
                c.certificate, c.encoding
            );
        }
        format!("{out}{skipped:?}")
    }

    /// A reader that hands out at most `chunk` bytes per read, to cross every buffer
    /// boundary the scanner has.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The stream may give up on anything, but what it accepts, serde_json accepts,
    /// and reads the same way; what it calls incomplete, serde_json does, in the same
    /// words.
    fn agree(json: &[u8]) -> bool {
        agree_reading(json, &[usize::MAX, 1, 7])
    }

    fn agree_reading(json: &[u8], chunks: &[usize]) -> bool {
        let want = reference(json);
        let mut accepted = false;
        for &chunk in chunks {
            match (streamed(json, chunk), &want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(&got, want, "{}", String::from_utf8_lossy(json));
                    accepted = true;
                }
                (Ok(_), Err(e)) => panic!(
                    "the stream accepted what serde_json refuses ({e}): {}",
                    String::from_utf8_lossy(json)
                ),
                (Err(Stop::Incomplete(said)), want) => {
                    let said = AcmeParseError::Incomplete(said).to_string();
                    let want = want
                        .as_ref()
                        .err()
                        .map(|e| (e.is_not_ready(), e.to_string()));
                    assert_eq!(
                        Some((true, said)),
                        want,
                        "{}",
                        String::from_utf8_lossy(json)
                    );
                }
                (Err(Stop::GiveUp), _) => {}
            }
        }
        accepted
    }

    const FIXTURE: &[u8] = include_bytes!("../../fixtures/acme.json");
    const FIXTURE_V1: &[u8] = include_bytes!("../../fixtures/acme-v1.json");

    #[test]
    fn the_stream_reads_real_files_as_serde_json_does() {
        assert!(agree(FIXTURE));
        assert!(agree(FIXTURE_V1));
        let mut hashed = xxhash_rust::xxh3::Xxh3::new();
        read_streamed(Trickle(FIXTURE, 5), &Interest::everything(), |b| {
            hashed.update(b)
        })
        .unwrap();
        assert_eq!(hashed.digest128(), xxhash_rust::xxh3::xxh3_128(FIXTURE));
    }

    #[test]
    fn the_stream_agrees_on_odd_but_valid_shapes() {
        let cert = r#""certificate": "Q0VSVA==", "key": "S0VZ""#;
        let accepted = [
            r#"{}"#.to_owned(),
            r#" { "le" : null , "x": {} } "#.to_owned(),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a.test", "sans": null}}, {cert}}}]}}}}"#),
            format!(r#"{{"le": {{"Certificates": [{{{cert}, "domain": {{"SANs": ["b.test", "c.test"], "Main": "a.test"}}}}]}}}}"#),
            r#"{"Account": {"a": [1, -2.5e+3, 0, true, false, null, {}, [], "\u00e9\n\"x"]}, "Certificates": [{"Domain": {"Main": "a.test"}, "Certificate": "Q0VSVA==", "Key": "S0VZ", "Store": {"deep": [[[[[[1]]]]]]}}]}"#.to_owned(),
            format!(r#"{{"le": {{"Account": null, "Certificates": [], "Certificates2": 1}}, "ec": {{"Certificates": [{{"domain": {{"main": "é.test"}}, {cert}}}]}}}}"#),
            format!(r#"{{"le": {{"Certificates": [{{"domain": null, {cert}}}, {{"domain": {{"main": ""}}, {cert}}}, {{"domain": {{"main": "a"}}, "certificate": null, "key": ""}}]}}}}"#),
            format!(r#"{{"Certificates": null, "Certificates": [{{"Domain": {{"Main": "a.test"}}, {cert}}}], "HTTPChallenges": {{"x": "y"}}}}"#),
            format!(
                r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a.test"}}, {cert}, "Store": "{}"}}]}}}}"#,
                "s".repeat(300_000)
            ),
        ];
        for json in &accepted {
            assert!(agree(json.as_bytes()), "the stream gave up on: {json}");
            // Cut short anywhere, it is "incomplete" in the words of `parse`.
            if json.len() < 10_000 {
                for cut in 0..json.len() {
                    agree_reading(&json.as_bytes()[..cut], &[usize::MAX, 3]);
                }
            }
        }
        let cut_short = |json: &str| streamed(json.as_bytes(), usize::MAX).err();
        for (json, said) in [
            (
                "{\n  \"le\": {\"Certificates\": [\n",
                "EOF while parsing a list at line 3 column 0",
            ),
            (
                "{\"le\": {\"Account\": {\"n\": 1",
                "EOF while parsing an object at line 1",
            ),
            (
                "{\"le\": {\"Account\": {\"n\": tr",
                "EOF while parsing a value at line 1",
            ),
            (
                "{\"le\": {\"Certificates\": [{\"key\": \"S0",
                "EOF while parsing a string",
            ),
            ("{\"le\": ", "EOF while parsing a value"),
            (" \n\t", "no content"),
        ] {
            let said_now = match cut_short(json) {
                Some(Stop::Incomplete(m)) => m,
                other => panic!("{json}: {other:?}"),
            };
            assert!(said_now.starts_with(said), "{json}: {said_now}");
        }
        // Invalid before its end (a name that is not UTF-8), then cut in a number.
        let bad_then_cut =
            b"{\"le\": {\"Certificates\": [{\"domain\": {\"main\": \"a\xff\"}}]}, \"Account\": [-";
        assert!(!parse(bad_then_cut).unwrap_err().is_not_ready());
        for syntax_error in [
            "{\"le\": {\"Account\": {\"n\": --",
            "{\"le\": {\"Account\": [1-",
            "{\"le\": {\"Account\": [1.e",
            "{\"le\": {\"Account\": [01",
        ] {
            assert!(
                matches!(cut_short(syntax_error), Some(Stop::GiveUp)),
                "{syntax_error}"
            );
            assert!(!parse(syntax_error.as_bytes()).unwrap_err().is_not_ready());
        }
    }

    /// Every in-place rewrite of a file with a number in it passes through the moment
    /// the number is cut after its `-`, `.`, `e` or exponent sign. serde_json calls
    /// that "invalid number"; it must be "not ready", in both readers, in one wording.
    #[test]
    fn a_number_cut_short_is_not_ready() {
        for (json, said) in [
            ("{\"le\": {\"Account\": {\"n\": -", "line 1 column 26"),
            ("{\"le\": {\"Account\": [1.", "line 1 column 22"),
            ("{\"Account\": {\"n\":\n  1e", "line 2 column 4"),
            ("{\"Account\": {\"n\": -0.5E+", "line 1 column 24"),
            ("{\"Account\": {\"n\": 7e-", "line 1 column 21"),
            (
                "{\"le\": {\"Certificates\": [{\"Store\": -",
                "line 1 column 36",
            ),
        ] {
            let err = parse(json.as_bytes()).unwrap_err();
            assert!(err.is_not_ready(), "{json}: {err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "file is empty or incomplete (Traefik may be rewriting it): \
                     EOF while parsing a number at {said}"
                ),
                "{json}"
            );
            agree_reading(json.as_bytes(), &[usize::MAX, 1, 3]);
            assert!(
                matches!(streamed(json.as_bytes(), 2), Err(Stop::Incomplete(_))),
                "{json}"
            );
        }
    }

    /// `--acme` pointed at some other JSON file: what stands where a resolver, a list
    /// or a name should be can be a secret, and the message goes to logs and /healthz.
    #[test]
    fn a_parse_error_never_quotes_a_value_from_the_file() {
        for (json, said) in [
            (
                r#"{"db": "hunter2"}"#,
                "invalid type: string, expected struct RawResolver",
            ),
            (
                r#""hunter2""#,
                "invalid type: string, expected a JSON object keyed by resolver name \
                 (v2/v3) or with \"Certificates\" (v1)",
            ),
            (
                r#"{"le": {"Certificates": "hunter2, expected \"x\""}}"#,
                "invalid type: string, expected a sequence",
            ),
            (
                r#"{"le": {"Certificates": [{"domain": {"main": "a", "sans": "hunter2"}}]}}"#,
                "invalid type: string, expected a sequence",
            ),
            (
                r#"{"le": {"Certificates": [{"domain": {"main": 4242}}]}}"#,
                "invalid type: integer, expected a string",
            ),
            (
                r#"{"le": {"Certificates": [{"key": 42.42}]}}"#,
                "invalid type: floating point, expected a string",
            ),
            (
                r#"{"le": {"Certificates": [{"key": true}]}}"#,
                "invalid type: boolean, expected a string",
            ),
            (
                r#"{"le": {"Certificates": [{"domain": "hunter2"}]}}"#,
                "invalid type: string, expected struct RawDomain",
            ),
            (
                r#"{"le": {"Certificates": [{"domain": {"main": "a", "main": "hunter2"}}]}}"#,
                "duplicate field `main`",
            ),
        ] {
            let err = parse(json.as_bytes()).unwrap_err();
            assert!(!err.is_not_ready(), "{json}: {err}");
            let message = err.to_string();
            let want = format!("not a Traefik acme.json: {said} at line 1 column ");
            assert!(message.starts_with(&want), "{json}: {message}");
            for secret in ["hunter2", "4242", "42.42", "true"] {
                assert!(!err.to_string().contains(secret), "{json}: {err}");
            }
        }
    }

    #[test]
    fn the_stream_leaves_the_rest_to_serde_json() {
        let cert = r#""certificate": "Q0VSVA==", "key": "S0VZ""#;
        let refused = [
            String::new(),
            "  \n".to_owned(),
            "[1, 2]".to_owned(),
            "{} x".to_owned(),
            r#"{"le": 5}"#.to_owned(),
            r#"{"le": []}"#.to_owned(),
            r#"{"le": {"Certificates": {}}}"#.to_owned(),
            r#"{"le": {"Certificates": [null]}}"#.to_owned(),
            r#"{"le": {"Certificates": [[{"main": "a"}, "Q0VSVA==", "S0VZ"]]}}"#.to_owned(),
            format!(
                r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a\u002etest"}}, {cert}}}]}}}}"#
            ),
            r#"{"le": {"Certificates": [{"domain": {"main": "a"}, "certificate": "Q0\/VSVA==", "key": "S0VZ"}]}}"#.to_owned(),
            format!(r#"{{"le": {{"Certificates": [{{"d\u006fmain": {{"main": "a"}}, {cert}}}]}}}}"#),
            format!(r#"{{"l\u0065": {{"Certificates": [{{"domain": {{"main": "a"}}, {cert}}}]}}}}"#),
            format!(
                r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a"}}, {cert}, "Key": "x"}}]}}}}"#
            ),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a", "Main": "b"}}, {cert}}}]}}}}"#),
            r#"{"le": {"Certificates": [], "Certificates": []}}"#.to_owned(),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": 5}}, {cert}}}]}}}}"#),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a", "sans": [null]}}, {cert}}}]}}}}"#),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a"}}, {cert},}}]}}}}"#),
            format!(
                r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a"}}, {cert}, "Store": 01}}]}}}}"#
            ),
            format!(
                r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a"}}, {cert}, "Store": "\x"}}]}}}}"#
            ),
            format!(r#"{{"le": {{"Certificates": [{{"domain": {{"main": "a	b"}}, {cert}}}]}}}}"#),
        ];
        for json in &refused {
            assert!(
                !agree(json.as_bytes()),
                "the stream should leave this to serde_json: {json}"
            );
        }
        // Invalid UTF-8 in a field serde_json reads as a string, and in one it skips.
        let bad = b"{\"le\": {\"Certificates\": [{\"domain\": {\"main\": \"a\xff\"}, \"certificate\": \"Q0VSVA==\", \"key\": \"S0VZ\"}]}}";
        assert!(!agree(bad));
        let skipped = b"{\"le\": {\"Account\": \"\xff\", \"Certificates\": []}}";
        agree(skipped);
    }

    /// Truncations of the real file, and single-byte damage all over it, every `step`
    /// bytes, each read in every way of `chunks`.
    fn damage(step: usize, chunks: &[usize]) {
        for cut in (0..FIXTURE.len())
            .step_by(step)
            .chain(FIXTURE.len() - 3..FIXTURE.len())
        {
            agree_reading(&FIXTURE[..cut], chunks);
        }
        let bytes = [
            b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'x', b'0', b' ', 1, 0xff,
        ];
        for at in (0..FIXTURE.len()).step_by(step) {
            for &b in &bytes {
                let mut damaged = FIXTURE.to_vec();
                damaged[at] = b;
                agree_reading(&damaged, chunks);
            }
        }
    }

    #[test]
    fn the_stream_never_accepts_a_damaged_file() {
        damage(97, &[usize::MAX, 7]);
    }

    /// Every byte, every way of reading: minutes in a debug build.
    #[test]
    #[ignore]
    fn the_stream_never_accepts_a_damaged_file_exhaustive() {
        damage(1, &[usize::MAX, 1, 7]);
    }

    #[test]
    fn escaped_strings_still_parse() {
        let doc = parse(br#"{"le": {"Certificates": [{"domain": {"main": "a\u002etest"}, "certificate": "Q0\/VSVA==", "key": "S0VZ"}]}}"#).unwrap();
        assert_eq!(doc.entries[0].main, "a.test");
        assert_eq!(doc.entries[0].certificate, "Q0/VSVA==");
    }
}
