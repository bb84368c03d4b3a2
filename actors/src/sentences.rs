//! Splitting a streamed reply into sentences, so speech can start as soon as the first
//! sentence is complete instead of after the whole reply.

/// Abbreviations that end with a period but not a sentence.
const ABBREVIATIONS: [&str; 12] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "approx",
];

/// Shortest text worth sending to TTS on its own; shorter pieces wait for more words, so
/// "Hi." does not become a separate request with its own latency.
const MIN_SENTENCE_CHARS: usize = 12;

/// Collects streamed text and hands out complete sentences.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    pending: String,
}

impl SentenceSplitter {
    /// Adds streamed text; returns the sentences it completed, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut done = Vec::new();
        while let Some(end) = self.sentence_end() {
            let sentence: String = self.pending.drain(..end).collect();
            let sentence = sentence.trim().to_owned();
            if !sentence.is_empty() {
                done.push(sentence);
            }
        }
        done
    }

    /// The rest of the reply, once the stream has ended.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }

    /// Byte index just past the first sentence end that is followed by white space (so a
    /// stream cut mid-number like "3.5" waits for more), is not an abbreviation, and leaves
    /// a sentence of at least [`MIN_SENTENCE_CHARS`].
    fn sentence_end(&self) -> Option<usize> {
        let text = &self.pending;
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            let boundary = match c {
                '\n' => true,
                '.' | '!' | '?' | ';' | ':' => next.is_some_and(char::is_whitespace),
                _ => false,
            };
            if !boundary {
                continue;
            }
            let end = i + c.len_utf8();
            let candidate = text[..end].trim();
            if candidate.chars().count() < MIN_SENTENCE_CHARS && c != '\n' {
                continue;
            }
            if c == '.' {
                let last_word = candidate
                    .trim_end_matches('.')
                    .rsplit(char::is_whitespace)
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                if ABBREVIATIONS.contains(&last_word.as_str()) {
                    continue;
                }
            }
            return Some(end);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str]) -> Vec<String> {
        let mut splitter = SentenceSplitter::default();
        let mut out: Vec<String> = pieces.iter().flat_map(|p| splitter.push(p)).collect();
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn sentences_come_out_as_soon_as_they_are_complete() {
        let mut splitter = SentenceSplitter::default();
        assert!(splitter.push("Sure, I can help").is_empty());
        assert_eq!(
            splitter.push(" with that. What d"),
            ["Sure, I can help with that."]
        );
        assert_eq!(splitter.finish().as_deref(), Some("What d"));
    }

    #[test]
    fn abbreviations_decimals_and_short_bits_do_not_split() {
        assert_eq!(
            split(&[
                "Dr. Smith sees you at 3.30 on Tuesday. ",
                "Ok! Is that fine? Great."
            ]),
            [
                "Dr. Smith sees you at 3.30 on Tuesday.",
                "Ok! Is that fine?",
                "Great."
            ]
        );
    }

    #[test]
    fn token_by_token_streaming_gives_the_same_sentences() {
        let text = "Your car is ready. The total is $240, and we're open until six! Anything else?";
        let tokens: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        assert_eq!(
            split(&refs),
            [
                "Your car is ready.",
                "The total is $240, and we're open until six!",
                "Anything else?"
            ]
        );
    }
}
