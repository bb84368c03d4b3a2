//! The simulated caller's turn-taking: when to listen, when to pause, when to speak (or barge
//! in), and when to hang up; and the per-turn measurements (voice-to-voice latency, how much
//! agent audio came and how much of it a `clear` cut).
//!
//! Like [`super::playback`], it is pure: the stream loop calls [`Dialogue::next_frame`] every
//! 20 ms and reports what the server sent, each with the time since the stream started, so
//! the whole conversation logic is unit-tested on a simulated clock.

use std::sync::Arc;
use std::time::Duration;

use super::playback::Playback;
use super::report::{AgentReply, TurnReport};
use super::script::{silence_payload, PreparedTurn};

/// How patient the caller is (from the script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Wait for the greeting before the first line.
    pub wait_for_greeting: bool,
    /// Quiet after the agent's audio has played that ends its turn.
    pub agent_quiet: Duration,
    /// Wait for a reply to begin before going on without it.
    pub reply_timeout: Duration,
}

/// What the caller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the agent's reply to begin and then to finish; `since` is when the caller
    /// stopped speaking (or the stream started).
    Listening { since: Duration },
    /// The silence before the next line, which began at `since`.
    Pausing { since: Duration, until: Duration },
    /// Sending the frames of the line being spoken; `frame` is the next one.
    Speaking { frame: usize },
    /// The script is over: hang up.
    Done,
}

/// What happened in one agent reply (index 0: the greeting; `i + 1`: the reply to line `i`).
#[derive(Debug, Clone, Default)]
struct ReplyLog {
    /// When the caller stopped speaking before it (stream start for the greeting).
    reference: Option<Duration>,
    /// When its first audio arrived.
    first_audio: Option<Duration>,
    /// When its latest audio arrived.
    last_audio: Option<Duration>,
    /// μ-law bytes received.
    bytes: u64,
    /// Unplayed audio a `clear` threw away.
    dropped: Duration,
    /// Whether a `clear` cut it.
    interrupted: bool,
    /// Marks the server sent during it.
    marks: Vec<String>,
    /// Silences heard inside its sentences: how many, and how long in all.
    gaps: u32,
    gap: Duration,
}

