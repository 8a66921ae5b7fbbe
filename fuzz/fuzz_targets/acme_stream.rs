//! The streaming acme.json reader against serde_json on the whole file.
//!
//! `acme::parse` (serde_json) defines what certsync accepts; `acme::read_streamed` is a
//! fast path that may give up on anything, but whatever it decides must be what
//! `parse` decides: the same entries, names, resolvers and skipped entries when it
//! reads a file, the same "not ready" in the same words when the file is cut short.
//! Every input is read whole and in small pieces, for every certificate and for one
//! target's, and a file that parses must be "not ready" when cut anywhere (Traefik
//! rewrites it in place, so a reader sees every prefix sooner or later).
//!
//! A corpus file is a plain acme.json: how it is read (piece size, cut points) is
//! derived from its bytes.

#![no_main]

use std::io::Read;

use certsync::source::acme::{self, AcmeParseError, Stop};
use certsync::source::{Candidate, Interest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = compare(data);
    if whole {
        // Cuts at places derived from the content, so the fuzzer can steer them.
        let seed = data
            .iter()
            .fold(0usize, |h, &b| h.wrapping_mul(31) ^ b as usize);
        let cuts = [
            seed % data.len(),
            (seed / 7) % data.len(),
            data.len() - 1 - seed % data.len().min(8),
        ];
        for cut in cuts {
            let prefix = &data[..cut];
            let rest_is_blank = data[cut..].iter().all(u8::is_ascii_whitespace);
            match acme::parse(prefix) {
                Ok(_) => assert!(
                    rest_is_blank,
                    "a strict prefix (cut at {cut}) of a whole file parses"
                ),
                Err(e) => assert!(
                    e.is_not_ready(),
                    "a whole file cut at {cut} is invalid, not \"not ready\": {e}"
                ),
            }
            compare(prefix);
        }
    }
});

/// Reads `data` both ways and panics where they disagree. Returns whether serde_json
/// accepted it.
fn compare(data: &[u8]) -> bool {
    let parsed = acme::parse(data);
    // One target, for the first name the file holds: its entries keep their material,
    // the others do not; and every leaf is read on the way.
    let first_main = match &parsed {
        Ok(doc) => doc.entries.first().map(|c| c.main.to_string()),
        Err(_) => None,
    };
    let first_main = first_main.unwrap_or_else(|| "turn.example.test".to_owned());
    let want = parsed.map(|doc| {
        let entries: Vec<[String; 2]> = doc
            .entries
            .iter()
            .map(|c| [describe(c, false), describe(c, true)])
            .collect();
        let resolvers: Vec<String> = doc.resolvers.iter().map(|r| r.to_string()).collect();
        (resolvers, entries, doc.skipped)
    });
    let piece = 1 + data.len() % 13;
    let one_target = Interest::targets([(Some(first_main.as_str()), None)]).with_leaves(true);
    for (interest, piece) in [
        (Interest::everything(), usize::MAX),
        (Interest::everything(), piece),
        (one_target, piece),
    ] {
        let mut seen = Vec::with_capacity(data.len());
        let got = acme::read_streamed(Pieces(data, piece), &interest, |b| {
            seen.extend_from_slice(b)
        });
        match (got, &want) {
            (Ok(doc), Ok((resolvers, entries, skipped))) => {
                assert_eq!(seen, data, "the bytes handed on are the bytes read");
                let c = doc.candidates();
                assert_eq!(doc.resolvers(), &resolvers[..]);
                assert_eq!(&c.skipped, skipped);
                assert_eq!(c.list.len(), entries.len());
                for (got, want) in c.list.iter().zip(entries) {
                    let names: Vec<&str> = got.sans.iter().map(|s| &**s).collect();
                    let kept =
                        interest.wants_material(got.resolver.as_deref(), &got.main, &names, None);
                    assert_eq!(describe(got, kept), want[kept as usize]);
                    if !kept {
                        assert!(got.certificate.is_empty() && got.key.is_empty());
                    }
                }
                if let Some(leaves) = c.leaves {
                    for i in 0..c.list.len() {
                        let _ = leaves.leaf(i);
                    }
                }
            }
            (Ok(_), Err(e)) => panic!("the stream accepted what serde_json refuses: {e}"),
            (Err(Stop::Incomplete(said)), want) => {
                assert_eq!(seen, data, "an incomplete read still reads every byte");
                let said = AcmeParseError::Incomplete(said).to_string();
                match want {
                    Err(e) if e.is_not_ready() => assert_eq!(said, e.to_string()),
                    Err(e) => panic!("the stream says {said:?}, serde_json says {e}"),
                    Ok(_) => panic!("the stream says {said:?}, serde_json reads it"),
                }
            }
            (Err(Stop::GiveUp), _) => {}
        }
    }
    want.is_ok()
}

/// An entry as both readers must agree on it; the certificate and key only when the
/// stream was asked to keep them.
fn describe(c: &Candidate<'_>, material: bool) -> String {
    let (certificate, key) = if material {
        (&*c.certificate, &*c.key)
    } else {
        ("", "")
    };
    format!(
        "{:?} {:?} {:?} {certificate:?} {key:?} {:?}",
        c.resolver, c.main, c.sans, c.encoding
    )
}

/// A reader that hands out at most `.1` bytes per read, to cross the scanner's buffer
/// boundaries everywhere.
struct Pieces<'a>(&'a [u8], usize);

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
