//! Automatic retrieval: before the agent answers, the tenant's knowledge base is searched with
//! the customer's words and the best chunks are put in front of the model, so it answers
//! from the documents without having to decide to call `search_knowledge` (which costs a
//! model round trip).
//!
//! It runs under the agent's latency budget (150 ms by default): a search that has not
//! answered by then is abandoned, the reply goes on without it, and the miss is counted
//! (`switchboard_knowledge_auto_retrieval_total{outcome="over_budget"}`). A slow knowledge
//! base thus costs a caller at most the budget, never a silence.

use std::time::{Duration, Instant};

use actors::knowledge::KnowledgeMsg;
use actors::ports::{ChatMessage, KnowledgeHit};
use ractor::ActorRef;

use crate::tenant::TenantMsg;

/// Chunks put in front of the model.
pub const AUTO_RETRIEVAL_HITS: usize = 3;

/// What an automatic retrieval came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Retrieval {
    /// The search answered within the budget (possibly with no chunks).
    Found {
        /// The best chunks, best first.
        hits: Vec<KnowledgeHit>,
        /// How long it took.
        took: Duration,
    },
    /// The budget ran out first; the reply goes on without knowledge.
    OverBudget,
    /// The knowledge base could not answer (it is down or was given up on).
    Failed(String),
}

impl Retrieval {
    /// The outcome's label in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Found { hits, .. } if hits.is_empty() => "empty",
            Self::Found { .. } => "hit",
            Self::OverBudget => "over_budget",
            Self::Failed(_) => "failed",
        }
    }

    /// Milliseconds the search took, when it answered in time.
    pub fn took_ms(&self) -> Option<u32> {
        match self {
            Self::Found { took, .. } => Some(u32::try_from(took.as_millis()).unwrap_or(u32::MAX)),
            _ => None,
        }
    }
}

/// Searches the tenant's knowledge for `query` within `budget`, and counts the outcome.
pub async fn retrieve(tenant: &ActorRef<TenantMsg>, query: String, budget: Duration) -> Retrieval {
    let started = Instant::now();
    let search = async {
        let knowledge = ractor::call!(tenant, TenantMsg::Knowledge)
            .map_err(|e| format!("the tenant did not answer: {e}"))?
            .ok_or("the knowledge base is not available")?;
        ractor::call!(knowledge, |reply| KnowledgeMsg::Search {
            query,
            k: AUTO_RETRIEVAL_HITS,
            reply,
        })
        .map_err(|e| format!("the knowledge base did not answer: {e}"))?
        .map_err(|e| e.to_string())
    };
    let retrieval = match tokio::time::timeout(budget, search).await {
        Ok(Ok(hits)) => Retrieval::Found {
            hits,
            took: started.elapsed(),
        },
        Ok(Err(reason)) => Retrieval::Failed(reason),
        Err(_) => Retrieval::OverBudget,
    };
    metrics::counter!("switchboard_knowledge_auto_retrieval_total", "outcome" => retrieval.outcome())
        .increment(1);
    if let Retrieval::Failed(reason) = &retrieval {
        tracing::warn!(%reason, "automatic retrieval failed; the reply goes on without it");
    }
    retrieval
}

/// Puts `hits` in front of the model: a system message just before the customer's latest
/// words, so everything before it (instructions, history) stays a stable prefix the
/// provider can cache.
pub fn add_knowledge(messages: &mut Vec<ChatMessage>, hits: &[KnowledgeHit]) {
    if hits.is_empty() {
        return;
    }
    let mut note = String::from(
        "Excerpts from the business's documents that may answer the customer. Use them when they do; never invent what they do not say.",
    );
    for (i, hit) in hits.iter().enumerate() {
        note.push_str(&format!(
            "\n[{}] {} ({}): {}",
            i + 1,
            hit.chunk.title,
            hit.chunk.location,
            hit.chunk.text
        ));
    }
    let at = messages
        .iter()
        .rposition(|m| matches!(m, ChatMessage::User(_)))
        .unwrap_or(messages.len());
    messages.insert(at, ChatMessage::System(note));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::ports::KnowledgeChunk;

    fn hit(title: &str, text: &str) -> KnowledgeHit {
        KnowledgeHit {
            chunk: KnowledgeChunk {
                id: "d:0".into(),
                document_id: "d".into(),
                title: title.into(),
                location: "page 2".into(),
                text: text.into(),
                dense: None,
            },
            score: 1.0,
        }
    }

    #[test]
    fn knowledge_goes_just_before_the_customers_latest_words() {
        let mut messages = vec![
            ChatMessage::System("You answer for Demo Motors.".into()),
            ChatMessage::User("Hi".into()),
            ChatMessage::Assistant {
                text: "Hello!".into(),
                tool_calls: Vec::new(),
            },
            ChatMessage::User("What is the code?".into()),
        ];
        add_knowledge(&mut messages, &[hit("Handbook.pdf", "The code is 7431.")]);
        assert_eq!(messages.len(), 5);
        let ChatMessage::System(note) = &messages[3] else {
            panic!("{:?}", messages[3]);
        };
        assert!(note.contains("[1] Handbook.pdf (page 2): The code is 7431."));
        assert_eq!(messages[4], ChatMessage::User("What is the code?".into()));
    }

    #[test]
    fn no_hits_change_nothing() {
        let mut messages = vec![ChatMessage::User("Hi".into())];
        add_knowledge(&mut messages, &[]);
        assert_eq!(messages, vec![ChatMessage::User("Hi".into())]);
    }

    #[test]
    fn outcomes_are_labelled_for_metrics() {
        let found = |hits| Retrieval::Found {
            hits,
            took: Duration::from_millis(12),
        };
        assert_eq!(found(vec![hit("a", "b")]).outcome(), "hit");
        assert_eq!(found(Vec::new()).outcome(), "empty");
        assert_eq!(found(Vec::new()).took_ms(), Some(12));
        assert_eq!(Retrieval::OverBudget.outcome(), "over_budget");
        assert_eq!(Retrieval::OverBudget.took_ms(), None);
        assert_eq!(Retrieval::Failed("x".into()).outcome(), "failed");
    }
}
