//! Twilio Media Streams: the JSON messages of a bidirectional `<Connect><Stream>` WebSocket
//! (PROTOCOLS.md §3) and the framing of its μ-law audio into 20 ms frames.
//!
//! Twilio speaks first (`connected`, then `start`), then sends `media` about every 20 ms,
//! `dtmf` on key presses, `mark` when audio we queued has finished playing, and `stop` once.
//! We send `media` (audio to play), `mark` (tell us when playback reaches here) and `clear`
//! (drop queued audio: barge-in).
//!
//! Parsing is lenient where Twilio is inconsistent: counters arrive as JSON strings in real
//! traffic (`"sequenceNumber":"1"`) and as numbers in the docs, so both are accepted; unknown
//! fields are ignored; fields the protocol page marks uncertain default when absent. It is
//! strict about the `event` name: an unknown one is a [`MediaError::UnknownEvent`], which
//! the socket handler can log and skip, never a panic.
//!
//! The types also serialize, in Twilio's own style (counters as strings), so the call
//! simulator can play Twilio with them and parse what we send with [`parse_outbound`].

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::lenient;

/// Bytes in one 20 ms frame of 8 kHz μ-law: 160 samples of one byte each.
pub const FRAME_BYTES: usize = 160;

/// One 20 ms frame of 8 kHz mono μ-law audio, the unit the audio pipeline works in.
pub type Frame = [u8; FRAME_BYTES];

/// The μ-law code for silence (positive zero), used to pad a final partial frame.
pub const MULAW_SILENCE: u8 = 0xFF;

/// Why a Media Streams message could not be used. The text names the problem without echoing
/// the (possibly 64 KiB) message.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The text frame is not JSON at all.
    #[error("the message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The JSON has no string `event` field, so it is not a Media Streams message.
    #[error("the message has no `event` field")]
    MissingEvent,
    /// An `event` this protocol version does not define (shortened to 64 characters).
    /// Twilio may add events; a handler should log and skip these rather than hang up.
    #[error("unknown Media Streams event `{0}`")]
    UnknownEvent(String),
    /// A known event whose body is missing a required field or has one of the wrong type.
    #[error("malformed `{event}` message: {source}")]
    Invalid {
        /// The message's `event`.
        event: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A `media` payload that is not standard base64.
    #[error("the media payload is not valid base64: {0}")]
    Payload(#[source] base64::DecodeError),
}

/// A message Twilio sends on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// The first message: the socket is Twilio's.
    Connected(Connected),
    /// The stream's metadata: which call, which audio format, our `<Parameter>`s.
    Start(Start),
    /// About 20 ms of the caller's audio.
    Media(Media),
    /// The caller pressed a key.
    Dtmf(Dtmf),
    /// Audio we queued before a mark of ours has finished playing.
    Mark(Mark),
    /// The stream is over (hang-up, redirect, or a stream stop); sent once.
    Stop(Stop),
}

const INBOUND_EVENTS: &[&str] = &["connected", "start", "media", "dtmf", "mark", "stop"];
const OUTBOUND_EVENTS: &[&str] = &["media", "mark", "clear"];

impl Inbound {
    /// The stream this message belongs to; `connected` carries none.
    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            Inbound::Connected(_) => None,
            Inbound::Start(m) => Some(&m.stream_sid),
            Inbound::Media(m) => Some(&m.stream_sid),
            Inbound::Dtmf(m) => Some(&m.stream_sid),
            Inbound::Mark(m) => Some(&m.stream_sid),
            Inbound::Stop(m) => Some(&m.stream_sid),
        }
    }
}

/// `connected`: Twilio's greeting, before `start`. We never send one ourselves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Connected {
    /// `"Call"`.
    #[serde(default)]
    pub protocol: String,
    /// `"1.0.0"`.
    #[serde(default)]
    pub version: String,
}

/// `start`: sent once, before any audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// Position in everything Twilio sent on this stream; `1` for `start`. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub sequence_number: u64,
    /// The stream's id: `MZ` + 32 hex today, a UUID in older traffic; treat it as opaque.
    pub stream_sid: String,
    /// The metadata proper.
    pub start: StartMeta,
}

