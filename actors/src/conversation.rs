//! The conversation of one customer with one tenant, shared by every call and text of that
//! customer: its history, its running summary, the lead's fields, and the prompt built from
//! them for the next reply.
//!
//! One [`ConversationActor`] runs per (tenant, customer number), under the tenant's
//! supervisor. A voice call and an SMS thread of the same customer talk to the same actor, so
//! the agent remembers on the phone what was texted yesterday.
//!
//! The store is never waited on by the mailbox: every write (a line, the summary, lead fields)
//! goes to one writer task per actor through an unbounded channel, which keeps writes in the
//! order the actor made them; a stopping actor gives the queue a few seconds to drain, so the
//! actor that replaces it loads every line. Only loading the conversation in `pre_start`
//! waits, because an actor without its history is of no use; a failure there fails the start
//! and the supervisor decides.
//!
//! # Fitting the prompt
//!
//! The prompt is the system prompt (with `{{variables}}` filled), then a summary of older
//! lines if there is one, then the most recent lines verbatim, all within
//! [`PromptBudget::max_tokens`] as estimated by [`estimate_tokens`] (a character count over
//! four: no tokenizer dependency, and close enough for English to budget by). When the recent
//! lines no longer fit, the oldest of them are folded into the summary, which a deterministic
//! extractive summarizer ([`summarize`]) rebuilds from every folded line, newest kept. Because
//! the store keeps every line and the summarizer is deterministic, a restarted actor rebuilds
//! the same summary it would have had: the stored summary is a cache for readers of the store
//! (and is sent as is only until this actor folds lines itself).
//!
//! # Barge-in corrections
//!
//! The store can only append. When the caller cuts the agent off, the agent's last line is
//! corrected in memory at once and persisted as a *correction*: an appended agent voice line
//! with the same `at_ms` as the line it corrects, carrying what the caller heard (empty when
//! they heard nothing, which removes the line). [`apply_corrections`] folds corrections back
//! into their lines when a conversation is loaded; readers of the store other than this actor
//! should apply it too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use crate::domain::TenantId;
use crate::ports::{
    Channel, ChatMessage, ConversationSnapshot, ConversationStore, HistoryEntry, PortError,
    PortResult, Speaker,
};

/// Opens the system message that carries the summary of lines no longer sent in full.
pub const SUMMARY_PREFIX: &str = "Summary of earlier conversation: ";

/// Longest sentence kept per line in the summary: enough to keep the gist ("wants a quote for
/// the 2021 RAV4"), short enough that many lines fit.
const SUMMARY_LINE_CHARS: usize = 160;

/// How long a stopping actor waits for its queued writes to land, so a restarted actor
/// loads them; a store that is down does not hold a shutdown longer than this.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Marks where text was cut.
const CUT_MARK: char = '…';

/// Waits between retries of a failed write. Only unavailability and timeouts are retried;
/// three tries over a few seconds ride out a store restart without holding the queue long.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

// ---------------------------------------------------------------- pure prompt logic

/// How much of the model's context window the prompt may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Estimated tokens of the whole prompt (system prompt, summary and lines). Kept well
    /// under the model's window: a smaller prompt answers faster on a live call.
    pub max_tokens: usize,
    /// Estimated tokens of the summary message at most (less when the system prompt leaves
    /// little room: the summary never takes more than half of what remains).
    pub summary_tokens: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        Self {
            max_tokens: 3000,
            summary_tokens: 500,
        }
    }
}

/// Estimated tokens of `text`: ceil(characters / 4).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Estimated tokens of a whole prompt: the sum over its messages' texts (tool call names and
/// arguments included).
pub fn estimate_prompt_tokens(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .map(|m| match m {
            ChatMessage::System(t) | ChatMessage::User(t) => estimate_tokens(t),
            ChatMessage::Assistant { text, tool_calls } => {
                estimate_tokens(text)
                    + tool_calls
                        .iter()
                        .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments))
                        .sum::<usize>()
            }
            ChatMessage::Tool { content, .. } => estimate_tokens(content),
        })
        .sum()
}

/// Fills `{{name}}` (spaces inside the braces allowed) with `values[name]`. A well-formed
/// variable that has no value becomes an empty string, so a prompt never shows the model a
/// raw placeholder; braces that do not hold a variable name are left as written.
pub fn fill_template(template: &str, values: &BTreeMap<String, String>) -> String {
    scan_template(template, |name| values.get(name).map(String::as_str))
}

/// The variable names `template` uses, each once, in order of first use: exactly the
/// placeholders [`fill_template`] would fill.
pub fn template_variables(template: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    scan_template(template, |name| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        None
    });
    names
}

/// Copies `template`, replacing each well-formed `{{name}}` with what `value(name)` gives
/// (nothing when it gives `None`); the one parser behind filling and listing variables.
fn scan_template<'v>(template: &str, mut value: impl FnMut(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        if is_variable_name(name) {
            if let Some(filled) = value(name) {
                out.push_str(filled);
            }
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A variable name: letters, digits, `_`, `.` and `-`, at least one (lead fields must be
/// named so for templates to reach them).
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `text` cut to at most `max_tokens` estimated tokens, keeping its end (the latest words of
/// a long line are the ones the reply must answer) and marking the cut with `…`.
pub fn truncate_keep_end(text: &str, max_tokens: usize) -> String {
    let max_chars = max_tokens.saturating_mul(4);
    let len = text.chars().count();
    if len <= max_chars {
        return text.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(max_chars * 4);
    out.push(CUT_MARK);
    out.extend(text.chars().skip(len - (max_chars - 1)));
    out
}

/// `text` cut to at most `max_tokens` estimated tokens, keeping its start (instructions come
/// first in a system prompt) and marking the cut with `…`.
fn truncate_keep_start(text: &str, max_tokens: usize) -> String {
    let max_chars = max_tokens.saturating_mul(4);
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(max_chars - 1).collect();
    out.push(CUT_MARK);
    out
}

/// How a speaker is named in the summary and in transcripts given to the model.
pub fn speaker_label(speaker: Speaker) -> &'static str {
    match speaker {
        Speaker::Customer => "Customer",
        Speaker::Agent => "Agent",
        Speaker::Staff => "Staff",
    }
}

/// The summary line of one history line: `Customer: <first sentence, ≤160 chars>`, or `None`
/// for a line with no words. Reads only the first few hundred characters, however long the
/// line.
pub fn summary_line(entry: &HistoryEntry) -> Option<String> {
    // Whitespace collapsed, and no more than needed to find a sentence of the maximum length.
    let mut head = String::new();
    for word in entry.text.split_whitespace() {
        if !head.is_empty() {
            head.push(' ');
        }
        head.push_str(word);
        if head.chars().count() > SUMMARY_LINE_CHARS {
            break;
        }
    }
    if head.is_empty() {
        return None;
    }
    let sentence = first_sentence(&head);
    let sentence = if sentence.chars().count() > SUMMARY_LINE_CHARS {
        let mut cut: String = sentence.chars().take(SUMMARY_LINE_CHARS - 1).collect();
        cut.push(CUT_MARK);
        cut
    } else {
        sentence.to_owned()
    };
    Some(format!("{}: {}", speaker_label(entry.speaker), sentence))
}

/// Text up to and including the first `.`, `!` or `?` that ends a sentence (followed by a
/// space or the end), or all of it.
fn first_sentence(text: &str) -> &str {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|(_, n)| n.is_whitespace()) {
            return &text[..i + c.len_utf8()];
        }
    }
    text
}

