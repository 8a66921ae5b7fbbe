//! Big acme.json files for the benchmarks, made from the real one Traefik wrote.
//!
//! The same layout as `bench/make-big-acme.py` (which the shell benchmarks use): one
//! resolver `le` with the fixture's Account and `n` certificates, `n - 1` copies of the
//! fixture's RSA2048 entries under the names `customerI.example.test`, then the
//! fixture's own `www.example.test` entry, untouched and valid, last. Fields are
//! written in Traefik's order (domain, certificate, key, Store), two-space indented.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;

/// The domain whose certificate is the last entry.
pub const SELECTED: &str = "www.example.test";

#[derive(Serialize)]
struct Domain {
    main: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sans: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    domain: Domain,
    certificate: &'a str,
    key: &'a str,
    #[serde(rename = "Store")]
    store: &'a str,
}

#[derive(Serialize)]
struct Resolver<'a> {
    #[serde(rename = "Account")]
    account: &'a Value,
    #[serde(rename = "Certificates")]
    certificates: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Document<'a> {
    le: Resolver<'a>,
}

/// The fixture acme.json, as Traefik wrote it.
pub fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/acme.json")).expect("fixture")
}

/// An acme.json of `n` certificates whose last one is [`SELECTED`].
pub fn big_acme(n: usize) -> Vec<u8> {
    let fixture: Value = serde_json::from_slice(&fixture()).expect("fixture parses");
    let le = &fixture["le"];
    let originals = le["Certificates"].as_array().expect("certificates");
    let main_of = |c: &Value| c["domain"]["main"].as_str().unwrap_or_default().to_owned();
    let last = originals
        .iter()
        .find(|c| main_of(c) == SELECTED)
        .expect("www entry");
    let mut templates: Vec<&Value> = originals
        .iter()
        .filter(|c| main_of(c) != SELECTED)
        .collect();
    templates.push(last);
    fn entry(t: &Value, main: String, sans: Option<Vec<String>>) -> Entry<'_> {
        Entry {
            domain: Domain { main, sans },
            certificate: t["certificate"].as_str().expect("certificate"),
            key: t["key"].as_str().expect("key"),
            store: "default",
        }
    }
    let mut certificates = Vec::with_capacity(n);
    for i in 1..n {
        let t = templates[(i - 1) % templates.len()];
        let has_sans = t["domain"]["sans"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let sans = has_sans.then(|| vec![format!("customer{i}-alt.example.test")]);
        certificates.push(entry(t, format!("customer{i}.example.test"), sans));
    }
    if n > 0 {
        let sans = last["domain"]["sans"].as_array().map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
        certificates.push(entry(last, SELECTED.to_owned(), sans));
    }
    let doc = Document {
        le: Resolver {
            account: &le["Account"],
            certificates,
        },
    };
    serde_json::to_vec_pretty(&doc).expect("serialises")
}