/// The body of `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    /// The Twilio account (`AC…`).
    #[serde(default)]
    pub account_sid: String,
    /// Same as the message's `streamSid`.
    pub stream_sid: String,
    /// The call (`CA…`); the media handler checks it against the stream token.
    pub call_sid: String,
    /// Which tracks will arrive: `["inbound"]` for a `<Connect>` stream.
    #[serde(default)]
    pub tracks: Vec<Track>,
    /// The audio format; always 8 kHz mono μ-law in practice.
    #[serde(default)]
    pub media_format: MediaFormat,
    /// The `<Parameter>`s of our `<Stream>`, by name.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// `start.mediaFormat`. Real JSON numbers in the capture, accepted as strings too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// `8000`.
    #[serde(deserialize_with = "lenient::uint")]
    pub sample_rate: u32,
    /// `1`.
    #[serde(deserialize_with = "lenient::uint")]
    pub channels: u16,
}

impl Default for MediaFormat {
    /// The only format Twilio streams, assumed when `mediaFormat` is absent.
    fn default() -> Self {
        Self {
            encoding: "audio/x-mulaw".to_owned(),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

/// Which direction of the call a piece of audio or a key press belongs to. Media uses
/// `inbound`/`outbound`, DTMF `inbound_track`; both spellings are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The caller's audio.
    #[default]
    #[serde(alias = "inbound_track")]
    Inbound,
    /// The audio played to the caller (only on `both_tracks` streams).
    #[serde(alias = "outbound_track")]
    Outbound,
    /// A track name this code does not know.
    #[serde(other)]
    Unknown,
}

/// `media` from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// Position in everything Twilio sent. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub sequence_number: u64,
    /// The stream.
    pub stream_sid: String,
    /// The audio.
    pub media: MediaChunk,
}

/// The body of an inbound `media` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaChunk {
    /// Whose audio; `inbound` (the caller) when absent.
    #[serde(default)]
    pub track: Track,
    /// Counts from 1 per track; a gap means Twilio dropped audio. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub chunk: u64,
    /// Presentation time in ms since the stream started. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub timestamp: u64,
    /// Base64 μ-law, usually 160 bytes (216 characters) but any length is allowed; decode
    /// with [`MediaChunk::decode`] or feed a [`FrameAssembler`].
    pub payload: String,
}

impl MediaChunk {
    /// The raw μ-law bytes of the payload.
    pub fn decode(&self) -> Result<Vec<u8>, MediaError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .map_err(MediaError::Payload)
    }
}

/// `dtmf`: a key press (bidirectional streams only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dtmf {
    /// Position in everything Twilio sent. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub sequence_number: u64,
    /// The stream.
    pub stream_sid: String,
    /// The key.
    pub dtmf: DtmfKey,
}

/// The body of `dtmf`. Its exact shape is only partly documented, so `track` is optional and
/// `digit` may be a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfKey {
    /// `inbound_track`, kept verbatim (empty when absent).
    #[serde(default)]
    pub track: String,
    /// `0`–`9`, `*` or `#`.
    #[serde(deserialize_with = "lenient::string")]
    pub digit: String,
}

/// `mark` from Twilio: the echo of one of our marks, once the audio before it has played
/// (or been cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    /// Position in everything Twilio sent. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub sequence_number: u64,
    /// The stream.
    pub stream_sid: String,
    /// The name we gave the mark.
    pub mark: MarkName,
}

/// The body of a `mark`, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkName {
    /// Our label, e.g. the sentence it follows.
    pub name: String,
}

/// `stop`: the stream has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    /// Position in everything Twilio sent. 0 when absent.
    #[serde(
        default,
        deserialize_with = "lenient::uint",
        serialize_with = "lenient::as_string"
    )]
    pub sequence_number: u64,
    /// The stream.
    pub stream_sid: String,
    /// Which call; the shape is not firmly documented, so it may be empty.
    #[serde(default)]
    pub stop: StopMeta,
}

/// The body of `stop`, every field optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    /// The Twilio account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// The call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
}

/// A message we send to Twilio. Build the JSON with [`encode_media`], [`encode_mark`] and
/// [`encode_clear`]; this type is for reading it back, in the call simulator and in tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outbound {
    /// Audio to queue for playback.
    Media(OutboundMedia),
    /// Tell us when playback reaches this point.
    Mark(OutboundMark),
    /// Drop everything queued (barge-in).
    Clear(Clear),
}

