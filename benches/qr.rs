//! Measures the QR pipeline on a realistic SMART Health Link, so the cost of
//! encoding and of drawing can be tracked separately: drawing is the part this
//! crate owns and must stay well below a millisecond.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shl_gateway::qr::{self, ErrorCorrection, SvgOptions};

/// A 379-character link, which needs a version-15 symbol at level M.
const SEED_URL: &str = "https://api-gateway.client-sandbox.icanbwell.com/v1/health-link/viewer.html#shlink:/eyJ1cmwiOiJodHRwczovL2FwaS1nYXRld2F5LmRldi5pY2FuYndlbGwuY29tL3YxL2hlYWx0aC1saW5rL21hbmlmZXN0cy9pck9hSG4wUTV3Rlg5TEU3VnUwcWk2TTROOTIzQUxMUDhuS1BxVGNkOHBrIiwia2V5IjoiVThnY3BpWW9zb3pNanEtcVB0anh2Y3Q1YlhqeUNwSlpRTmdpd0VMMnhiVSIsImV4cCI6MTc2NjE3MzYyMiwiZmxhZyI6IlAiLCJsYWJlbCI6IkhlYWx0aCBSZWNvcmRzIn0";

fn bench_qr(c: &mut Criterion) {
    let options = SvgOptions::default();
    let matrix = qr::encode(SEED_URL, ErrorCorrection::Medium).expect("seed URL encodes");

    let mut group = c.benchmark_group("qr");
    // Encoding takes milliseconds; fewer samples keep the run short without
    // losing precision that matters at that scale.
    group.sample_size(50);
    group.bench_function("encode", |b| {
        b.iter(|| qr::encode(black_box(SEED_URL), black_box(ErrorCorrection::Medium)))
    });
    group.sample_size(100);
    group.bench_function("to_svg", |b| {
        b.iter(|| qr::to_svg(black_box(&matrix), black_box(&options)))
    });
    group.sample_size(50);
    group.bench_function("render_svg", |b| {
        b.iter(|| qr::render_svg(black_box(SEED_URL), black_box(&options)))
    });
    group.finish();
}

criterion_group!(benches, bench_qr);
criterion_main!(benches);
