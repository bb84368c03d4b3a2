//! The inbound audio path's cost per 20 ms frame, through a real actor: a frame pushed into
//! the call's audio inlet is heard by the `SttActor`'s hearing (decoded, run through the VAD
//! and endpointer) and handed to a speech-to-text session (one that discards it, so no provider is measured); the bench waits for the
//! utterance's end to be reported. This is the work every live call does 50 times a second,
//! so it bounds calls per core.
//!
//! Run: `cargo bench -p actors --bench pipeline -- --warm-up-time 1 --measurement-time 4`

use std::time::{Duration, Instant};

use actors::ports::{PortResult, SttFeed, SttInput, SttSession};
use actors::stt::{AudioInlet, EndpointSettings, SttActor, SttArgs, SttReport};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

/// Real speech (espeak-ng) followed by a second of line silence: one utterance.
const SPEECH: &[u8] = include_bytes!("../tests/fixtures/sentence.ulaw");
const SILENCE_FRAMES: usize = 50;

/// A speech-to-text session that takes frames and does nothing with them, so the bench
/// measures the engine's work and not a provider's.
struct Discard;

impl SttFeed for Discard {
    fn push(&mut self, input: SttInput) -> PortResult<()> {
        std::hint::black_box(input);
        Ok(())
    }
}

/// Stands in for the call: forwards "utterance ended" to the bench.
struct Collector;

impl Actor for Collector {
    type Msg = SttReport;
    type State = mpsc::UnboundedSender<()>;
    type Arguments = mpsc::UnboundedSender<()>;

    async fn pre_start(
        &self,
        _: ActorRef<SttReport>,
        done: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(done)
    }

    async fn handle(
        &self,
        _: ActorRef<SttReport>,
        report: SttReport,
        done: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(report, SttReport::SpeechEnded { .. }) {
            let _ = done.send(());
        }
        Ok(())
    }
}

fn frames() -> Vec<[u8; 160]> {
    SPEECH
        .chunks_exact(160)
        .map(|f| f.try_into().unwrap())
        .chain(std::iter::repeat_n([0xFF; 160], SILENCE_FRAMES))
        .collect()
}

fn inbound_frame_through_the_stt_actor(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let frames = frames();
    let inlet = AudioInlet::default();
    let (stt, mut done) = runtime.block_on(async {
        let (done_tx, done) = mpsc::unbounded_channel();
        let (collector, _) = Collector::spawn(None, Collector, done_tx).await.unwrap();
        let (events_tx, events) = mpsc::channel(1);
        std::mem::forget(events_tx);
        let session = SttSession {
            feed: Box::new(Discard),
            events,
        };
        let args = SttArgs {
            session,
            settings: EndpointSettings::default(),
            report_to: collector.get_derived(),
            inlet: inlet.clone(),
        };
        let (stt, _) = SttActor::spawn(None, SttActor, args).await.unwrap();
        (stt, done)
    });
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("inbound_frame", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    for frame in &frames {
                        inlet.push(*frame);
                    }
                    if tokio::time::timeout(Duration::from_secs(5), done.recv())
                        .await
                        .is_err()
                    {
                        panic!(
                            "the utterance did not end; the STT actor is {:?}",
                            stt.get_status()
                        );
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, inbound_frame_through_the_stt_actor);
criterion_main!(benches);