/// Joins `lines_newest_first` (in chronological order) into as many lines as fit, newest
/// kept, so that [`SUMMARY_PREFIX`] plus the result is at most `max_tokens` estimated tokens.
/// If not even the newest line fits, its end is kept.
fn join_newest_lines(
    lines_newest_first: impl Iterator<Item = String>,
    max_tokens: usize,
) -> String {
    let prefix = SUMMARY_PREFIX.chars().count();
    let room = max_tokens.saturating_mul(4).saturating_sub(prefix);
    if room == 0 {
        return String::new();
    }
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0;
    for line in lines_newest_first {
        let cost = line.chars().count() + usize::from(!kept.is_empty());
        if used + cost > room {
            if kept.is_empty() {
                let len = line.chars().count();
                let mut cut = String::new();
                cut.push(CUT_MARK);
                cut.extend(line.chars().skip(len + 1 - room));
                kept.push(cut);
            }
            break;
        }
        used += cost;
        kept.push(line);
    }
    kept.reverse();
    kept.join("\n")
}

/// The extractive summary of `entries` (oldest first): one [`summary_line`] per line, newest
/// kept, so that the summary message fits in `max_tokens`. Deterministic, and its work is
/// bounded by `max_tokens`, not by the length of the history.
pub fn summarize(entries: &[HistoryEntry], max_tokens: usize) -> String {
    join_newest_lines(entries.iter().rev().filter_map(summary_line), max_tokens)
}

/// `summary` (lines, oldest first) cut so that the summary message fits in `max_tokens`,
/// newest lines kept. A no-op for summaries this module made under the same budget.
fn fit_summary(summary: &str, max_tokens: usize) -> String {
    join_newest_lines(
        summary
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned),
        max_tokens,
    )
}

/// A stored line of a conversation, as [`apply_corrections`] reads it: the runtime's
/// [`HistoryEntry`], or a message row of the store with its ids and delivery details.
pub trait Line {
    /// Who wrote or said it.
    fn speaker(&self) -> Speaker;
    /// Call or text.
    fn channel(&self) -> Channel;
    /// When, in Unix milliseconds: a correction carries the time of the line it corrects.
    fn at_ms(&self) -> i64;
    /// Its words.
    fn text(&self) -> &str;
    /// Replaces its words with a correction's.
    fn set_text(&mut self, text: String);
    /// Whether it carries nothing to keep (no words; a stored text may still hold pictures).
    fn is_blank(&self) -> bool {
        self.text().is_empty()
    }
}

impl Line for HistoryEntry {
    fn speaker(&self) -> Speaker {
        self.speaker
    }
    fn channel(&self) -> Channel {
        self.channel
    }
    fn at_ms(&self) -> i64 {
        self.at_ms
    }
    fn text(&self) -> &str {
        &self.text
    }
    fn set_text(&mut self, text: String) {
        self.text = text;
    }
}

/// Whether `entry` could be corrected by a barge-in: an agent line spoken on a call.
fn is_spoken_agent_line(entry: &impl Line) -> bool {
    entry.speaker() == Speaker::Agent && entry.channel() == Channel::Voice
}

/// Index of the agent's last line if only customer lines follow it and it was spoken on a
/// call: the line a barge-in cuts. (The caller's interrupting words may already follow it.)
fn last_spoken_agent_line(history: &[impl Line]) -> Option<usize> {
    let idx = history
        .iter()
        .rposition(|e| e.speaker() != Speaker::Customer)?;
    history
        .get(idx)
        .is_some_and(is_spoken_agent_line)
        .then_some(idx)
}

/// Folds barge-in corrections into the lines they correct (see the module docs): an agent
/// voice line whose `at_ms` equals that of the last agent voice line before it, with only
/// customer lines between, replaces that line's text, or removes the line when empty.
pub fn apply_corrections<L: Line>(history: Vec<L>) -> Vec<L> {
    let mut out: Vec<L> = Vec::with_capacity(history.len());
    for entry in history {
        if is_spoken_agent_line(&entry) {
            if let Some(idx) = last_spoken_agent_line(&out) {
                if out[idx].at_ms() == entry.at_ms() {
                    if entry.text().is_empty() {
                        out.remove(idx);
                    } else {
                        out[idx].set_text(entry.text().to_owned());
                    }
                    continue;
                }
            }
        }
        if !entry.is_blank() {
            out.push(entry);
        }
    }
    out
}

/// The prompt [`ConversationState::build_prompt`] made, and what to persist because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPrompt {
    /// The messages for the model, within the budget.
    pub messages: Vec<ChatMessage>,
    /// The new summary, when lines were folded into it and it changed.
    pub new_summary: Option<String>,
}

