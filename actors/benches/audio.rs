//! Costs of the per-frame audio path: one 20 ms frame through μ-law, the VAD and the
//! endpointer. The budget for the whole path is about 1 µs a frame.
//!
//! Run: `cargo bench -p actors --bench audio -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use actors::audio::endpoint::Endpointer;
use actors::audio::mulaw::{decode_into, encode_into};
use actors::audio::vad::Vad;
use actors::audio::FRAME_SAMPLES;
use criterion::{criterion_group, criterion_main, Criterion};

/// Real speech with pauses, so the VAD and the endpointer go through all their states.
const SENTENCE: &[u8] = include_bytes!("../tests/fixtures/sentence.ulaw");

/// The sentence as whole PCM frames.
fn frames() -> Vec<[i16; FRAME_SAMPLES]> {
    SENTENCE
        .chunks_exact(FRAME_SAMPLES)
        .map(|chunk| {
            let mut pcm = [0i16; FRAME_SAMPLES];
            decode_into(chunk, &mut pcm);
            pcm
        })
        .collect()
}

fn mulaw(c: &mut Criterion) {
    let frames = frames();
    let pcm = frames[30];
    let mut ulaw = [0u8; FRAME_SAMPLES];
    encode_into(&pcm, &mut ulaw);

    c.bench_function("mulaw_encode_frame", |b| {
        let mut out = [0u8; FRAME_SAMPLES];
        b.iter(|| encode_into(black_box(&pcm), black_box(&mut out)))
    });
    c.bench_function("mulaw_decode_frame", |b| {
        let mut out = [0i16; FRAME_SAMPLES];
        b.iter(|| decode_into(black_box(&ulaw), black_box(&mut out)))
    });
}

fn detection(c: &mut Criterion) {
    let frames = frames();
    c.bench_function("vad_push_frame", |b| {
        let mut vad = Vad::default();
        let mut next = frames.iter().cycle();
        b.iter(|| vad.push(black_box(next.next().unwrap_or(&frames[0]))))
    });
    c.bench_function("endpointer_push_frame", |b| {
        let mut ep = Endpointer::default();
        let mut next = frames.iter().cycle();
        b.iter(|| ep.push(black_box(next.next().unwrap_or(&frames[0]))))
    });
}

criterion_group!(benches, mulaw, detection);
criterion_main!(benches);
