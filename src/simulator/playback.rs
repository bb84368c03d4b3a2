//! Twilio's playback of what the server sends, as a model: the caller's phone plays queued
//! audio in real time, a `mark` comes back once everything queued before it has played, and
//! `clear` throws away what has not played yet and returns the pending marks at once
//! (PROTOCOLS.md §3.3).
//!
//! Time is passed in (a [`Duration`] since the stream started) rather than read from a clock,
//! so the model is exact and unit-tested without sleeping. Each piece of audio carries an
//! owner, the index of the agent reply it belongs to, so a `clear` can say whose audio it cut.
//!
//! The server puts a mark after each sentence, so audio since the last mark is a sentence
//! still being spoken: when its next piece arrives after the line has gone quiet, the caller
//! heard a gap inside the sentence ([`Playback::queue_audio`] returns it).

use std::collections::VecDeque;
use std::time::Duration;

/// One queued piece of audio: when it starts and stops playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: Duration,
    end: Duration,
    owner: usize,
}

/// A mark waiting for the audio before it to play out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingMark {
    name: String,
    due: Duration,
}

/// What a `clear` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Cleared {
    /// Unplayed audio thrown away, per owner, in queue order.
    pub dropped: Vec<(usize, Duration)>,
    /// Marks to echo now, in the order they were sent.
    pub marks: Vec<String>,
}

/// The playback queue of one call.
#[derive(Debug, Default)]
pub(crate) struct Playback {
    /// Audio not yet finished playing, in order, back to back or with gaps.
    segments: VecDeque<Segment>,
    /// Marks not yet echoed, in order; their due times never decrease.
    marks: VecDeque<PendingMark>,
    /// When everything queued so far will have played.
    queue_end: Duration,
    /// Audio has come since the last mark (or `clear`): a sentence is under way.
    in_sentence: bool,
}

/// Silence shorter than one 20 ms frame is not heard as a gap: the phone network's own
/// jitter buffer absorbs it.
pub(crate) const AUDIBLE_GAP: Duration = Duration::from_millis(20);

impl Playback {
    /// Queues `length` of audio received at `now`: it plays after what is already queued, or
    /// at once when the line is idle. Returns the silence the caller heard before it when it
    /// continues a sentence that ran dry for at least [`AUDIBLE_GAP`].
    pub fn queue_audio(
        &mut self,
        now: Duration,
        length: Duration,
        owner: usize,
    ) -> Option<Duration> {
        if length.is_zero() {
            return None;
        }
        let gap = now.saturating_sub(self.queue_end);
        let heard_gap = (self.in_sentence && gap >= AUDIBLE_GAP).then_some(gap);
        self.in_sentence = true;
        let start = self.queue_end.max(now);
        self.queue_end = start + length;
        self.segments.push_back(Segment {
            start,
            end: self.queue_end,
            owner,
        });
        heard_gap
    }

    /// Queues a mark received at `now`, due when the audio queued before it has played (at
    /// once if none is left; collect it with [`Playback::take_due_marks`]).
    pub fn queue_mark(&mut self, now: Duration, name: String) {
        let due = self.queue_end.max(now);
        self.in_sentence = false;
        self.marks.push_back(PendingMark { name, due });
    }

    /// The marks due by `now`, to echo in order; also forgets audio that has finished.
    pub fn take_due_marks(&mut self, now: Duration) -> Vec<String> {
        while self.segments.front().is_some_and(|s| s.end <= now) {
            self.segments.pop_front();
        }
        let mut due = Vec::new();
        while self.marks.front().is_some_and(|m| m.due <= now) {
            if let Some(mark) = self.marks.pop_front() {
                due.push(mark.name);
            }
        }
        due
    }

    /// When the next pending mark falls due, for the caller's timer.
    pub fn next_mark_due(&self) -> Option<Duration> {
        self.marks.front().map(|m| m.due)
    }

