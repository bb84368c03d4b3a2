//! The emulator's audio: a vowel-like "voice" whose length grows with the text, and a WAV
//! header reader for the transcription endpoint.
//!
//! The voice is not speech, but it is real 8 kHz audio with the properties the runtime
//! relies on: letters are voiced (a pitched, formant-shaped waveform loud enough for the
//! VAD), spaces and punctuation are silent gaps, and every character lasts exactly
//! [`MS_PER_CHAR`] so tests can predict lengths. μ-law encoding is the runtime's own codec
//! (`actors::audio::mulaw`), not a copy.

use actors::audio::{mulaw, SAMPLE_RATE};

/// Milliseconds of audio per character of text: about the pace of a phone agent's speech
/// (15 characters a second), so turn timings in the demo look like a real call.
pub const MS_PER_CHAR: u64 = 65;

/// Samples per character at 8 kHz (520).
pub const SAMPLES_PER_CHAR: usize = (SAMPLE_RATE as u64 * MS_PER_CHAR / 1000) as usize;

/// Peak level of voiced audio, as a fraction of full scale: about −10 dBFS, a normal phone
/// level, well above any VAD gate and far from clipping.
const PEAK: f32 = 0.32;

/// Samples of fade at the edges of a voiced run, so words start and end without clicks.
const RAMP: usize = 40;

/// The PCM "speech" for a text: `SAMPLES_PER_CHAR` samples per character (Unicode scalar).
pub fn speech_pcm(text: &str) -> Vec<i16> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len() * SAMPLES_PER_CHAR);
    let mut word = 0usize;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if i > 0 && chars[i - 1].is_alphanumeric() {
                word += 1;
            }
            out.extend(std::iter::repeat_n(0i16, SAMPLES_PER_CHAR));
            continue;
        }
        let voiced_before = i > 0 && chars[i - 1].is_alphanumeric();
        let voiced_after = chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        // A slight pitch change per word, as intonation would give.
        let f0 = 110.0 + (word % 5) as f32 * 9.0;
        let (f1, f2) = formants(c);
        let gain = if is_vowel(c) { 1.0 } else { 0.6 };
        let weights: Vec<f32> = (1..=16)
            .map(|k| {
                let f = k as f32 * f0;
                if f >= 3400.0 {
                    return 0.0; // the telephone band ends at 3.4 kHz
                }
                let g1 = (-((f - f1) / 180.0).powi(2)).exp();
                let g2 = 0.6 * (-((f - f2) / 250.0).powi(2)).exp();
                g1 + g2 + 0.15 / k as f32
            })
            .collect();
        let norm: f32 = weights.iter().sum::<f32>().max(1e-3);
        let start = out.len();
        for j in 0..SAMPLES_PER_CHAR {
            // Phase runs on the absolute sample index, so consecutive letters join smoothly.
            let t = (start + j) as f32 / SAMPLE_RATE as f32;
            let mut v = 0.0f32;
            for (k, w) in weights.iter().enumerate() {
                if *w > 0.0 {
                    v += w * (std::f32::consts::TAU * (k + 1) as f32 * f0 * t).sin();
                }
            }
            let mut env = gain;
            if !voiced_before && j < RAMP {
                env *= j as f32 / RAMP as f32;
            }
            if !voiced_after && j >= SAMPLES_PER_CHAR - RAMP {
                env *= (SAMPLES_PER_CHAR - 1 - j) as f32 / RAMP as f32;
            }
            let s = v / norm * env * PEAK * i16::MAX as f32;
            out.push(s.clamp(i16::MIN as f32, i16::MAX as f32) as i16);
        }
    }
    out
}

/// The text's speech as raw μ-law bytes (`ulaw_8000`), one byte per sample.
pub fn speech_ulaw(text: &str) -> Vec<u8> {
    speech_pcm(text).into_iter().map(mulaw::encode).collect()
}

/// The text's speech as raw signed 16-bit little-endian PCM (`pcm_8000`).
pub fn speech_pcm16le(text: &str) -> Vec<u8> {
    speech_pcm(text)
        .into_iter()
        .flat_map(i16::to_le_bytes)
        .collect()
}