/// Outbound `media`: only a payload, no track, chunk or timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMedia {
    /// The stream.
    pub stream_sid: String,
    /// The audio.
    pub media: OutboundPayload,
}

/// The body of outbound `media`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundPayload {
    /// Base64 μ-law of any length.
    pub payload: String,
}

/// Outbound `mark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMark {
    /// The stream.
    pub stream_sid: String,
    /// Our label, echoed back by Twilio.
    pub mark: MarkName,
}

/// Outbound `clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clear {
    /// The stream.
    pub stream_sid: String,
}

/// Parses one text frame from Twilio.
pub fn parse_inbound(text: &str) -> Result<Inbound, MediaError> {
    serde_json::from_str(text).map_err(|e| classify(text, e, INBOUND_EVENTS))
}

/// The caller's audio in an inbound `media` message, borrowed from the message's text.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct MediaPeek<'a> {
    /// Whose audio; `inbound` (the caller) when absent.
    #[serde(default)]
    pub track: Track,
    /// Presentation time in ms since the stream started. 0 when absent.
    #[serde(default, deserialize_with = "lenient::uint")]
    pub timestamp: u64,
    /// Base64 μ-law (borrowed unless the JSON escaped a character in it).
    #[serde(borrow)]
    pub payload: std::borrow::Cow<'a, str>,
}

/// What [`peek_media`] reads of a message; every other field is skipped unparsed.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    media: Option<MediaPeek<'a>>,
}

/// The audio of a well-formed `media` message, or `None` for any other message (which
/// [`parse_inbound`] then reads in full, errors included). Media arrives 50 times a second
/// per call: this reads only the fields the call needs and allocates nothing, where the full
/// parse buffers the whole message and copies its strings.
pub fn peek_media(text: &str) -> Option<MediaPeek<'_>> {
    match serde_json::from_str::<Peek<'_>>(text) {
        Ok(Peek {
            event,
            media: Some(media),
        }) if event == "media" => Some(media),
        _ => None,
    }
}

/// Parses one text frame we (or a server under test) sent to Twilio; for the call simulator.
pub fn parse_outbound(text: &str) -> Result<Outbound, MediaError> {
    serde_json::from_str(text).map_err(|e| classify(text, e, OUTBOUND_EVENTS))
}

/// Turns serde's error into one that says which of the four things went wrong. Runs only on
/// the error path, so the extra parse costs nothing on the 50-a-second `media` path.
fn classify(text: &str, error: serde_json::Error, known: &[&str]) -> MediaError {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return MediaError::Json(error);
    };
    let Some(event) = value.get("event").and_then(serde_json::Value::as_str) else {
        return MediaError::MissingEvent;
    };
    if known.contains(&event) {
        MediaError::Invalid {
            event: event.to_owned(),
            source: error,
        }
    } else {
        MediaError::UnknownEvent(event.chars().take(64).collect())
    }
}

/// The `media` message that plays `mulaw` (raw 8 kHz μ-law bytes) to the caller, as compact
/// JSON. Any length is fine; Twilio queues and plays in order. Skip empty audio: a message
/// with an empty payload is only noise on the socket. Written straight around the base64
/// payload, which serde would copy once more and scan for characters to escape.
pub fn encode_media(stream_sid: &str, mulaw: &[u8]) -> String {
    const HEAD: &str = r#"{"event":"media","streamSid":"#;
    const MIDDLE: &str = r#","media":{"payload":""#;
    let sid = to_json(&stream_sid);
    let payload = mulaw.len().div_ceil(3) * 4;
    let mut json = String::with_capacity(HEAD.len() + sid.len() + MIDDLE.len() + payload + 3);
    json.push_str(HEAD);
    json.push_str(&sid);
    json.push_str(MIDDLE);
    base64::engine::general_purpose::STANDARD.encode_string(mulaw, &mut json);
    json.push_str("\"}}");
    json
}

/// The `mark` message Twilio echoes back once everything queued before it has played.
pub fn encode_mark(stream_sid: &str, name: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Msg<'a> {
        event: &'static str,
        stream_sid: &'a str,
        mark: Name<'a>,
    }
    #[derive(Serialize)]
    struct Name<'a> {
        name: &'a str,
    }
    to_json(&Msg {
        event: "mark",
        stream_sid,
        mark: Name { name },
    })
}

