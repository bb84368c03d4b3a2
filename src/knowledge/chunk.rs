//! Cutting an [`Extracted`] document into the pieces that are embedded and searched.
//!
//! A chunk never spans two sections or two pages, so its location is exact; it starts with
//! the heading path of its section (or the document title), so a chunk read alone by the
//! model, or matched by words, still says what it is about. Inside a section, paragraphs are
//! packed up to [`ChunkSettings::target_tokens`]; a section too long for one chunk is cut at
//! paragraph or word boundaries, and each following chunk repeats the last
//! [`ChunkSettings::overlap_tokens`] of the one before so a fact on the cut is whole in one
//! of them. Tokens are estimated as the conversation budget does (`chars / 4`). The output
//! depends only on the input.

use super::extract::{Block, Extracted};

/// Characters per token, as `actors::conversation::estimate_tokens` counts them (a test
/// keeps the two in step).
const CHARS_PER_TOKEN: usize = 4;

/// How big chunks are.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSettings {
    /// Tokens of new text per chunk (heading and overlap come on top).
    pub target_tokens: usize,
    /// Tokens repeated from the previous chunk of the same section.
    pub overlap_tokens: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self {
            target_tokens: 400,
            overlap_tokens: 50,
        }
    }
}

/// A piece of a document, ready to be stored for search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The text: the section heading path (or the document title) on the first line, then
    /// the body.
    pub text: String,
    /// Where it came from, for citing: "page 2", "Pricing › Plans", "page 2, Pricing", or
    /// empty for a document with neither pages nor headings.
    pub location: String,
    /// Its position in the document, from 0.
    pub ordinal: u32,
}

/// Cuts `doc` into chunks, in document order.
pub fn chunk(document_title: &str, doc: &Extracted, settings: ChunkSettings) -> Vec<Chunk> {
    let target = settings.target_tokens.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < doc.blocks.len() {
        let first = &doc.blocks[start];
        let end = start
            + doc.blocks[start..]
                .iter()
                .position(|b| b.is_heading || b.page != first.page || b.section != first.section)
                .map_or(doc.blocks.len() - start, |n| n.max(1));
        let body: Vec<&Block> = doc.blocks[start..end]
            .iter()
            .filter(|b| !b.is_heading)
            .collect();
        if !body.is_empty() {
            let header = first.section.as_deref().unwrap_or(document_title).trim();
            let location = location(first.page, first.section.as_deref());
            for text in pack(&body, target, settings.overlap_tokens) {
                let text = if header.is_empty() {
                    text
                } else {
                    format!("{header}\n\n{text}")
                };
                chunks.push(Chunk {
                    text,
                    location: location.clone(),
                    ordinal: chunks.len() as u32,
                });
            }
        }
        start = end;
    }
    chunks
}

fn location(page: Option<u32>, section: Option<&str>) -> String {
    match (page, section) {
        (Some(p), Some(s)) => format!("page {p}, {s}"),
        (Some(p), None) => format!("page {p}"),
        (None, Some(s)) => s.to_string(),
        (None, None) => String::new(),
    }
}

/// Packs the paragraphs of one section into bodies of about `target` tokens of new text,
/// each after the first opening with the tail of the one before. Counts characters (cheap on
/// long sections) at [`CHARS_PER_TOKEN`], the ratio `estimate_tokens` uses.
fn pack(paragraphs: &[&Block], target: usize, overlap: usize) -> Vec<String> {
    let max_chars = target * CHARS_PER_TOKEN;
    let mut bodies = Vec::new();
    let mut current = String::new();
    // Characters of `current` that are new, not carried over, separators included.
    let mut fresh = 0;
    let mut emit = |current: &mut String, fresh: &mut usize| {
        if *fresh > 0 {
            let tail = tail_words(current, overlap * CHARS_PER_TOKEN);
            bodies.push(std::mem::replace(current, tail));
            *fresh = 0;
        }
    };
    for p in paragraphs {
        let len = p.text.chars().count() + 2;
        if fresh > 0 && fresh + len > max_chars {
            emit(&mut current, &mut fresh);
        }
        if len <= max_chars {
            push_part(&mut current, &p.text, "\n\n");
            fresh += len;
            continue;
        }
        // A paragraph longer than a chunk: cut between words.
        let mut sep = "\n\n";
        for word in words(&p.text, max_chars) {
            let len = word.chars().count() + sep.len();
            if fresh > 0 && fresh + len > max_chars {
                emit(&mut current, &mut fresh);
                sep = "\n\n";
            }
            push_part(&mut current, word, sep);
            fresh += len;
            sep = " ";
        }
    }
    emit(&mut current, &mut fresh);
    bodies
}

fn push_part(current: &mut String, part: &str, sep: &str) {
    if !current.is_empty() {
        current.push_str(sep);
    }
    current.push_str(part);
}

/// The words of `text`; a "word" longer than a whole chunk (a pasted blob) is the one
/// thing cut inside, at character boundaries.
fn words(text: &str, max_chars: usize) -> impl Iterator<Item = &str> {
    text.split_whitespace().flat_map(move |word| {
        let mut pieces = Vec::new();
        let mut start = 0;
        for (n, (i, _)) in word.char_indices().enumerate() {
            if n > 0 && n % max_chars == 0 {
                pieces.push(&word[start..i]);
                start = i;
            }
        }
        pieces.push(&word[start..]);
        pieces
    })
}

