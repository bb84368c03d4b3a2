//! G.711 μ-law, the only audio format on a Twilio Media Stream (8 kHz, mono, one byte per
//! sample, no header).
//!
//! Encoding is the Sun `g711.c` form, bit-exact with Python's `audioop.lin2ulaw` (and so with
//! pipecat), rather than the "classic" 16-bit form that differs on 381 negative inputs: the
//! same PCM then gives the same bytes here as in every reference we compare against. Both
//! directions are table lookups built at compile time by `const fn`s that transcribe the
//! reference algorithm (PROTOCOLS.md §7.1), so there is no pasted table to get wrong.
//!
//! The slice helpers write into buffers the caller owns: the audio path handles 50 frames a
//! second per call and must not allocate per frame.

/// The byte Twilio treats as silence (μ-law of 0). A frame of [`super::FRAME_SAMPLES`] of
/// these is 20 ms of silence that can be sent as it is.
pub const SILENCE_BYTE: u8 = 0xFF;

/// `BIAS >> 2` of the 14-bit form: moves every magnitude off zero so that the segment
/// boundaries fall on powers of two.
const BIAS_14: i32 = 33;
/// Largest 14-bit magnitude before the bias; anything above is clipped to the top code.
const CLIP_14: i32 = 8159;

/// Encodes one sample the way the reference pseudo-code does, step by step. Runs only at
/// compile time, to fill [`ENCODE_TABLE`].
const fn encode_reference(sample: i16) -> u8 {
    const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut p = (sample as i32) >> 2;
    let mask: i32 = if p < 0 {
        p = -p;
        0x7F
    } else {
        0xFF
    };
    if p > CLIP_14 {
        p = CLIP_14;
    }
    p += BIAS_14;
    let mut seg = 0;
    while seg < 8 && p > SEG_UEND[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    ((((seg as i32) << 4) | ((p >> (seg + 1)) & 0x0F)) ^ mask) as u8
}

/// Decodes one byte exactly as the reference pseudo-code does. Runs only at compile time, to
/// fill [`DECODE_TABLE`].
const fn decode_reference(byte: u8) -> i16 {
    let u = !byte as i32;
    let mut t = ((u & 0x0F) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

/// Encoding depends only on the top 14 bits of a sample (the algorithm starts with `x >> 2`),
/// so 16,384 entries cover every `i16`. 16 KiB stays in L1 cache, and a lookup beats
/// computing the segment even with `leading_zeros`: 65 ns against 271 ns for a 160-sample
/// frame, measured with criterion.
static ENCODE_TABLE: [u8; 1 << 14] = {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < table.len() {
        // Entry i holds the code of the 14-bit value i - 8192; any sample with that top part
        // encodes the same.
        table[i] = encode_reference(((i as i32 - 8192) << 2) as i16);
        i += 1;
    }
    table
};

/// Every μ-law byte decoded once, at compile time.
static DECODE_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < table.len() {
        table[i] = decode_reference(i as u8);
        i += 1;
    }
    table
};

/// Encodes one 16-bit PCM sample to μ-law, bit-exact with `audioop.lin2ulaw`.
#[inline]
pub fn encode(sample: i16) -> u8 {
    // (sample >> 2) is in -8192..=8191, so the index is in 0..16384 and cannot go out of
    // bounds; the mask lets the compiler see that too and drop the bounds check.
    ENCODE_TABLE[(((sample >> 2) as i32 + 8192) as usize) & 0x3FFF]
}

/// Decodes one μ-law byte to 16-bit PCM (the same value `audioop.ulaw2lin` gives).
#[inline]
pub fn decode(byte: u8) -> i16 {
    DECODE_TABLE[byte as usize]
}

/// Encodes `pcm` into `out` without allocating and returns how many samples it wrote: the
/// shorter of the two lengths, so a mismatched buffer is never a panic.
pub fn encode_into(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = encode(s);
    }
    n
}

/// Decodes `ulaw` into `out` without allocating and returns how many samples it wrote: the
/// shorter of the two lengths, so a mismatched buffer is never a panic.
pub fn decode_into(ulaw: &[u8], out: &mut [i16]) -> usize {
    let n = ulaw.len().min(out.len());
    for (o, &b) in out[..n].iter_mut().zip(&ulaw[..n]) {
        *o = decode(b);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §7.1 "Encode" pseudo-code transcribed literally with plain integers, independent of
    /// the const fn that builds the table.
    fn sun_encode(x: i16) -> u8 {
        let seg_uend = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
        let mut p = i32::from(x) >> 2;
        let mask;
        if p < 0 {
            p = -p;
            mask = 0x7F;
        } else {
            mask = 0xFF;
        }
        if p > 8159 {
            p = 8159;
        }
        p += 33;
        let seg = seg_uend.iter().position(|&e| p <= e).unwrap_or(8);
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        ((((seg as i32) << 4) | ((p >> (seg + 1)) & 0x0F)) ^ mask) as u8
    }

    #[test]
    fn encoding_matches_the_audioop_test_vectors() {
        let vectors: [(i16, u8); 12] = [
            (0, 0xFF),
            (1, 0xFF),
            (-1, 0x7E),
            (100, 0xF2),
            (-100, 0x72),
            (1000, 0xCE),
            (-1000, 0x4E),
            (8000, 0xA0),
            (-8000, 0x20),
            (32767, 0x80),
            (-32768, 0x00),
            (0, SILENCE_BYTE),
        ];
        for (x, want) in vectors {
            assert_eq!(encode(x), want, "enc({x})");
        }
    }

    #[test]
    fn decoding_matches_the_audioop_test_vectors() {
        let vectors: [(u8, i16); 8] = [
            (0x00, -32124),
            (0x80, 32124),
            (0xFF, 0),
            (0x7F, 0),
            (0xFE, 8),
            (0x7E, -8),
            (0x0F, -16764),
            (0x8F, 16764),
        ];
        for (b, want) in vectors {
            assert_eq!(decode(b), want, "dec({b:#04x})");
        }
    }

    #[test]
    fn encoding_agrees_with_the_pseudo_code_on_every_i16() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(encode(x), sun_encode(x), "enc({x})");
        }
    }

    #[test]
    fn decoding_agrees_with_the_pseudo_code_on_every_byte() {
        for b in 0..=u8::MAX {
            let u = i32::from(!b);
            let t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
            let want = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
            assert_eq!(i32::from(decode(b)), want, "dec({b:#04x})");
        }
    }

    #[test]
    fn a_round_trip_stays_within_half_a_quantisation_step() {
        // μ-law keeps about 4 mantissa bits: the step doubles with each segment, so the error
        // bound is relative (about 1/32 of the magnitude) plus a small absolute floor near 0,
        // and clipping costs at most 32767 - 32124 at full scale.
        for x in i16::MIN..=i16::MAX {
            let y = decode(encode(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let magnitude = i32::from(x).abs();
            let bound = if magnitude > 32124 {
                magnitude - 32124
            } else {
                magnitude / 32 + 8
            };
            assert!(err <= bound, "x={x} y={y} err={err} bound={bound}");
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode_except_negative_zero() {
        for b in 0..=u8::MAX {
            let again = encode(decode(b));
            // 0x7F is "minus zero": it decodes to 0, which encodes as 0xFF.
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(again, want, "code {b:#04x}");
        }
    }

    #[test]
    fn slice_helpers_stop_at_the_shorter_buffer() {
        let pcm = [0i16, 1000, -1000, 32767];
        let mut out = [0u8; 3];
        assert_eq!(encode_into(&pcm, &mut out), 3);
        assert_eq!(out, [0xFF, 0xCE, 0x4E]);

        let mut back = [0i16; 8];
        assert_eq!(decode_into(&out, &mut back), 3);
        assert_eq!(&back[..3], &[0, decode(0xCE), decode(0x4E)]);
        assert_eq!(encode_into(&[], &mut out), 0);
        assert_eq!(decode_into(&out, &mut []), 0);
    }
}