/// The `clear` message that drops all queued audio, for barge-in.
pub fn encode_clear(stream_sid: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Msg<'a> {
        event: &'static str,
        stream_sid: &'a str,
    }
    to_json(&Msg {
        event: "clear",
        stream_sid,
    })
}

fn to_json<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).expect("structs of strings always serialize")
}

/// Cuts a stream of μ-law bytes, arriving in payloads of any length, into 160-byte frames,
/// keeping the remainder for the next payload.
///
/// Twilio sends 160-byte payloads today, but nothing promises it (our own outbound side and
/// tw-ms's echo send 8000 bytes at once), and the VAD and speech-to-text want fixed frames.
/// The assembler owns one buffer, reused for every payload: after it has grown to the largest
/// payload seen it allocates nothing more, and frames are lent out of it, not copied.
#[derive(Debug, Default)]
pub struct FrameAssembler {
    /// Decoded bytes; `buf[consumed..]` is the remainder not yet handed out as a frame.
    buf: Vec<u8>,
    /// How many leading bytes of `buf` were handed out by the last push.
    consumed: usize,
}

impl FrameAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a base64 `media.payload` and returns the complete frames now available, the
    /// remainder of the previous payload first. Frames the caller does not iterate over are
    /// dropped. On invalid base64 nothing is added, and the remainder is kept.
    pub fn push_base64(&mut self, payload: &str) -> Result<Frames<'_>, MediaError> {
        self.compact();
        let before = self.buf.len();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(payload, &mut self.buf)
        {
            // `decode_vec` grows the buffer before decoding and leaves it grown on error.
            self.buf.truncate(before);
            return Err(MediaError::Payload(e));
        }
        Ok(self.frames())
    }

    /// Like [`FrameAssembler::push_base64`] for bytes already decoded (e.g. synthesised
    /// speech to be sent in frame-sized pieces).
    pub fn push_bytes(&mut self, mulaw: &[u8]) -> Frames<'_> {
        self.compact();
        self.buf.extend_from_slice(mulaw);
        self.frames()
    }

    /// How many bytes are waiting for the rest of their frame (always under 160).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The remainder padded with μ-law silence to a whole frame, or `None` when nothing is
    /// pending. For the end of a stream, so the last few milliseconds are not lost.
    pub fn finish(&mut self) -> Option<Frame> {
        self.compact();
        if self.buf.is_empty() {
            return None;
        }
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        frame[..self.buf.len()].copy_from_slice(&self.buf);
        self.buf.clear();
        Some(frame)
    }

    /// Forgets the remainder, e.g. when queued outbound audio is cleared on barge-in.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.consumed = 0;
    }

    /// Moves the remainder (under 160 bytes) to the front of the buffer; no allocation.
    fn compact(&mut self) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    fn frames(&mut self) -> Frames<'_> {
        let whole = self.buf.len() / FRAME_BYTES * FRAME_BYTES;
        self.consumed = whole;
        Frames {
            chunks: self.buf[..whole].chunks_exact(FRAME_BYTES),
        }
    }
}