// ---------------------------------------------------------------- the actor

/// Writes the actor hands to its writer task, in order.
enum PendingWrite {
    /// A new line, or a barge-in correction.
    Append(HistoryEntry),
    /// The rebuilt summary.
    SaveSummary(String),
    /// Lead fields, with the caller waiting for the outcome.
    UpdateLead {
        fields: BTreeMap<String, String>,
        reply: RpcReplyPort<PortResult<()>>,
    },
}

/// The actor of one customer's conversation with one tenant. See the module docs.
pub struct ConversationActor;

/// What a [`ConversationActor`] starts from.
pub struct ConversationArgs {
    /// Whose customer.
    pub tenant: TenantId,
    /// The customer's number: the key of the conversation across calls and texts.
    pub customer: String,
    /// Where the conversation is loaded from and written to.
    pub store: Arc<dyn ConversationStore>,
    /// How large the prompt may be.
    pub budget: PromptBudget,
}

/// What a [`ConversationActor`] is asked.
pub enum ConversationMsg {
    /// A line was said or texted (by anyone); persisted in the background, in order.
    /// Lines with no words are ignored.
    Append(HistoryEntry),
    /// A line another part of the server already stored (a text message, with its delivery
    /// details): joins the history in memory only, so it is not written twice.
    Remember(HistoryEntry),
    /// The caller cut the agent off: its last spoken line becomes what the caller heard, or
    /// goes away when `heard` is empty. Persisted as a correction (see the module docs).
    TrimLastAgentLine {
        /// The part of the line played before the barge-in.
        heard: String,
    },
    /// Builds the prompt for the next reply.
    BuildPrompt {
        /// The agent's system prompt, with `{{variables}}`.
        system_prompt: String,
        /// Values for the variables besides the lead's fields; they win over a lead field of
        /// the same name.
        variables: BTreeMap<String, String>,
        /// The prompt, within the budget.
        reply: RpcReplyPort<Vec<ChatMessage>>,
    },
    /// Fills a template (the first message) from the lead's fields and `variables`, which
    /// win over a lead field of the same name; nothing is stored.
    Fill {
        /// Text with `{{variables}}`.
        template: String,
        /// Values besides the lead's fields.
        variables: BTreeMap<String, String>,
        /// The filled text.
        reply: RpcReplyPort<String>,
    },
    /// Sets lead fields: visible to the next prompt at once, replied to once stored.
    UpdateLead {
        /// Fields to set (others are kept).
        fields: BTreeMap<String, String>,
        /// Whether the store took them.
        reply: RpcReplyPort<PortResult<()>>,
    },
    /// The lead was changed outside the conversation (by staff): its fields replace those
    /// held, for the next prompt. Nothing is stored.
    SetLead(BTreeMap<String, String>),
    /// The conversation as the actor holds it (corrections applied).
    Snapshot(RpcReplyPort<ConversationSnapshot>),
}

/// The state of a [`ConversationActor`]: the conversation, and the queue to its writer.
pub struct ConversationState {
    /// Whose customer (for logs).
    tenant: TenantId,
    /// The lines that can still reach a prompt or its summary, oldest first, corrections
    /// applied (older ones are only in the store).
    history: Vec<HistoryEntry>,
    /// Summary of `history[..folded]` (or, until the first fold, as loaded).
    summary: String,
    /// How many of the oldest lines are folded into the summary and no longer sent. Only
    /// grows (but for removals), so the summary is rebuilt only when more lines fold.
    folded: usize,
    /// The lead's fields.
    lead: BTreeMap<String, String>,
    /// Prompt size limits.
    budget: PromptBudget,
    /// The writer task's queue; `None` in pure unit tests.
    writer: Option<mpsc::UnboundedSender<PendingWrite>>,
    /// The writer task, awaited (briefly) when the actor stops.
    writer_task: Option<tokio::task::JoinHandle<()>>,
}

impl ConversationState {
    /// The state of a conversation loaded as `snapshot`, corrections applied, with no writer
    /// (the actor attaches one in `pre_start`).
    pub fn from_snapshot(
        tenant: TenantId,
        snapshot: ConversationSnapshot,
        budget: PromptBudget,
    ) -> Self {
        Self {
            tenant,
            history: apply_corrections(snapshot.history),
            summary: snapshot.summary,
            folded: 0,
            lead: snapshot.lead,
            budget,
            writer: None,
            writer_task: None,
        }
    }

    /// Adds a line; returns it when it is to be persisted (it has words).
    pub fn append(&mut self, entry: HistoryEntry) -> Option<HistoryEntry> {
        if entry.text.trim().is_empty() {
            return None;
        }
        self.history.push(entry.clone());
        Some(entry)
    }

    /// Cuts the agent's last spoken line to `heard` (removes it when `heard` is blank) and
    /// returns the correction to append to the store, or `None` when there was nothing to
    /// change (no such line, or it already reads `heard`).
    pub fn trim_last_agent_line(&mut self, heard: &str) -> Option<HistoryEntry> {
        let idx = last_spoken_agent_line(&self.history)?;
        let heard = heard.trim();
        let line = self.history.get_mut(idx)?;
        if line.text == heard {
            return None;
        }
        let correction = HistoryEntry {
            text: heard.to_owned(),
            ..line.clone()
        };
        if heard.is_empty() {
            self.history.remove(idx);
            if idx < self.folded {
                self.folded -= 1;
            }
        } else {
            heard.clone_into(&mut line.text);
        }
        Some(correction)
    }

