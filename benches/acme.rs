//! How the cost of reading an acme.json grows with its size: 50, 500 and 5,000
//! certificates (5,000 is about 29 MB), the selected one always last.
//!
//!     cargo bench --bench acme                 # everything
//!     cargo bench --bench acme -- 'stream'     # one group (a regex)
//!
//! Groups:
//! - `parse`: `serde_json` over the whole file in memory (what `Snapshot::read` and
//!   every fallback do), borrowing every string.
//! - `stream`: the streaming reader over the same bytes in memory, keeping only the
//!   selected entry's certificate and key (what a pass with an `Interest` does).
//! - `read_file`: the same two from the file (page cache), with the content hash: what
//!   a `--once` pass and a daemon pass pay before selecting.
//! - `select`: choosing the certificate among the parsed candidates (name matching).
//! - `validate`: decoding and checking the chosen one (independent of the file size).
//! - `list`: `certsync list`'s work: every entry's leaf, streamed then parsed.
//! - `list_entry`: one entry's leaf (base64, PEM, X.509), the per-entry unit of `list`.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use certsync::leaf::Encoding;
use certsync::source::{acme, Interest, Snapshot, SourceSpec};

const SIZES: [usize; 3] = [50, 500, 5000];

struct Input {
    n: usize,
    bytes: Vec<u8>,
    spec: SourceSpec,
    _dir: tempfile::TempDir,
}

fn inputs() -> Vec<Input> {
    SIZES
        .iter()
        .map(|&n| {
            let bytes = support::big_acme(n);
            let dir = tempfile::tempdir().expect("temporary folder");
            let path = dir.path().join("acme.json");
            std::fs::write(&path, &bytes).expect("write acme.json");
            Input {
                n,
                bytes,
                spec: SourceSpec::Acme(path),
                _dir: dir,
            }
        })
        .collect()
}

fn selected() -> Interest {
    Interest::targets([(Some(support::SELECTED), None)])
}

/// Fewer, longer samples: an iteration over 29 MB takes milliseconds.
fn configure<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group
}

fn parse(c: &mut Criterion) {
    let inputs = inputs();
    let interest = selected();

    let mut group = configure(c, "parse");
    for input in &inputs {
        group.throughput(Throughput::Bytes(input.bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(input.n),
            &input.bytes,
            |b, bytes| b.iter(|| acme::parse(black_box(bytes)).expect("parses").entries.len()),
        );
    }
    group.finish();

    let mut group = configure(c, "stream");
    for input in &inputs {
        group.throughput(Throughput::Bytes(input.bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(input.n),
            &input.bytes,
            |b, bytes| {
                b.iter(|| {
                    let doc = acme::read_streamed(black_box(&bytes[..]), &interest, |_| {})
                        .expect("the fast path reads Traefik's files");
                    doc.candidates().list.len()
                })
            },
        );
    }
    group.finish();

    let mut group = configure(c, "read_file");
    for input in &inputs {
        group.throughput(Throughput::Bytes(input.bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("whole", input.n),
            &input.spec,
            |b, spec| {
                b.iter(|| {
                    let snapshot = Snapshot::read(spec).expect("reads");
                    let n = snapshot.candidates().expect("parses").list.len();
                    (snapshot.content_hash(), n)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("streamed", input.n),
            &input.spec,
            |b, spec| {
                b.iter(|| {
                    let snapshot = Snapshot::read_for(spec, &interest).expect("reads");
                    let n = snapshot.candidates().expect("parses").list.len();
                    (snapshot.content_hash(), n)
                })
            },
        );
    }
    group.finish();
}

fn select(c: &mut Criterion) {
    let inputs = inputs();
    let now = certsync::leaf::unix_now();

    let mut group = configure(c, "select");
    for input in &inputs {
        let doc = acme::parse(&input.bytes).expect("parses");
        group.throughput(Throughput::Elements(input.n as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(input.n),
            &doc.entries,
            |b, list| {
                b.iter(|| {
                    let chosen = certsync::bundle::select(black_box(list), support::SELECTED, None)
                        .expect("selects");
                    assert_eq!(chosen.main, support::SELECTED);
                })
            },
        );
    }
    group.finish();

    let mut group = configure(c, "validate");
    let doc = acme::parse(&inputs[0].bytes).expect("parses");
    let chosen = certsync::bundle::select(&doc.entries, support::SELECTED, None).expect("selects");
    group.bench_function("chosen", |b| {
        b.iter(|| {
            certsync::bundle::validate(black_box(chosen), support::SELECTED, now).expect("valid")
        })
    });
    group.finish();
}

fn list(c: &mut Criterion) {
    let inputs = inputs();

    let mut group = configure(c, "list");
    for input in &inputs {
        group.throughput(Throughput::Elements(input.n as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(input.n),
            &input.spec,
            |b, spec| {
                b.iter(|| {
                    let snapshot = Snapshot::read_for(spec, &Interest::leaves()).expect("reads");
                    let rows = certsync::list::rows(&snapshot.candidates().expect("parses"));
                    assert!(rows.iter().all(|r| r.leaf.is_ok()));
                    rows.len()
                })
            },
        );
    }
    group.finish();

    let mut group = configure(c, "list_entry");
    let doc = acme::parse(&inputs[0].bytes).expect("parses");
    let certificate = &doc.entries[0].certificate;
    let (mut scratch, mut der) = (Vec::new(), Vec::new());
    group.bench_function("leaf_der", |b| {
        b.iter(|| {
            der.clear();
            certsync::leaf::stored_leaf_der(
                black_box(certificate),
                Encoding::Base64,
                &mut scratch,
                &mut der,
            )
            .expect("decodes");
        })
    });
    der.clear();
    certsync::leaf::stored_leaf_der(certificate, Encoding::Base64, &mut scratch, &mut der)
        .expect("decodes");
    group.bench_function("x509", |b| {
        b.iter(|| certsync::leaf::Leaf::from_der(black_box(&der)).expect("parses"))
    });
    group.finish();
}

criterion_group!(benches, parse, select, list);
criterion_main!(benches);
