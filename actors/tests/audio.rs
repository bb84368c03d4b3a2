//! The audio module against real speech: espeak-ng sentences, digital silence and line noise,
//! as 8 kHz μ-law exactly as Twilio sends it. `tests/fixtures/make.sh` makes the fixtures and
//! prints the ground truth used below (speech spans known by construction: the synthesised
//! speech is trimmed at -60 dBFS and padded with digital silence).

use actors::audio::endpoint::{EndpointEvent, Endpointer};
use actors::audio::mulaw::{decode_into, SILENCE_BYTE};
use actors::audio::FRAME_SAMPLES;

const SENTENCE: &[u8] = include_bytes!("fixtures/sentence.ulaw");
const TWO_SENTENCES: &[u8] = include_bytes!("fixtures/two_sentences.ulaw");
const SILENCE: &[u8] = include_bytes!("fixtures/silence.ulaw");
const LINE_NOISE: &[u8] = include_bytes!("fixtures/line_noise.ulaw");
const NOISY_SENTENCE: &[u8] = include_bytes!("fixtures/noisy_sentence.ulaw");

/// How far a detected start or end may be from the truth: five frames.
const TOLERANCE_MS: i64 = 100;

/// A detected utterance: start, end and speech time in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utterance {
    started_at_ms: u64,
    ended_at_ms: u64,
    speech_ms: u64,
}

/// Feeds μ-law audio to a default endpointer frame by frame, as the call actor would, ends
/// the stream, and returns the utterances. Also checks that every `SpeechStarted` is
/// followed by its own `UtteranceEnded`.
fn utterances(ulaw: &[u8]) -> Vec<Utterance> {
    let mut ep = Endpointer::default();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut events = Vec::new();
    for chunk in ulaw.chunks(FRAME_SAMPLES) {
        let n = decode_into(chunk, &mut pcm);
        events.extend(ep.push(&pcm[..n]));
    }
    events.extend(ep.finish());

    let mut found = Vec::new();
    let mut open = None;
    for event in events {
        match event {
            EndpointEvent::SpeechStarted { at_ms } => {
                assert!(open.is_none(), "two starts in a row");
                open = Some(at_ms);
            }
            EndpointEvent::UtteranceEnded {
                started_at_ms,
                ended_at_ms,
                speech_ms,
            } => {
                assert_eq!(open.take(), Some(started_at_ms), "an end without its start");
                found.push(Utterance {
                    started_at_ms,
                    ended_at_ms,
                    speech_ms,
                });
            }
        }
    }
    assert!(open.is_none(), "a start without an end");
    found
}

fn assert_near(what: &str, got_ms: u64, truth_ms: i64) {
    let error = got_ms as i64 - truth_ms;
    assert!(
        error.abs() <= TOLERANCE_MS,
        "{what}: detected {got_ms} ms, truth {truth_ms} ms"
    );
}

fn assert_spans(found: &[Utterance], truth: &[(i64, i64)]) {
    assert_eq!(found.len(), truth.len(), "utterances: {found:?}");
    for (u, &(start, end)) in found.iter().zip(truth) {
        assert_near("start", u.started_at_ms, start);
        assert_near("end", u.ended_at_ms, end);
        assert!(u.speech_ms <= u.ended_at_ms - u.started_at_ms);
    }
}

#[test]
fn one_sentence_is_one_utterance_at_the_right_time() {
    assert_spans(&utterances(SENTENCE), &[(300, 3087)]);
}

#[test]
fn two_sentences_make_two_utterances() {
    assert_spans(&utterances(TWO_SENTENCES), &[(300, 1970), (2970, 3923)]);
}

#[test]
fn digital_silence_has_no_utterance() {
    assert!(SILENCE.iter().all(|&b| b == SILENCE_BYTE));
    assert_eq!(utterances(SILENCE), vec![]);
}

#[test]
fn line_noise_has_no_utterance() {
    assert_eq!(utterances(LINE_NOISE), vec![]);
}

#[test]
fn a_sentence_over_line_noise_is_still_one_utterance() {
    assert_spans(&utterances(NOISY_SENTENCE), &[(300, 3087)]);
}

#[test]
fn a_hundred_ms_burst_of_speech_is_not_an_utterance() {
    // 100 ms from the loudest syllable of the sentence ("like", 540..640 ms).
    let burst = &SENTENCE[540 * 8..640 * 8];
    let mut clean = SILENCE[..8000].to_vec();
    clean.extend_from_slice(burst);
    clean.extend_from_slice(&SILENCE[..8000]);
    assert_eq!(utterances(&clean), vec![]);

    let mut noisy = LINE_NOISE[..8000].to_vec();
    noisy.extend_from_slice(burst);
    noisy.extend_from_slice(&LINE_NOISE[8000..]);
    assert_eq!(utterances(&noisy), vec![]);
}

#[test]
fn the_same_burst_held_for_long_enough_is_an_utterance() {
    // Guards the test above: the burst is loud enough, only too short.
    let mut audio = SILENCE[..8000].to_vec();
    for _ in 0..3 {
        audio.extend_from_slice(&SENTENCE[540 * 8..640 * 8]);
    }
    audio.extend_from_slice(&SILENCE[..8000]);
    assert_spans(&utterances(&audio), &[(1000, 1300)]);
}