/// The last whole words of `text` that fit in `max_chars`.
fn tail_words(text: &str, max_chars: usize) -> String {
    let mut taken: Vec<&str> = Vec::new();
    let mut chars = 0;
    for word in text.split_whitespace().rev() {
        let len = word.chars().count() + usize::from(!taken.is_empty());
        if chars + len > max_chars {
            break;
        }
        chars += len;
        taken.push(word);
    }
    taken.reverse();
    taken.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::extract::DocKind;
    use actors::conversation::estimate_tokens;

    #[test]
    fn characters_per_token_match_the_conversation_estimate() {
        assert_eq!(estimate_tokens(&"x".repeat(CHARS_PER_TOKEN * 10)), 10);
    }

    fn block(text: &str, page: Option<u32>, section: Option<&str>, is_heading: bool) -> Block {
        Block {
            text: text.into(),
            page,
            section: section.map(Into::into),
            is_heading,
        }
    }

    fn doc(blocks: Vec<Block>) -> Extracted {
        Extracted {
            kind: DocKind::Markdown,
            pages: None,
            blocks,
        }
    }

    #[test]
    fn short_sections_become_one_chunk_each_with_their_heading() {
        let d = doc(vec![
            block("Preamble text.", None, None, false),
            block("Pricing", None, Some("Pricing"), true),
            block("Gold costs 10.", None, Some("Pricing"), false),
            block("Silver costs 5.", None, Some("Pricing"), false),
            block("Plans", None, Some("Pricing › Plans"), true),
            block("Monthly only.", None, Some("Pricing › Plans"), false),
        ]);
        let got = chunk("Price list", &d, ChunkSettings::default());
        let view: Vec<(&str, &str, u32)> = got
            .iter()
            .map(|c| (c.text.as_str(), c.location.as_str(), c.ordinal))
            .collect();
        assert_eq!(
            view,
            [
                ("Price list\n\nPreamble text.", "", 0),
                ("Pricing\n\nGold costs 10.\n\nSilver costs 5.", "Pricing", 1),
                ("Pricing › Plans\n\nMonthly only.", "Pricing › Plans", 2),
            ]
        );
    }

    #[test]
    fn pages_are_never_mixed_and_are_named() {
        let mut d = doc(vec![
            block("One.", Some(1), None, false),
            block("Two.", Some(2), None, false),
        ]);
        d.kind = DocKind::Pdf;
        let got = chunk("Manual", &d, ChunkSettings::default());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].location, "page 2");
        assert_eq!(got[1].text, "Manual\n\nTwo.");
    }

    #[test]
    fn long_sections_are_cut_between_words_with_overlap() {
        // 1,000 distinct words of 7 characters (8 with the space): about 2,000 tokens.
        let text: Vec<String> = (0..1000).map(|i| format!("w{i:06}")).collect();
        let d = doc(vec![
            block("Terms", None, Some("Terms"), true),
            block(&text.join(" "), None, Some("Terms"), false),
        ]);
        let settings = ChunkSettings::default();
        let got = chunk("T", &d, settings);
        assert!(got.len() >= 5, "{} chunks", got.len());
        let header = estimate_tokens("Terms\n\n");
        for c in &got {
            assert!(c.text.starts_with("Terms\n\n"));
            assert!(
                estimate_tokens(&c.text)
                    <= settings.target_tokens + settings.overlap_tokens + header + 1,
                "chunk of {} tokens",
                estimate_tokens(&c.text)
            );
            // Whole words only.
            assert!(c.text["Terms\n\n".len()..]
                .split_whitespace()
                .all(|w| w.len() == 7 && w.starts_with('w')));
        }
        for pair in got.windows(2) {
            // After the heading, the next chunk repeats ~50 tokens (25 words of 8 chars)
            // from the end of the one before.
            let first: Vec<&str> = pair[0].text.split_whitespace().collect();
            let second: Vec<&str> = pair[1].text.split_whitespace().collect();
            let last = first.last().unwrap();
            let at = second.iter().position(|w| w == last).expect("no overlap");
            assert!((20..=25).contains(&at), "overlap of {at} words");
            assert_eq!(&second[1..=at], &first[first.len() - at..]);
        }
        // Every word made it into some chunk.
        let all: String = got.iter().map(|c| c.text.as_str()).collect();
        assert!(text.iter().all(|w| all.contains(w.as_str())));
    }

    #[test]
    fn a_heading_with_no_body_makes_no_chunk() {
        let d = doc(vec![
            block("A", None, Some("A"), true),
            block("B", None, Some("A › B"), true),
            block("Body.", None, Some("A › B"), false),
        ]);
        let got = chunk("T", &d, ChunkSettings::default());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].location, "A › B");
    }

    #[test]
    fn a_giant_word_is_still_cut_to_size() {
        let blob = "x".repeat(10_000);
        let d = doc(vec![block(&blob, None, None, false)]);
        let got = chunk("", &d, ChunkSettings::default());
        assert!(got.iter().all(|c| estimate_tokens(&c.text) <= 450));
        assert!(got.iter().map(|c| c.text.len()).sum::<usize>() >= 10_000);
    }
}