impl ReplyLog {
    fn report(&self) -> AgentReply {
        let audio_ms = self.bytes / 8;
        let dropped_ms = u64::try_from(self.dropped.as_millis()).unwrap_or(u64::MAX);
        AgentReply {
            audio_ms,
            played_ms: audio_ms.saturating_sub(dropped_ms),
            voice_to_voice_ms: match (self.reference, self.first_audio) {
                (Some(stop), Some(first)) => {
                    Some(u64::try_from(first.saturating_sub(stop).as_millis()).unwrap_or(u64::MAX))
                }
                _ => None,
            },
            interrupted: self.interrupted,
            marks: self.marks.clone(),
            gaps: self.gaps,
            gap_ms: u64::try_from(self.gap.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The caller's side of a streamed conversation.
#[derive(Debug)]
pub(crate) struct Dialogue {
    turns: Arc<[PreparedTurn]>,
    timing: Timing,
    playback: Playback,
    /// One per reply: the greeting, then one after each line.
    replies: Vec<ReplyLog>,
    /// For each line started so far: whether it started over the agent's audio.
    barged_in: Vec<bool>,
    /// The reply incoming audio belongs to.
    current: usize,
    phase: Phase,
    clears: u32,
    marks_echoed: u32,
}

/// The caller's lines and the agent's replies, measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialogueReport {
    pub greeting: AgentReply,
    pub turns: Vec<TurnReport>,
    pub clears: u32,
    pub marks_echoed: u32,
}

impl Dialogue {
    /// A caller about to say `turns`, with the stream starting at time zero.
    pub fn new(turns: Arc<[PreparedTurn]>, timing: Timing) -> Self {
        let mut replies = vec![ReplyLog::default(); turns.len() + 1];
        replies[0].reference = Some(Duration::ZERO);
        let phase = match turns.first() {
            _ if timing.wait_for_greeting => Phase::Listening {
                since: Duration::ZERO,
            },
            Some(first) => Phase::Pausing {
                since: Duration::ZERO,
                until: first.pause,
            },
            None => Phase::Done,
        };
        Self {
            turns,
            timing,
            playback: Playback::default(),
            replies,
            barged_in: Vec::new(),
            current: 0,
            phase,
            clears: 0,
            marks_echoed: 0,
        }
    }

    /// The 20 ms frame to send at `now`, as its base64 payload: the line being spoken, or
    /// the line's silence.
    pub fn next_frame(&mut self, now: Duration) -> &str {
        self.advance(now);
        let Phase::Speaking { frame } = self.phase else {
            return silence_payload();
        };
        let line = self.barged_in.len() - 1;
        if frame + 1 >= self.turns[line].frames() {
            // The caller stops speaking as this last frame goes out.
            self.current = line + 1;
            self.replies[self.current].reference = Some(now);
            self.phase = Phase::Listening { since: now };
        } else {
            self.phase = Phase::Speaking { frame: frame + 1 };
        }
        self.turns[line].payload(frame)
    }

    /// Whether the script is over and the caller should hang up (checked after each frame).
    pub fn wants_hang_up(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The server sent `bytes` of μ-law audio at `now`.
    pub fn on_media(&mut self, now: Duration, bytes: usize) {
        let reply = &mut self.replies[self.current];
        reply.first_audio.get_or_insert(now);
        reply.last_audio = Some(now);
        reply.bytes += bytes as u64;
        // 8000 bytes a second: 125 µs a byte.
        let length = Duration::from_micros(bytes as u64 * 125);
        if let Some(gap) = self.playback.queue_audio(now, length, self.current) {
            reply.gaps += 1;
            reply.gap += gap;
        }
    }

    /// The server sent a mark at `now`; collect it with [`Dialogue::take_due_marks`].
    pub fn on_mark(&mut self, now: Duration, name: String) {
        self.replies[self.current].marks.push(name.clone());
        self.playback.queue_mark(now, name);
    }

    /// The server sent `clear` at `now`: returns the marks to echo at once.
    pub fn on_clear(&mut self, now: Duration) -> Vec<String> {
        self.clears += 1;
        let cleared = self.playback.clear(now);
        for (owner, dropped) in cleared.dropped {
            let reply = &mut self.replies[owner];
            reply.dropped += dropped;
            reply.interrupted = true;
        }
        self.marks_echoed += cleared.marks.len() as u32;
        cleared.marks
    }

    /// Marks whose audio has played by `now`, to echo in order.
    pub fn take_due_marks(&mut self, now: Duration) -> Vec<String> {
        let due = self.playback.take_due_marks(now);
        self.marks_echoed += due.len() as u32;
        due
    }

    /// When the next mark falls due, so the loop can echo it on time.
    pub fn next_mark_due(&self) -> Option<Duration> {
        self.playback.next_mark_due()
    }

    /// The measurements so far: the greeting and every line started.
    pub fn report(&self) -> DialogueReport {
        DialogueReport {
            greeting: self.replies[0].report(),
            turns: self
                .barged_in
                .iter()
                .enumerate()
                .map(|(i, &barged_in)| TurnReport {
                    caller: self.turns[i].say.clone(),
                    caller_audio_ms: self.turns[i].audio_ms(),
                    barged_in,
                    reply: self.replies[i + 1].report(),
                })
                .collect(),
            clears: self.clears,
            marks_echoed: self.marks_echoed,
        }
    }

    /// Moves through the phases whose conditions hold at `now`.
    fn advance(&mut self, now: Duration) {
        loop {
            let next = self.barged_in.len();
            match self.phase {
                Phase::Listening { since } => {
                    let reply = &self.replies[self.current];
                    let barge_in = self
                        .turns
                        .get(next)
                        .and_then(|t| t.barge_in_after)
                        .zip(reply.first_audio)
                        .is_some_and(|(after, first)| now >= first + after);
                    if barge_in {
                        self.start_line(now);
                        return;
                    }
                    let finished = match reply.last_audio {
                        Some(last) => {
                            now >= self.playback.queue_end().max(last) + self.timing.agent_quiet
                        }
                        None => now >= since + self.timing.reply_timeout,
                    };
                    if !finished {
                        return;
                    }
                    self.phase = match self.turns.get(next) {
                        Some(turn) => Phase::Pausing {
                            since: now,
                            until: now + turn.pause,
                        },
                        None => Phase::Done,
                    };
                }
                Phase::Pausing { since, until } => {
                    let agent_resumed = self.replies[self.current]
                        .last_audio
                        .is_some_and(|last| last >= since);
                    if agent_resumed {
                        // The agent was not done after all: listen again, as a person would.
                        self.phase = Phase::Listening { since: now };
                        return;
                    }
                    if now >= until {
                        self.start_line(now);
                    }
                    return;
                }
                Phase::Speaking { .. } | Phase::Done => return,
            }
        }
    }

    fn start_line(&mut self, now: Duration) {
        self.barged_in.push(self.playback.is_playing(now));
        self.phase = Phase::Speaking { frame: 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::media::FRAME_BYTES;

    const TICK: Duration = Duration::from_millis(20);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn line(frames: usize, pause_ms: u64, barge_in_after_ms: Option<u64>) -> PreparedTurn {
        PreparedTurn::new(
            format!("{frames} frames"),
            vec![0x10; frames * FRAME_BYTES],
            ms(pause_ms),
            barge_in_after_ms.map(ms),
        )
    }

    fn timing() -> Timing {
        Timing {
            wait_for_greeting: true,
            agent_quiet: ms(200),
            reply_timeout: ms(1000),
        }
    }

    /// Drives the dialogue tick by tick; `agent(now)` gives the bytes the server sends
    /// just before each tick. Returns the time of each speech frame, and when it hung up.
    fn run(
        dialogue: &mut Dialogue,
        mut agent: impl FnMut(Duration, &mut Dialogue),
    ) -> (Vec<Duration>, Duration) {
        let mut speech = Vec::new();
        let mut now = Duration::ZERO;
        while now < ms(20_000) {
            now += TICK;
            agent(now, dialogue);
            if dialogue.next_frame(now) != silence_payload() {
                speech.push(now);
            }
            if dialogue.wants_hang_up() {
                return (speech, now);
            }
        }
        panic!("the dialogue never hung up");
    }

    #[test]
    fn the_caller_waits_for_the_greeting_speaks_and_hangs_up_after_the_reply() {
        let mut d = Dialogue::new(vec![line(10, 300, None)].into(), timing());
        let (speech, hung_up) = run(&mut d, |now, d| {
            // A 1 s greeting arrives at 400 ms; a 0.5 s reply 700 ms after the caller stops.
            if now == ms(400) {
                d.on_media(now, 8000);
            }
            if now == ms(2420) {
                d.on_media(now, 4000);
            }
        });
        // Greeting plays until 1400, quiet until 1600, pause until 1900: speech 1900..2080.
        assert_eq!(speech.first(), Some(&ms(1900)));
        assert_eq!(speech.len(), 10);
        assert_eq!(speech.last(), Some(&ms(2080)));
        // Reply plays 2420..2920, quiet until 3120.
        assert_eq!(hung_up, ms(3120));
        let report = d.report();
        assert_eq!(report.greeting.voice_to_voice_ms, Some(400));
        assert_eq!(report.greeting.audio_ms, 1000);
        assert_eq!(report.turns.len(), 1);
        let turn = &report.turns[0];
        assert!(!turn.barged_in);
        assert_eq!(turn.caller_audio_ms, 200);
        assert_eq!(turn.reply.voice_to_voice_ms, Some(340));
        assert_eq!((turn.reply.audio_ms, turn.reply.played_ms), (500, 500));
        assert!(!turn.reply.interrupted);
    }

    #[test]
    fn a_barge_in_line_starts_over_the_reply_and_a_clear_marks_it_interrupted() {
        let mut d = Dialogue::new(
            vec![line(5, 0, None), line(5, 300, Some(200))].into(),
            Timing {
                wait_for_greeting: false,
                ..timing()
            },
        );
        let mut reply_at = None;
        let mut cleared = Vec::new();
        let (speech, _) = run(&mut d, |now, d| {
            // A 2 s reply starts 100 ms after the first line ends (at 100 ms).
            if reply_at.is_none() && now == ms(200) {
                reply_at = Some(now);
                d.on_media(now, 16_000);
                d.on_mark(now, "reply-1".into());
            }
            // The server hears the barge-in 100 ms into it and clears.
            if now == ms(500) {
                cleared = d.on_clear(now);
            }
        });
        assert_eq!(cleared, vec!["reply-1"]);
        // First line 20..100; second starts 200 ms after the reply began, not after it ends.
        assert_eq!(speech[..5], [ms(20), ms(40), ms(60), ms(80), ms(100)]);
        assert_eq!(speech[5], ms(400));
        let report = d.report();
        let first = &report.turns[0];
        assert_eq!(first.reply.voice_to_voice_ms, Some(100));
        assert!(first.reply.interrupted);
        assert_eq!(first.reply.audio_ms, 2000);
        assert_eq!(first.reply.played_ms, 300);
        assert_eq!(first.reply.marks, vec!["reply-1"]);
        assert!(report.turns[1].barged_in);
        assert_eq!(report.turns[1].reply.voice_to_voice_ms, None);
        assert_eq!((report.clears, report.marks_echoed), (1, 1));
    }

    #[test]
    fn without_a_reply_the_caller_goes_on_after_the_reply_timeout() {
        let mut d = Dialogue::new(vec![line(1, 0, None)].into(), timing());
        let (speech, hung_up) = run(&mut d, |_, _| {});
        assert_eq!(speech, vec![ms(1000)]);
        assert_eq!(hung_up, ms(2000));
        let report = d.report();
        assert_eq!(report.greeting, AgentReply::default());
        assert_eq!(report.turns[0].reply.voice_to_voice_ms, None);
    }

    #[test]
    fn the_caller_listens_again_when_the_agent_resumes_during_the_pause() {
        let mut d = Dialogue::new(vec![line(1, 500, None)].into(), timing());
        let (speech, _) = run(&mut d, |now, d| {
            if now == ms(100) || now == ms(600) {
                // 100 ms of greeting, then more after the quiet (100..200, quiet to 400).
                d.on_media(now, 800);
            }
        });
        // Second piece plays 600..700, quiet to 900, pause to 1400.
        assert_eq!(speech, vec![ms(1400)]);
        assert_eq!(d.report().greeting.audio_ms, 200);
    }

    #[test]
    fn marks_fall_due_as_the_audio_before_them_plays() {
        let mut d = Dialogue::new(Vec::new().into(), timing());
        d.on_media(ms(0), 800);
        d.on_mark(ms(0), "m".into());
        assert_eq!(d.next_mark_due(), Some(ms(100)));
        assert!(d.take_due_marks(ms(99)).is_empty());
        assert_eq!(d.take_due_marks(ms(100)), vec!["m"]);
        assert_eq!(d.report().marks_echoed, 1);
    }

    #[test]
    fn no_lines_and_no_greeting_wait_hangs_up_at_once() {
        let mut d = Dialogue::new(
            Vec::new().into(),
            Timing {
                wait_for_greeting: false,
                ..timing()
            },
        );
        assert!(d.wants_hang_up());
        assert_eq!(d.next_frame(TICK), silence_payload());
    }
}
