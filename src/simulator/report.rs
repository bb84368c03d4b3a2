//! What a simulated call found: how the server answered, what the agent said and how fast,
//! turn by turn. Serialized as JSON for scripts and CI (`switchboard call --json`), and
//! rendered as short text for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// How the server handled the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The TwiML ended the call without an agent: `<Say>`s and `<Hangup/>`, or nothing.
    Refused,
    /// The TwiML bridged the call to another number with `<Dial>`.
    Dialed,
    /// The TwiML opened a Media Stream and the agent talked with the caller.
    Streamed,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The simulated caller hung up after its script (or at the call timeout).
    Caller,
    /// The server: its TwiML ended the call, or it closed the Media Stream (hang-up or
    /// transfer).
    Agent,
}

/// The whole call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallReport {
    /// `CA…`, as sent in the webhook.
    pub call_sid: String,
    /// `AC…`, as sent in the webhook.
    pub account_sid: String,
    /// The caller's number.
    pub from: String,
    /// The number called.
    pub to: String,
    /// How the server handled the call.
    pub outcome: Outcome,
    /// Who hung up.
    pub ended_by: Party,
    /// The `<Say>` sentences Twilio spoke, in order (before and after the stream).
    pub said: Vec<String>,
    /// The number a `<Dial>` connected the caller to.
    pub dialed: Option<String>,
    /// TwiML verbs the simulator skipped because it does not model them.
    pub skipped_verbs: Vec<String>,
    /// The Media Stream, when one was opened.
    pub stream: Option<StreamReport>,
    /// The agent's greeting: the audio before the caller's first line.
    pub greeting: Option<AgentReply>,
    /// The caller's lines that were spoken, each with the agent's reply.
    pub turns: Vec<TurnReport>,
    /// How many lines the script had (more than `turns` when the agent hung up early).
    pub script_turns: usize,
    /// `clear` messages received.
    pub clears: u32,
    /// Marks echoed back to the server.
    pub marks_echoed: u32,
    /// From the webhook to the end of the call, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status of the `completed` status callback; none when disabled.
    pub status_callback_status: Option<u16>,
}

/// The Media Stream as the simulator opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// The URL from `<Stream url>`.
    pub url: String,
    /// `MZ…`, as sent in `start`.
    pub stream_sid: String,
    /// The `<Parameter>`s, sent back in `start.customParameters`.
    pub custom_parameters: BTreeMap<String, String>,
    /// 20 ms `media` frames sent (the caller's speech and the line's silence).
    pub frames_sent: u64,
}

/// One line of the caller and the agent's answer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnReport {
    /// The script's `say`.
    pub caller: String,
    /// Length of the caller's speech, in milliseconds.
    pub caller_audio_ms: u64,
    /// Whether the caller started while the agent's audio was still playing.
    pub barged_in: bool,
    /// What came back.
    pub reply: AgentReply,
}

/// The agent's audio between two lines of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentReply {
    /// Audio received, in milliseconds of μ-law.
    pub audio_ms: u64,
    /// How much of it the caller heard: `audio_ms` less what a `clear` threw away.
    pub played_ms: u64,
    /// Voice-to-voice latency: from the end of the caller's speech (for the greeting, from
    /// `start`) to the first agent audio after it. None when no audio came.
    pub voice_to_voice_ms: Option<u64>,
    /// Whether a `clear` cut this reply short (barge-in).
    pub interrupted: bool,
    /// The names of the server's marks that were echoed during this reply, in order.
    pub marks: Vec<String>,
    /// Outbound audio gaps: times the caller heard silence inside one of the agent's
    /// sentences (its audio ran out for at least 20 ms before the rest arrived).
    pub gaps: u32,
    /// The length of those silences together, in milliseconds.
    pub gap_ms: u64,
}