fn is_vowel(c: char) -> bool {
    matches!(c.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// First and second formant (Hz) for a character: the five cardinal vowels, with other
/// characters mapped onto them so each word has its own colour.
fn formants(c: char) -> (f32, f32) {
    const VOWELS: [(f32, f32); 5] = [
        (730.0, 1090.0), // a
        (530.0, 1840.0), // e
        (270.0, 2290.0), // i
        (570.0, 840.0),  // o
        (300.0, 870.0),  // u
    ];
    let index = match c.to_ascii_lowercase() {
        'a' => 0,
        'e' => 1,
        'i' | 'y' => 2,
        'o' => 3,
        'u' => 4,
        other => other as usize % 5,
    };
    VOWELS[index]
}

/// The facts of a WAV file the transcription endpoint checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    /// The `fmt ` format code: 1 PCM, 3 float, 6 A-law, 7 μ-law, 0xFFFE extensible.
    pub format: u16,
    /// Channel count.
    pub channels: u16,
    /// Samples per second.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Length of the `data` chunk in bytes (clamped to what the file really holds).
    pub data_len: usize,
}

impl WavInfo {
    /// The audio's duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let bytes_per_second = self.sample_rate as u64
            * self.channels as u64
            * (self.bits_per_sample as u64).div_ceil(8);
        if bytes_per_second == 0 {
            return 0;
        }
        self.data_len as u64 * 1000 / bytes_per_second
    }
}

/// Reads a RIFF/WAVE header: a `fmt ` chunk with a known format and a `data` chunk. This is
/// what "is it a WAV" means for the emulator; it does not decode the audio.
pub fn parse_wav(bytes: &[u8]) -> Result<WavInfo, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut fmt = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            if len < 16 || body + 16 > bytes.len() {
                return Err("truncated fmt chunk".into());
            }
            let u16_at = |o: usize| u16::from_le_bytes([bytes[body + o], bytes[body + o + 1]]);
            let sample_rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            fmt = Some((u16_at(0), u16_at(2), sample_rate, u16_at(14)));
        } else if id == b"data" {
            let (format, channels, sample_rate, bits_per_sample) =
                fmt.ok_or("data chunk before fmt chunk")?;
            if !matches!(format, 1 | 3 | 6 | 7 | 0xFFFE) {
                return Err(format!("unsupported WAV format code {format}"));
            }
            if channels == 0 || sample_rate == 0 || bits_per_sample == 0 {
                return Err("fmt chunk has a zero channel count, rate or sample size".into());
            }
            return Ok(WavInfo {
                format,
                channels,
                sample_rate,
                bits_per_sample,
                data_len: len.min(bytes.len() - body),
            });
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(len).saturating_add(len & 1);
    }
    Err("no data chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn speech_lasts_sixty_five_ms_a_character() {
        assert_eq!(SAMPLES_PER_CHAR, 520);
        assert_eq!(speech_pcm("Hello there.").len(), 12 * 520);
        assert_eq!(speech_ulaw("héllo").len(), 5 * 520);
        assert_eq!(speech_pcm16le("ab").len(), 2 * 2 * 520);
    }

    #[test]
    fn letters_are_loud_and_spaces_are_silent() {
        let pcm = speech_pcm("ah ah");
        let letter = &pcm[..2 * SAMPLES_PER_CHAR];
        let space = &pcm[2 * SAMPLES_PER_CHAR..3 * SAMPLES_PER_CHAR];
        let dbfs = 20.0 * (rms(letter) / 32768.0).log10();
        assert!(dbfs > -30.0 && dbfs < -6.0, "voiced level {dbfs} dBFS");
        assert!(space.iter().all(|&s| s == 0));
    }

    #[test]
    fn speech_is_deterministic() {
        assert_eq!(speech_ulaw("Same text"), speech_ulaw("Same text"));
    }

    fn wav(format: u16, data: &[u8]) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&format.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&8000u32.to_le_bytes());
        w.extend_from_slice(&16000u32.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(data);
        w
    }

    #[test]
    fn a_pcm16_wav_is_read() {
        let info = parse_wav(&wav(1, &[0; 16000])).unwrap();
        assert_eq!(
            (info.format, info.sample_rate, info.data_len),
            (1, 8000, 16000)
        );
        assert_eq!(info.duration_ms(), 1000);
    }

    #[test]
    fn non_wavs_are_refused() {
        assert!(parse_wav(b"ID3\x03mp3 data here").is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0AVI LIST").is_err());
        assert!(parse_wav(&wav(85, &[0; 10])).is_err());
        assert!(parse_wav(&wav(1, &[])[..40]).is_err());
    }
}