/// The complete frames of one push, borrowed from the [`FrameAssembler`]'s buffer.
#[derive(Debug)]
pub struct Frames<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a Frame;

    fn next(&mut self) -> Option<&'a Frame> {
        self.chunks
            .next()
            .map(|c| c.try_into().expect("chunks_exact yields whole frames"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Frames<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    // The example messages of PROTOCOLS.md §3.2 and §3.3, verbatim.
    const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ5b1c...",
 "start":{"accountSid":"AC0a...","streamSid":"MZ5b1c...","callSid":"CA9e...",
          "tracks":["inbound"],
          "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
          "customParameters":{"tenant":"acme","from_number":"+14155550100"}}}"#;
    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ5b1c...",
 "media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"/////w8P..."}}"#;
    const DTMF: &str = r#"{"event":"dtmf","sequenceNumber":"40","streamSid":"MZ5b1c...",
 "dtmf":{"track":"inbound_track","digit":"7"}}"#;
    const MARK: &str = r#"{"event":"mark","sequenceNumber":"103","streamSid":"MZ5b1c...","mark":{"name":"reply-1"}}"#;
    const STOP: &str = r#"{"event":"stop","sequenceNumber":"812","streamSid":"MZ5b1c...",
 "stop":{"accountSid":"AC0a...","callSid":"CA9e..."}}"#;
    const OUT_MEDIA: &str =
        r#"{"event":"media","streamSid":"MZ5b1c...","media":{"payload":"<base64 mulaw 8k>"}}"#;
    const OUT_MARK: &str = r#"{"event":"mark","streamSid":"MZ5b1c...","mark":{"name":"reply-1"}}"#;
    const OUT_CLEAR: &str = r#"{"event":"clear","streamSid":"MZ5b1c..."}"#;

    #[test]
    fn peek_media_reads_the_audio_of_media_and_nothing_else() {
        let media = peek_media(MEDIA).expect("a media message");
        assert_eq!(
            (media.track, media.timestamp, &*media.payload),
            (Track::Inbound, 20, "/////w8P...")
        );
        assert!(matches!(media.payload, std::borrow::Cow::Borrowed(_)));
        // Numbers as numbers, an escaped slash, an outbound track: all as the full parse.
        let escaped =
            r#"{"event":"media","media":{"track":"outbound","timestamp":40,"payload":"ab\/c"}}"#;
        let media = peek_media(escaped).unwrap();
        assert_eq!(
            (media.track, media.timestamp, &*media.payload),
            (Track::Outbound, 40, "ab/c")
        );
        for other in [CONNECTED, START, DTMF, MARK, STOP, OUT_CLEAR] {
            assert_eq!(peek_media(other), None, "{other}");
        }
        // Broken media is left to the full parse, which says what is wrong.
        let broken = r#"{"event":"media","media":{"track":"inbound","timestamp":"x"}}"#;
        assert_eq!(peek_media(broken), None);
        assert!(parse_inbound(broken).is_err());
        assert_eq!(peek_media("not json"), None);
    }

    #[test]
    fn connected_parses() {
        assert_eq!(
            parse_inbound(CONNECTED).unwrap(),
            Inbound::Connected(Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            })
        );
    }

    #[test]
    fn start_parses_with_its_format_tracks_and_parameters() {
        let Inbound::Start(start) = parse_inbound(START).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(start.sequence_number, 1);
        assert_eq!(start.stream_sid, "MZ5b1c...");
        assert_eq!(start.start.call_sid, "CA9e...");
        assert_eq!(start.start.account_sid, "AC0a...");
        assert_eq!(start.start.tracks, vec![Track::Inbound]);
        assert_eq!(start.start.media_format, MediaFormat::default());
        assert_eq!(start.start.custom_parameters["tenant"], "acme");
        assert_eq!(start.start.custom_parameters["from_number"], "+14155550100");
    }

    #[test]
    fn media_parses_with_string_counters() {
        let msg = parse_inbound(MEDIA).unwrap();
        assert_eq!(msg.stream_sid(), Some("MZ5b1c..."));
        let Inbound::Media(media) = msg else {
            panic!("not media");
        };
        assert_eq!(media.sequence_number, 2);
        assert_eq!(
            media.media,
            MediaChunk {
                track: Track::Inbound,
                chunk: 1,
                timestamp: 20,
                payload: "/////w8P...".into()
            }
        );
    }

    #[test]
    fn dtmf_mark_and_stop_parse() {
        let Inbound::Dtmf(dtmf) = parse_inbound(DTMF).unwrap() else {
            panic!("not dtmf");
        };
        assert_eq!((dtmf.sequence_number, dtmf.dtmf.digit.as_str()), (40, "7"));
        assert_eq!(dtmf.dtmf.track, "inbound_track");

        let Inbound::Mark(mark) = parse_inbound(MARK).unwrap() else {
            panic!("not a mark");
        };
        assert_eq!(
            (mark.sequence_number, mark.mark.name.as_str()),
            (103, "reply-1")
        );

        let Inbound::Stop(stop) = parse_inbound(STOP).unwrap() else {
            panic!("not a stop");
        };
        assert_eq!(stop.sequence_number, 812);
        assert_eq!(stop.stop.call_sid.as_deref(), Some("CA9e..."));
        assert_eq!(stop.stop.account_sid.as_deref(), Some("AC0a..."));
    }

    #[test]
    fn numbers_as_numbers_parse_like_numbers_as_strings() {
        let numeric = r#"{"event":"media","sequenceNumber":2,"streamSid":"MZ1",
            "media":{"track":"inbound","chunk":1,"timestamp":20,"payload":""}}"#;
        let stringy = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1",
            "media":{"track":"inbound","chunk":"1","timestamp":"20","payload":""}}"#;
        assert_eq!(
            parse_inbound(numeric).unwrap(),
            parse_inbound(stringy).unwrap()
        );

        let start = r#"{"event":"start","sequenceNumber":1,"streamSid":"MZ1",
            "start":{"streamSid":"MZ1","callSid":"CA1",
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":"8000","channels":"1"}}}"#;
        let Inbound::Start(start) = parse_inbound(start).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(start.start.media_format.sample_rate, 8000);
        assert_eq!(start.start.media_format.channels, 1);
        assert!(start.start.custom_parameters.is_empty());

        let dtmf = r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":0}}"#;
        let Inbound::Dtmf(dtmf) = parse_inbound(dtmf).unwrap() else {
            panic!("not dtmf");
        };
        assert_eq!(dtmf.dtmf.digit, "0");
    }

    #[test]
    fn uncertain_fields_default_and_unknown_fields_are_ignored() {
        let stop = r#"{"event":"stop","streamSid":"MZ1","extra":{"x":1}}"#;
        let Inbound::Stop(stop) = parse_inbound(stop).unwrap() else {
            panic!("not a stop");
        };
        assert_eq!((stop.sequence_number, stop.stop), (0, StopMeta::default()));
        let media = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AA=="},"new":true}"#;
        let Inbound::Media(media) = parse_inbound(media).unwrap() else {
            panic!("not media");
        };
        assert_eq!(media.media.track, Track::Inbound);
        assert_eq!(media.media.decode().unwrap(), vec![0]);
    }

    #[test]
    fn an_unknown_event_is_an_error_naming_it() {
        let err = parse_inbound(r#"{"event":"transcription","streamSid":"MZ1"}"#).unwrap_err();
        assert!(
            matches!(&err, MediaError::UnknownEvent(e) if e == "transcription"),
            "{err:?}"
        );
        assert!(err.to_string().contains("transcription"));
        // `clear` is ours to send, never Twilio's.
        assert!(matches!(
            parse_inbound(OUT_CLEAR),
            Err(MediaError::UnknownEvent(_))
        ));
        let long = format!(r#"{{"event":"{}"}}"#, "x".repeat(1000));
        let MediaError::UnknownEvent(name) = parse_inbound(&long).unwrap_err() else {
            panic!("not unknown");
        };
        assert_eq!(name.len(), 64);
    }

    #[test]
    fn malformed_json_and_missing_events_are_errors() {
        assert!(matches!(
            parse_inbound(r#"{"event":"media","#),
            Err(MediaError::Json(_))
        ));
        assert!(matches!(parse_inbound(""), Err(MediaError::Json(_))));
        assert!(matches!(
            parse_inbound(r#"{"streamSid":"MZ1"}"#),
            Err(MediaError::MissingEvent)
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":7}"#),
            Err(MediaError::MissingEvent)
        ));
        assert!(matches!(
            parse_inbound("[1,2]"),
            Err(MediaError::MissingEvent)
        ));
    }

    #[test]
    fn a_known_event_missing_a_field_says_which_event() {
        let err =
            parse_inbound(r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1"}}"#)
                .unwrap_err();
        assert!(
            matches!(&err, MediaError::Invalid { event, .. } if event == "start"),
            "{err:?}"
        );
        assert!(err.to_string().contains("callSid"), "{err}");
        let err = parse_inbound(
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"","chunk":"one"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn outbound_encoders_write_the_documented_compact_json() {
        assert_eq!(
            encode_media("MZ5b1c...", &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x0F]),
            r#"{"event":"media","streamSid":"MZ5b1c...","media":{"payload":"/////w8P"}}"#
        );
        assert_eq!(
            encode_media("MZ\"1", &[0xFF]),
            r#"{"event":"media","streamSid":"MZ\"1","media":{"payload":"/w=="}}"#
        );
        assert_eq!(encode_mark("MZ5b1c...", "reply-1"), OUT_MARK);
        assert_eq!(encode_clear("MZ5b1c..."), OUT_CLEAR);
        assert_eq!(
            encode_mark("MZ\"1", "a\\b"),
            r#"{"event":"mark","streamSid":"MZ\"1","mark":{"name":"a\\b"}}"#
        );
    }

    #[test]
    fn outbound_messages_parse_back() {
        assert_eq!(
            parse_outbound(OUT_MEDIA).unwrap(),
            Outbound::Media(OutboundMedia {
                stream_sid: "MZ5b1c...".into(),
                media: OutboundPayload {
                    payload: "<base64 mulaw 8k>".into()
                }
            })
        );
        assert_eq!(
            parse_outbound(OUT_MARK).unwrap(),
            Outbound::Mark(OutboundMark {
                stream_sid: "MZ5b1c...".into(),
                mark: MarkName {
                    name: "reply-1".into()
                }
            })
        );
        assert_eq!(
            parse_outbound(OUT_CLEAR).unwrap(),
            Outbound::Clear(Clear {
                stream_sid: "MZ5b1c...".into()
            })
        );
        assert!(matches!(
            parse_outbound(CONNECTED),
            Err(MediaError::UnknownEvent(_))
        ));
    }

    #[test]
    fn inbound_messages_serialize_as_twilio_writes_them() {
        for text in [CONNECTED, START, MEDIA, DTMF, MARK, STOP] {
            let msg = parse_inbound(text).unwrap();
            let json = serde_json::to_string(&msg).unwrap();
            assert_eq!(parse_inbound(&json).unwrap(), msg, "{json}");
        }
        let json = serde_json::to_string(&parse_inbound(MEDIA).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ5b1c...","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"/////w8P..."}}"#
        );
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_160_byte_payload_is_exactly_one_frame() {
        let audio: Vec<u8> = (0..160).map(|i| i as u8).collect();
        assert_eq!(b64(&audio).len(), 216);
        let mut asm = FrameAssembler::new();
        let frames: Vec<Frame> = asm.push_base64(&b64(&audio)).unwrap().copied().collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][..], &audio[..]);
        assert_eq!(asm.pending(), 0);
        assert_eq!(asm.finish(), None);
    }

    #[test]
    fn payloads_of_any_length_are_reframed_in_order() {
        let audio: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut asm = FrameAssembler::new();
        let mut out = Vec::new();
        for piece in [
            &audio[..100],
            &audio[100..130],
            &audio[130..500],
            &audio[500..],
        ] {
            for frame in asm.push_base64(&b64(piece)).unwrap() {
                out.extend_from_slice(frame);
            }
        }
        assert_eq!(out.len(), 960);
        assert_eq!(&out[..], &audio[..960]);
        assert_eq!(asm.pending(), 40);
        let last = asm.finish().unwrap();
        assert_eq!(&last[..40], &audio[960..]);
        assert!(last[40..].iter().all(|&b| b == MULAW_SILENCE));
        assert_eq!(asm.pending(), 0);
    }

    #[test]
    fn one_second_in_one_message_gives_fifty_frames() {
        let mut asm = FrameAssembler::new();
        let second = b64(&[0x7F; 8000]);
        assert_eq!(second.len(), 10_668);
        assert_eq!(asm.push_base64(&second).unwrap().len(), 50);
    }

    #[test]
    fn the_buffer_stops_growing_once_it_fits_the_largest_payload() {
        let mut asm = FrameAssembler::new();
        let piece = b64(&[1; 170]);
        for _ in 0..10 {
            asm.push_base64(&piece).unwrap().for_each(drop);
        }
        let capacity = asm.buf.capacity();
        for _ in 0..1000 {
            asm.push_base64(&piece).unwrap().for_each(drop);
        }
        assert_eq!(asm.buf.capacity(), capacity);
    }

    #[test]
    fn invalid_base64_is_an_error_and_keeps_the_remainder() {
        let mut asm = FrameAssembler::new();
        assert_eq!(asm.push_bytes(&[9; 100]).len(), 0);
        assert!(matches!(
            asm.push_base64("not base64!"),
            Err(MediaError::Payload(_))
        ));
        assert_eq!(asm.pending(), 100);
        let frames: Vec<Frame> = asm.push_bytes(&[9; 60]).copied().collect();
        assert_eq!(frames, vec![[9; 160]]);
    }

    #[test]
    fn reset_drops_the_remainder() {
        let mut asm = FrameAssembler::new();
        assert_eq!(asm.push_bytes(&[1; 300]).len(), 1);
        asm.reset();
        assert_eq!(asm.pending(), 0);
        assert_eq!(asm.finish(), None);
    }
}