impl CallReport {
    /// A few lines for a person: the outcome, then per turn what was said and how fast the
    /// agent answered.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let seconds = self.duration_ms as f64 / 1000.0;
        let ender = match self.ended_by {
            Party::Caller => "the caller",
            Party::Agent => "the agent",
        };
        let _ = write!(
            out,
            "call {} from {} to {}: {}",
            self.call_sid,
            self.from,
            self.to,
            match self.outcome {
                Outcome::Refused => "refused",
                Outcome::Dialed => "dialed out",
                Outcome::Streamed => "streamed",
            }
        );
        let _ = writeln!(out, ", ended by {ender} after {seconds:.1} s");
        for sentence in &self.said {
            let _ = writeln!(out, "  twilio said: {sentence:?}");
        }
        if let Some(number) = &self.dialed {
            let _ = writeln!(out, "  dialed: {number}");
        }
        for verb in &self.skipped_verbs {
            let _ = writeln!(out, "  skipped TwiML verb <{verb}>");
        }
        if let Some(stream) = &self.stream {
            let _ = writeln!(out, "  stream {} ({})", stream.url, stream.stream_sid);
        }
        if let Some(greeting) = &self.greeting {
            let _ = writeln!(
                out,
                "  agent greeting: {}",
                reply_text(greeting, "from start")
            );
        }
        for (i, turn) in self.turns.iter().enumerate() {
            let barge = if turn.barged_in { " (barged in)" } else { "" };
            let _ = writeln!(out, "  turn {}: caller {:?}{barge}", i + 1, turn.caller);
            let _ = writeln!(
                out,
                "    agent: {}",
                reply_text(&turn.reply, "voice-to-voice")
            );
        }
        if self.turns.len() < self.script_turns {
            let _ = writeln!(
                out,
                "  {} of {} caller lines were spoken",
                self.turns.len(),
                self.script_turns
            );
        }
        if self.stream.is_some() {
            let _ = writeln!(
                out,
                "  {} clear(s), {} mark(s) echoed",
                self.clears, self.marks_echoed
            );
        }
        out
    }
}

fn reply_text(reply: &AgentReply, latency_label: &str) -> String {
    if reply.audio_ms == 0 {
        return "no audio".to_owned();
    }
    let mut text = format!("{:.2} s of audio", reply.audio_ms as f64 / 1000.0);
    if let Some(ms) = reply.voice_to_voice_ms {
        let _ = write!(text, ", {latency_label} {ms} ms");
    }
    if reply.interrupted {
        let _ = write!(
            text,
            ", interrupted after {:.2} s",
            reply.played_ms as f64 / 1000.0
        );
    }
    if reply.gaps > 0 {
        let _ = write!(
            text,
            ", {} gap(s) of silence mid-sentence ({} ms)",
            reply.gaps, reply.gap_ms
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CallReport {
        CallReport {
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            outcome: Outcome::Streamed,
            ended_by: Party::Caller,
            said: vec![],
            dialed: None,
            skipped_verbs: vec![],
            stream: Some(StreamReport {
                url: "ws://127.0.0.1:1/twilio/media".into(),
                stream_sid: "MZ1".into(),
                custom_parameters: BTreeMap::new(),
                frames_sent: 100,
            }),
            greeting: Some(AgentReply {
                audio_ms: 1500,
                played_ms: 1500,
                voice_to_voice_ms: Some(420),
                interrupted: false,
                marks: vec!["g".into()],
                gaps: 0,
                gap_ms: 0,
            }),
            turns: vec![TurnReport {
                caller: "Book a table".into(),
                caller_audio_ms: 700,
                barged_in: true,
                reply: AgentReply {
                    audio_ms: 2000,
                    played_ms: 600,
                    voice_to_voice_ms: Some(910),
                    interrupted: true,
                    marks: vec![],
                    gaps: 2,
                    gap_ms: 70,
                },
            }],
            script_turns: 2,
            clears: 1,
            marks_echoed: 1,
            duration_ms: 5300,
            status_callback_status: Some(204),
        }
    }

    #[test]
    fn the_text_report_shows_each_turn_with_its_latency() {
        let text = report().to_text();
        assert!(
            text.starts_with("call CA1 from +15550001111 to +15550002222: streamed"),
            "{text}"
        );
        assert!(text.contains("ended by the caller after 5.3 s"), "{text}");
        assert!(text.contains("agent greeting: 1.50 s of audio, from start 420 ms"));
        assert!(text.contains("turn 1: caller \"Book a table\" (barged in)"));
        assert!(text
            .contains("agent: 2.00 s of audio, voice-to-voice 910 ms, interrupted after 0.60 s, 2 gap(s) of silence mid-sentence (70 ms)"));
        assert!(text.contains("1 of 2 caller lines were spoken"));
        assert!(text.contains("1 clear(s), 1 mark(s) echoed"));
    }

    #[test]
    fn the_json_report_uses_snake_case_names() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["outcome"], "streamed");
        assert_eq!(json["ended_by"], "caller");
        assert_eq!(json["turns"][0]["reply"]["voice_to_voice_ms"], 910);
        assert_eq!(json["greeting"]["marks"][0], "g");
    }
}