    /// Merges lead fields (a field given again is replaced).
    pub fn merge_lead(&mut self, fields: &BTreeMap<String, String>) {
        self.lead
            .extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The conversation as held now.
    pub fn snapshot(&self) -> ConversationSnapshot {
        ConversationSnapshot {
            history: self.history.clone(),
            summary: self.summary.clone(),
            lead: self.lead.clone(),
        }
    }

    /// The lead's fields overlaid with `variables`: what templates are filled from.
    pub fn values(&self, variables: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut values = self.lead.clone();
        values.extend(variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        values
    }

    /// Builds the prompt: the filled system prompt, the summary if any, then the most recent
    /// lines verbatim, oldest first. Guarantees `estimate_prompt_tokens ≤ max_tokens`:
    ///
    /// - the system prompt takes at most three quarters of the budget (a longer one is a
    ///   configuration mistake; it is cut, keeping its start, so the customer's latest words
    ///   still reach the model);
    /// - the summary takes at most `summary_tokens` and at most half of what is left;
    /// - lines fill the rest, newest first; the newest is always sent (cut to its end if it
    ///   alone is too long), and once a line does not fit, it and all older lines are folded
    ///   into the summary.
    pub fn build_prompt(
        &mut self,
        system_prompt: &str,
        variables: &BTreeMap<String, String>,
    ) -> BuiltPrompt {
        let values = self.values(variables);
        let max = self.budget.max_tokens;
        let system = truncate_keep_start(&fill_template(system_prompt, &values), max - max / 4);
        let remaining = max.saturating_sub(estimate_tokens(&system));
        let summary_cap = self.budget.summary_tokens.min(remaining / 2);

        // Everything not yet folded, with the summary as it is, if that fits.
        let current = fit_summary(&self.summary, summary_cap);
        let current_cost = summary_message_tokens(&current);
        let live = self.history.get(self.folded..).unwrap_or_default();
        if fits(live, remaining.saturating_sub(current_cost)) {
            return BuiltPrompt {
                messages: assemble(system, &current, live, None),
                new_summary: None,
            };
        }

        // Otherwise the newest lines that fit beside a full-size summary; the rest fold.
        let room = remaining - summary_cap;
        // Not fitting means there is at least one unfolded line.
        let (Some(last), Some(newest)) = (self.history.len().checked_sub(1), self.history.last())
        else {
            return BuiltPrompt {
                messages: assemble(system, &current, &[], None),
                new_summary: None,
            };
        };
        let mut cut = last;
        let (newest_text, mut used) = match estimate_tokens(&newest.text) {
            cost if cost > room => {
                let text = truncate_keep_end(&newest.text, room);
                let cost = estimate_tokens(&text);
                (Some(text), cost)
            }
            cost => (None, cost),
        };
        while cut > self.folded {
            let cost = estimate_tokens(&self.history[cut - 1].text);
            if used + cost > room {
                break;
            }
            used += cost;
            cut -= 1;
        }
        let mut new_summary = None;
        if cut > self.folded {
            self.folded = cut;
            let rebuilt = summarize(&self.history[..cut], summary_cap);
            if rebuilt != self.summary {
                self.summary.clone_from(&rebuilt);
                new_summary = Some(rebuilt);
            }
        }
        let summary = fit_summary(&self.summary, summary_cap);
        let messages = assemble(system, &summary, &self.history[cut..], newest_text);
        self.forget_unreachable_lines();
        BuiltPrompt {
            messages,
            new_summary,
        }
    }

    /// Drops folded lines too old to reach any summary again: a summary keeps the newest
    /// [`summary_line`]s that fit in `summary_tokens`, so lines past those (and one more, in
    /// case a correction removes a newer line) can never be sent. A customer who keeps
    /// calling thus costs memory bounded by the prompt budget (the store keeps every line).
    fn forget_unreachable_lines(&mut self) {
        let room = (self.budget.summary_tokens * 4).saturating_sub(SUMMARY_PREFIX.chars().count());
        let (mut used, mut reachable) = (0, 0);
        for entry in self.history[..self.folded].iter().rev() {
            reachable += 1;
            used += summary_line(entry).map_or(0, |line| line.chars().count() + 1);
            if used > room {
                break;
            }
        }
        let unreachable = self.folded - reachable;
        if unreachable > 0 {
            self.history.drain(..unreachable);
            self.folded -= unreachable;
        }
    }

    /// Hands `write` to the writer task. The task only goes away if the store panicked; then
    /// the actor fails so its supervisor restarts it from the store.
    fn persist(&self, write: PendingWrite) -> Result<(), ActorProcessingErr> {
        match &self.writer {
            Some(writer) => writer
                .send(write)
                .map_err(|_| "the conversation writer task is gone".into()),
            None => Ok(()),
        }
    }
}

/// Estimated tokens of the summary message for `summary` (none when empty).
fn summary_message_tokens(summary: &str) -> usize {
    if summary.is_empty() {
        0
    } else {
        (SUMMARY_PREFIX.chars().count() + summary.chars().count()).div_ceil(4)
    }
}

/// Whether all of `lines` fit in `room` estimated tokens; stops counting once they do not.
fn fits(lines: &[HistoryEntry], room: usize) -> bool {
    let mut used = 0;
    for line in lines.iter().rev() {
        used += estimate_tokens(&line.text);
        if used > room {
            return false;
        }
    }
    true
}

/// The prompt's messages: system, summary (if any), then `lines` with the last one's text
/// replaced by `newest_text` when it was cut. Lines without words are skipped.
fn assemble(
    system: String,
    summary: &str,
    lines: &[HistoryEntry],
    mut newest_text: Option<String>,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(lines.len() + 2);
    messages.push(ChatMessage::System(system));
    if !summary.is_empty() {
        messages.push(ChatMessage::System(format!("{SUMMARY_PREFIX}{summary}")));
    }
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        let text = if i == last {
            newest_text.take().unwrap_or_else(|| line.text.clone())
        } else {
            line.text.clone()
        };
        if text.is_empty() {
            continue;
        }
        messages.push(match line.speaker {
            Speaker::Customer => ChatMessage::User(text),
            Speaker::Agent | Speaker::Staff => ChatMessage::Assistant {
                text,
                tool_calls: Vec::new(),
            },
        });
    }
    messages
}

/// Whether retrying a failed write may help.
fn is_transient(error: &PortError) -> bool {
    matches!(error, PortError::Unavailable(_) | PortError::TimedOut(_))
}

/// Runs a store write, retrying transient failures after [`RETRY_DELAYS`].
macro_rules! with_retries {
    ($write:expr) => {{
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match $write.await {
                Err(e) if is_transient(&e) => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => break Err(e),
                },
                result => break result,
            }
        }
    }};
}