    /// Drops all audio not yet played at `now` and returns every pending mark.
    pub fn clear(&mut self, now: Duration) -> Cleared {
        let mut cleared = Cleared::default();
        for segment in self.segments.drain(..) {
            if segment.end <= now {
                continue;
            }
            let unplayed = segment.end - segment.start.max(now);
            match cleared.dropped.last_mut() {
                Some((owner, total)) if *owner == segment.owner => *total += unplayed,
                _ => cleared.dropped.push((segment.owner, unplayed)),
            }
        }
        cleared.marks = self.marks.drain(..).map(|m| m.name).collect();
        self.queue_end = self.queue_end.min(now);
        self.in_sentence = false;
        cleared
    }

    /// Whether audio is playing at `now`.
    pub fn is_playing(&self, now: Duration) -> bool {
        self.queue_end > now
    }

    /// When everything queued so far will have played (in the past when idle).
    pub fn queue_end(&self) -> Duration {
        self.queue_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn audio_queues_back_to_back_and_plays_in_real_time() {
        let mut p = Playback::default();
        p.queue_audio(ms(100), ms(1000), 0);
        p.queue_audio(ms(200), ms(500), 0);
        assert_eq!(p.queue_end(), ms(1600));
        assert!(p.is_playing(ms(1599)));
        assert!(!p.is_playing(ms(1600)));
        // After a gap the line is idle, and new audio starts when it arrives.
        p.queue_audio(ms(3000), ms(20), 1);
        assert_eq!(p.queue_end(), ms(3020));
    }

    #[test]
    fn a_sentence_that_runs_dry_is_a_gap_but_a_pause_between_sentences_is_not() {
        let mut p = Playback::default();
        assert_eq!(p.queue_audio(ms(0), ms(100), 0), None);
        // On time: the next piece arrives while the first still plays.
        assert_eq!(p.queue_audio(ms(90), ms(100), 0), None);
        // Late by less than a frame: absorbed.
        assert_eq!(p.queue_audio(ms(210), ms(100), 0), None);
        // Late by 50 ms inside the sentence: heard.
        assert_eq!(p.queue_audio(ms(360), ms(100), 0), Some(ms(50)));
        // The sentence ends with its mark; the next one may start after any pause.
        p.queue_mark(ms(400), "s1".into());
        assert_eq!(p.queue_audio(ms(900), ms(100), 0), None);
        // A clear ends the sentence too.
        p.clear(ms(950));
        assert_eq!(p.queue_audio(ms(2000), ms(100), 1), None);
    }

    #[test]
    fn a_mark_falls_due_when_the_audio_before_it_has_played() {
        let mut p = Playback::default();
        p.queue_audio(ms(0), ms(1000), 0);
        p.queue_mark(ms(10), "first".into());
        p.queue_audio(ms(20), ms(500), 0);
        p.queue_mark(ms(30), "second".into());
        assert_eq!(p.next_mark_due(), Some(ms(1000)));
        assert_eq!(p.take_due_marks(ms(999)), Vec::<String>::new());
        assert_eq!(p.take_due_marks(ms(1000)), vec!["first"]);
        assert_eq!(p.next_mark_due(), Some(ms(1500)));
        assert_eq!(p.take_due_marks(ms(2000)), vec!["second"]);
        assert_eq!(p.next_mark_due(), None);
    }

    #[test]
    fn a_mark_on_an_idle_line_is_due_at_once() {
        let mut p = Playback::default();
        p.queue_mark(ms(50), "now".into());
        assert_eq!(p.take_due_marks(ms(50)), vec!["now"]);
    }

    #[test]
    fn clear_drops_unplayed_audio_per_owner_and_returns_pending_marks() {
        let mut p = Playback::default();
        p.queue_audio(ms(0), ms(1000), 1);
        p.queue_mark(ms(0), "a".into());
        p.queue_audio(ms(0), ms(1000), 1);
        p.queue_mark(ms(0), "b".into());
        p.queue_audio(ms(0), ms(300), 2);
        let cleared = p.clear(ms(400));
        assert_eq!(cleared.dropped, vec![(1, ms(1600)), (2, ms(300))]);
        assert_eq!(cleared.marks, vec!["a", "b"]);
        assert!(!p.is_playing(ms(400)));
        assert_eq!(p.next_mark_due(), None);
        // New audio after the clear plays at once.
        p.queue_audio(ms(500), ms(100), 3);
        assert_eq!(p.queue_end(), ms(600));
        assert_eq!(p.clear(ms(2000)), Cleared::default());
    }
}