/// The writer task: performs the actor's writes one after another, so the store sees them
/// in the order the actor made them. Ends when the actor (its only sender) is gone, after
/// draining what was queued.
async fn run_writer(
    tenant: TenantId,
    customer: String,
    store: Arc<dyn ConversationStore>,
    mut queue: mpsc::UnboundedReceiver<PendingWrite>,
) {
    while let Some(write) = queue.recv().await {
        match write {
            PendingWrite::Append(entry) => {
                if let Err(error) = with_retries!(store.append(tenant, &customer, &entry)) {
                    tracing::warn!(tenant_id = %tenant, %error, "a conversation line was not stored");
                }
            }
            PendingWrite::SaveSummary(summary) => {
                if let Err(error) = with_retries!(store.save_summary(tenant, &customer, &summary)) {
                    tracing::warn!(tenant_id = %tenant, %error, "a conversation summary was not stored");
                }
            }
            PendingWrite::UpdateLead { fields, reply } => {
                let result = with_retries!(store.update_lead(tenant, &customer, fields.clone()));
                let _ = reply.send(result);
            }
        }
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ConversationArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let snapshot = args.store.load(args.tenant, &args.customer).await?;
        let mut state = ConversationState::from_snapshot(args.tenant, snapshot, args.budget);
        let (writer, queue) = mpsc::unbounded_channel();
        state.writer_task = Some(tokio::spawn(run_writer(
            args.tenant,
            args.customer,
            args.store,
            queue,
        )));
        state.writer = Some(writer);
        metrics::gauge!("switchboard_conversations_loaded").increment(1.0);
        Ok(state)
    }

    /// Lets queued writes land before the actor is reported stopped, so an actor restarted
    /// for the same customer loads them; bounded by five seconds.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("switchboard_conversations_loaded").decrement(1.0);
        state.writer = None;
        if let Some(task) = state.writer_task.take() {
            if tokio::time::timeout(FLUSH_TIMEOUT, task).await.is_err() {
                tracing::warn!(tenant_id = %state.tenant, "conversation writes still pending at stop");
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConversationMsg::Append(entry) => {
                if let Some(entry) = state.append(entry) {
                    state.persist(PendingWrite::Append(entry))?;
                }
            }
            ConversationMsg::Remember(entry) => {
                state.append(entry);
            }
            ConversationMsg::TrimLastAgentLine { heard } => {
                if let Some(correction) = state.trim_last_agent_line(&heard) {
                    state.persist(PendingWrite::Append(correction))?;
                }
            }
            ConversationMsg::BuildPrompt {
                system_prompt,
                variables,
                reply,
            } => {
                let built = state.build_prompt(&system_prompt, &variables);
                if let Some(summary) = built.new_summary {
                    tracing::debug!(tenant_id = %state.tenant, folded = state.folded, "conversation summary rebuilt");
                    state.persist(PendingWrite::SaveSummary(summary))?;
                }
                let _ = reply.send(built.messages);
            }
            ConversationMsg::Fill {
                template,
                variables,
                reply,
            } => {
                let _ = reply.send(fill_template(&template, &state.values(&variables)));
            }
            ConversationMsg::UpdateLead { fields, reply } => {
                state.merge_lead(&fields);
                state.persist(PendingWrite::UpdateLead { fields, reply })?;
            }
            ConversationMsg::SetLead(fields) => state.lead = fields,
            ConversationMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryConversationStore;

    fn line(speaker: Speaker, text: &str, at_ms: i64) -> HistoryEntry {
        HistoryEntry {
            speaker,
            channel: Channel::Voice,
            text: text.to_owned(),
            at_ms,
        }
    }

    fn state_with(history: Vec<HistoryEntry>, budget: PromptBudget) -> ConversationState {
        ConversationState::from_snapshot(
            TenantId::new(),
            ConversationSnapshot {
                history,
                ..Default::default()
            },
            budget,
        )
    }

    /// About 120,000+ characters of alternating lines of varied lengths, each with a first
    /// sentence the summarizer can find.
    fn long_history() -> Vec<HistoryEntry> {
        let mut history = Vec::new();
        let mut chars = 0;
        let mut i = 0_i64;
        while chars <= 120_000 {
            let speaker = if i % 2 == 0 {
                Speaker::Customer
            } else {
                Speaker::Agent
            };
            let text = format!(
                "Line {i} says something. {}",
                "more words here ".repeat((i as usize * 7) % 40)
            );
            chars += text.chars().count();
            history.push(line(speaker, &text, i));
            i += 1;
        }
        history
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tokens_are_estimated_as_characters_over_four_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("éééé"), 1, "characters, not bytes");
    }

    #[test]
    fn variables_are_filled_and_unknown_ones_become_empty() {
        let filled = fill_template(
            "Hi {{customer_name}}, this is {{ agent }} at {{business}}.{{missing}}",
            &vars(&[
                ("customer_name", "Ana"),
                ("agent", "Sam"),
                ("business", "Acme Motors"),
            ]),
        );
        assert_eq!(filled, "Hi Ana, this is Sam at Acme Motors.");
    }

    #[test]
    fn braces_that_hold_no_variable_name_are_left_as_written() {
        let values = vars(&[("a", "1")]);
        assert_eq!(
            fill_template("{{not a var}} {{a}}", &values),
            "{{not a var}} 1"
        );
        assert_eq!(fill_template("open {{a", &values), "open {{a");
        assert_eq!(fill_template("{{}}", &values), "{{}}");
    }

    #[test]
    fn template_variables_lists_what_fill_template_fills_once_each() {
        assert_eq!(
            template_variables(
                "Hi {{ customer_name }}, {{not a var}} {{x}}{{customer_name}} {{open"
            ),
            ["customer_name", "x"]
        );
    }

    #[test]
    fn an_empty_history_gives_just_the_system_prompt() {
        let mut state = state_with(Vec::new(), PromptBudget::default());
        let built = state.build_prompt("You are helpful.", &BTreeMap::new());
        assert_eq!(
            built.messages,
            vec![ChatMessage::System("You are helpful.".into())]
        );
        assert_eq!(built.new_summary, None);
    }

    #[test]
    fn recent_turns_are_kept_verbatim_and_in_order() {
        let mut state = state_with(
            vec![
                line(Speaker::Customer, "Hi, is the RAV4 still available?", 1),
                line(Speaker::Agent, "It is! Would you like a test drive?", 2),
                line(Speaker::Staff, "This is Jo from sales, I can help.", 3),
                line(Speaker::Customer, "Yes, Saturday please.", 4),
            ],
            PromptBudget::default(),
        );
        let built = state.build_prompt("sys", &BTreeMap::new());
        assert_eq!(
            built.messages,
            vec![
                ChatMessage::System("sys".into()),
                ChatMessage::User("Hi, is the RAV4 still available?".into()),
                ChatMessage::Assistant {
                    text: "It is! Would you like a test drive?".into(),
                    tool_calls: vec![]
                },
                ChatMessage::Assistant {
                    text: "This is Jo from sales, I can help.".into(),
                    tool_calls: vec![]
                },
                ChatMessage::User("Yes, Saturday please.".into()),
            ]
        );
    }

    #[test]
    fn a_long_history_keeps_bounded_lines_and_gives_the_same_prompts() {
        let budget = PromptBudget {
            max_tokens: 400,
            summary_tokens: 40,
        };
        let mut full = long_history();
        full.truncate(600);
        let mut state = state_with(full[..300].to_vec(), budget);
        for (n, entry) in full[300..].iter().enumerate() {
            state.append(entry.clone());
            let built = state.build_prompt("sys", &BTreeMap::new());
            // What a state holding every line would send: built fresh from all of them.
            let mut whole = state_with(full[..301 + n].to_vec(), budget);
            assert_eq!(
                built.messages,
                whole.build_prompt("sys", &BTreeMap::new()).messages
            );
            // No more folded lines are kept than a 40-token summary could show.
            assert!(state.folded <= 20, "{}", state.folded);
        }
        assert!(state.history.len() < 100, "{}", state.history.len());
    }

    #[test]
    fn a_history_of_over_120k_characters_still_fits_the_budget() {
        let history = long_history();
        assert!(
            history
                .iter()
                .map(|e| e.text.chars().count())
                .sum::<usize>()
                > 120_000
        );
        let budget = PromptBudget::default();
        let mut state = state_with(history.clone(), budget);
        let built = state.build_prompt("You are the agent of {{business}}.", &BTreeMap::new());
        assert!(estimate_prompt_tokens(&built.messages) <= budget.max_tokens);

        // The newest lines are there verbatim and in order, after the summary.
        let ChatMessage::System(summary) = &built.messages[1] else {
            panic!("expected a summary, got {:?}", built.messages[1]);
        };
        assert!(summary.starts_with(SUMMARY_PREFIX));
        let sent: Vec<&str> = built.messages[2..]
            .iter()
            .map(|m| match m {
                ChatMessage::User(t) | ChatMessage::Assistant { text: t, .. } => t.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let tail: Vec<&str> = history[history.len() - sent.len()..]
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(sent, tail);
        assert!(sent.len() >= 2);
    }

    #[test]
    fn the_budget_holds_for_many_budgets_and_history_shapes() {
        let history = long_history();
        let huge = "x".repeat(50_000);
        for max_tokens in [0, 1, 7, 40, 200, 1000, 3000, 8000] {
            for summary_tokens in [0, 10, 500, 100_000] {
                for system in ["", "short {{a}}", huge.as_str()] {
                    let budget = PromptBudget {
                        max_tokens,
                        summary_tokens,
                    };
                    let mut with_huge_last = history.clone();
                    with_huge_last.push(line(Speaker::Customer, &huge, 1_000_000));
                    for h in [history.clone(), with_huge_last] {
                        let mut state = state_with(h, budget);
                        // Twice: the second build starts from a folded state.
                        for _ in 0..2 {
                            let built = state.build_prompt(system, &vars(&[("a", "b")]));
                            let used = estimate_prompt_tokens(&built.messages);
                            assert!(
                                used <= max_tokens,
                                "{used} > {max_tokens} (summary {summary_tokens})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_summary_appears_once_history_overflows_and_names_older_lines() {
        let budget = PromptBudget {
            max_tokens: 100,
            summary_tokens: 40,
        };
        let mut state = state_with(
            vec![
                line(Speaker::Customer, "I need new tires. Also wipers.", 1),
                line(Speaker::Agent, &"Sure thing. ".repeat(30), 2),
                line(Speaker::Customer, "When can I come?", 3),
            ],
            budget,
        );
        let built = state.build_prompt("sys", &BTreeMap::new());
        let summary = built.new_summary.expect("lines were folded");
        assert_eq!(summary, "Customer: I need new tires.\nAgent: Sure thing.");
        assert_eq!(
            built.messages,
            vec![
                ChatMessage::System("sys".into()),
                ChatMessage::System(format!("{SUMMARY_PREFIX}{summary}")),
                ChatMessage::User("When can I come?".into()),
            ]
        );
        // Building again folds nothing more and does not re-save the summary.
        let again = state.build_prompt("sys", &BTreeMap::new());
        assert_eq!(again.new_summary, None);
        assert_eq!(again.messages, built.messages);
    }

    #[test]
    fn a_single_huge_line_is_cut_keeping_its_end() {
        let budget = PromptBudget {
            max_tokens: 100,
            summary_tokens: 20,
        };
        let text = format!("{}the actual question?", "blah ".repeat(10_000));
        let mut state = state_with(vec![line(Speaker::Customer, &text, 1)], budget);
        let built = state.build_prompt("sys", &BTreeMap::new());
        let ChatMessage::User(sent) = built.messages.last().unwrap() else {
            panic!("expected the customer's line");
        };
        assert!(sent.starts_with('…'));
        assert!(sent.ends_with("the actual question?"));
        assert!(estimate_prompt_tokens(&built.messages) <= 100);
    }

    #[test]
    fn summary_lines_keep_the_first_sentence_up_to_160_characters() {
        let entry = line(Speaker::Customer, "Where are you?  I am lost.", 1);
        assert_eq!(summary_line(&entry).unwrap(), "Customer: Where are you?");
        let long = line(Speaker::Staff, &"word ".repeat(100_000), 1);
        let summarized = summary_line(&long).unwrap();
        assert!(summarized.starts_with("Staff: word word"));
        assert_eq!(summarized.chars().count(), "Staff: ".len() + 160);
        assert!(summarized.ends_with('…'));
        assert_eq!(summary_line(&line(Speaker::Agent, "  \n ", 1)), None);
        assert_eq!(
            summary_line(&line(Speaker::Agent, "Version 2.5 is out. Yes.", 1)).unwrap(),
            "Agent: Version 2.5 is out."
        );
    }

    #[test]
    fn the_summary_keeps_the_newest_lines_within_its_cap() {
        let entries: Vec<_> = (0..100)
            .map(|i| line(Speaker::Customer, &format!("Message number {i}."), i))
            .collect();
        let summary = summarize(&entries, 30);
        assert!(estimate_tokens(&format!("{SUMMARY_PREFIX}{summary}")) <= 30);
        assert!(summary.ends_with("Customer: Message number 99."));
        assert!(!summary.contains("number 0."));
    }

    #[test]
    fn barge_in_cuts_the_agents_last_line_to_what_was_heard() {
        let mut state = state_with(
            vec![
                line(Speaker::Customer, "Hours?", 1),
                line(Speaker::Agent, "We open at nine and close at six.", 2),
                line(Speaker::Customer, "Wait", 3),
            ],
            PromptBudget::default(),
        );
        let correction = state.trim_last_agent_line("We open at nine").unwrap();
        assert_eq!(correction, line(Speaker::Agent, "We open at nine", 2));
        assert_eq!(state.snapshot().history[1].text, "We open at nine");
        assert_eq!(state.trim_last_agent_line("We open at nine"), None);

        let removal = state.trim_last_agent_line("").unwrap();
        assert_eq!(removal.text, "");
        assert_eq!(state.snapshot().history.len(), 2);
    }

    #[test]
    fn barge_in_leaves_texts_and_staff_lines_alone() {
        let mut sms = line(Speaker::Agent, "Texted reply", 1);
        sms.channel = Channel::Sms;
        let mut state = state_with(vec![sms], PromptBudget::default());
        assert_eq!(state.trim_last_agent_line("Tex"), None);
        let mut state = state_with(
            vec![
                line(Speaker::Agent, "Agent line", 1),
                line(Speaker::Staff, "Staff line", 2),
            ],
            PromptBudget::default(),
        );
        assert_eq!(state.trim_last_agent_line("Age"), None);
    }

    #[test]
    fn corrections_in_a_stored_history_are_folded_into_their_lines() {
        let stored = vec![
            line(Speaker::Customer, "Hours?", 1),
            line(Speaker::Agent, "We open at nine and close at six.", 2),
            line(Speaker::Customer, "Wait", 3),
            line(Speaker::Agent, "We open at nine", 2),
            line(Speaker::Agent, "Sorry, go ahead.", 4),
            line(Speaker::Agent, "", 4),
            line(Speaker::Agent, "Different line, same speaker.", 5),
        ];
        assert_eq!(
            apply_corrections(stored),
            vec![
                line(Speaker::Customer, "Hours?", 1),
                line(Speaker::Agent, "We open at nine", 2),
                line(Speaker::Customer, "Wait", 3),
                line(Speaker::Agent, "Different line, same speaker.", 5),
            ]
        );
    }

    #[test]
    fn lead_fields_fill_variables_and_given_variables_win() {
        let mut state = state_with(Vec::new(), PromptBudget::default());
        state.merge_lead(&vars(&[("customer_name", "Ana"), ("city", "Oslo")]));
        let built = state.build_prompt(
            "{{customer_name}} in {{city}}",
            &vars(&[("city", "Bergen")]),
        );
        assert_eq!(
            built.messages,
            vec![ChatMessage::System("Ana in Bergen".into())]
        );
    }

    // ------------------------------------------------------------ actor tests

    async fn spawn(
        store: Arc<MemoryConversationStore>,
        tenant: TenantId,
        budget: PromptBudget,
    ) -> ActorRef<ConversationMsg> {
        let (actor, _) = Actor::spawn(
            None,
            ConversationActor,
            ConversationArgs {
                tenant,
                customer: "+14155550100".into(),
                store,
                budget,
            },
        )
        .await
        .expect("conversation actor starts");
        actor
    }

    async fn prompt(
        actor: &ActorRef<ConversationMsg>,
        system: &str,
        variables: BTreeMap<String, String>,
    ) -> Vec<ChatMessage> {
        ractor::call_t!(
            actor,
            |reply| ConversationMsg::BuildPrompt {
                system_prompt: system.to_owned(),
                variables,
                reply,
            },
            2000
        )
        .expect("prompt built")
    }

    /// Polls `check` until it holds or five seconds pass.
    async fn eventually(mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in time");
    }

    #[tokio::test]
    async fn a_120k_character_history_yields_a_prompt_under_budget_and_saves_the_summary() {
        let store = Arc::new(MemoryConversationStore::new());
        let tenant = TenantId::new();
        store.insert(
            tenant,
            "+14155550100",
            ConversationSnapshot {
                history: long_history(),
                ..Default::default()
            },
        );
        let budget = PromptBudget::default();
        let actor = spawn(store.clone(), tenant, budget).await;
        let messages = prompt(&actor, "You are an agent.", BTreeMap::new()).await;
        assert!(estimate_prompt_tokens(&messages) <= budget.max_tokens);
        assert!(matches!(&messages[1], ChatMessage::System(s) if s.starts_with(SUMMARY_PREFIX)));
        eventually(|| !store.snapshot(tenant, "+14155550100").summary.is_empty()).await;
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_remembered_line_reaches_the_prompt_but_is_not_stored_again() {
        let store = Arc::new(MemoryConversationStore::new());
        let tenant = TenantId::new();
        let actor = spawn(store.clone(), tenant, PromptBudget::default()).await;
        let text = HistoryEntry {
            channel: Channel::Sms,
            ..line(Speaker::Customer, "Is the red Civic still there?", 5)
        };
        actor.send_message(ConversationMsg::Remember(text)).unwrap();
        actor
            .send_message(ConversationMsg::Append(line(Speaker::Agent, "Yes.", 6)))
            .unwrap();
        let messages = prompt(&actor, "Be brief.", BTreeMap::new()).await;
        assert_eq!(
            messages[1],
            ChatMessage::User("Is the red Civic still there?".into())
        );
        eventually(|| store.snapshot(tenant, "+14155550100").history.len() == 1).await;
        let stored = store.snapshot(tenant, "+14155550100").history;
        assert_eq!(stored[0].text, "Yes.");
        actor.stop(None);
    }

    #[tokio::test]
    async fn update_lead_then_build_prompt_fills_the_customer_name() {
        let store = Arc::new(MemoryConversationStore::new());
        let tenant = TenantId::new();
        let actor = spawn(store.clone(), tenant, PromptBudget::default()).await;
        let stored = ractor::call_t!(
            actor,
            |reply| ConversationMsg::UpdateLead {
                fields: vars(&[("customer_name", "Ana")]),
                reply,
            },
            2000
        )
        .expect("actor answers");
        assert_eq!(stored, Ok(()));
        let messages = prompt(&actor, "Greet {{customer_name}} by name.", BTreeMap::new()).await;
        assert_eq!(
            messages,
            vec![ChatMessage::System("Greet Ana by name.".into())]
        );
        let lead = store.snapshot(tenant, "+14155550100").lead;
        assert_eq!(lead.get("customer_name").map(String::as_str), Some("Ana"));
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_slow_store_never_delays_the_prompt_and_lines_land_in_order() {
        let store = Arc::new(MemoryConversationStore::new());
        store.set_write_delay(Duration::from_millis(200));
        let tenant = TenantId::new();
        let actor = spawn(store.clone(), tenant, PromptBudget::default()).await;
        for i in 0..5 {
            actor
                .cast(ConversationMsg::Append(line(
                    Speaker::Customer,
                    &format!("line {i}"),
                    i,
                )))
                .unwrap();
        }
        let started = tokio::time::Instant::now();
        let messages = prompt(&actor, "sys", BTreeMap::new()).await;
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "the prompt waited for the store"
        );
        assert_eq!(messages.len(), 6);
        eventually(|| store.snapshot(tenant, "+14155550100").history.len() == 5).await;
        let texts: Vec<String> = store
            .snapshot(tenant, "+14155550100")
            .history
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(texts, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_barge_in_survives_a_restart_from_the_store() {
        let store = Arc::new(MemoryConversationStore::new());
        let tenant = TenantId::new();
        let actor = spawn(store.clone(), tenant, PromptBudget::default()).await;
        actor
            .cast(ConversationMsg::Append(line(
                Speaker::Agent,
                "We open at nine and close at six.",
                7,
            )))
            .unwrap();
        actor
            .cast(ConversationMsg::TrimLastAgentLine {
                heard: "We open at nine".into(),
            })
            .unwrap();
        let live = ractor::call_t!(actor, ConversationMsg::Snapshot, 2000).unwrap();
        assert_eq!(
            live.history,
            vec![line(Speaker::Agent, "We open at nine", 7)]
        );
        eventually(|| store.raw_snapshot(tenant, "+14155550100").history.len() == 2).await;
        assert_eq!(
            store.snapshot(tenant, "+14155550100").history,
            live.history,
            "a reader of the store sees the correction applied"
        );
        actor.stop(None);

        let restarted = spawn(store.clone(), tenant, PromptBudget::default()).await;
        let reloaded = ractor::call_t!(restarted, ConversationMsg::Snapshot, 2000).unwrap();
        assert_eq!(reloaded.history, live.history);
        restarted.stop(None);
    }

    #[tokio::test]
    async fn a_stopped_actor_has_flushed_its_writes() {
        let store = Arc::new(MemoryConversationStore::new());
        store.set_write_delay(Duration::from_millis(100));
        let tenant = TenantId::new();
        let actor = spawn(store.clone(), tenant, PromptBudget::default()).await;
        for i in 0..3 {
            actor
                .cast(ConversationMsg::Append(line(
                    Speaker::Customer,
                    &format!("line {i}"),
                    i,
                )))
                .unwrap();
        }
        // A stop overtakes queued messages, so wait until the appends were handled.
        ractor::call_t!(actor, ConversationMsg::Snapshot, 2000).unwrap();
        actor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(store.raw_snapshot(tenant, "+14155550100").history.len(), 3);
    }

    #[tokio::test]
    async fn a_store_that_cannot_load_fails_the_start() {
        let store = Arc::new(MemoryConversationStore::new());
        store.set_failure(Some(PortError::Unavailable("database".into())));
        let started = Actor::spawn(
            None,
            ConversationActor,
            ConversationArgs {
                tenant: TenantId::new(),
                customer: "+14155550100".into(),
                store,
                budget: PromptBudget::default(),
            },
        )
        .await;
        assert!(started.is_err());
    }

    #[tokio::test]
    async fn a_failed_lead_write_is_reported_and_the_actor_lives_on() {
        let store = Arc::new(MemoryConversationStore::new());
        let actor = spawn(store.clone(), TenantId::new(), PromptBudget::default()).await;
        store.set_failure(Some(PortError::Refused("read-only".into())));
        let stored = ractor::call_t!(
            actor,
            |reply| ConversationMsg::UpdateLead {
                fields: vars(&[("customer_name", "Ana")]),
                reply,
            },
            2000
        )
        .unwrap();
        assert_eq!(stored, Err(PortError::Refused("read-only".into())));
        let snapshot = ractor::call_t!(actor, ConversationMsg::Snapshot, 2000).unwrap();
        assert_eq!(
            snapshot.lead.get("customer_name").map(String::as_str),
            Some("Ana")
        );
        actor.stop(None);
    }
}
