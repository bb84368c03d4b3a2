//! One turn of a text (SMS) conversation: the agent reads the customer's conversation (both
//! channels, within the prompt budget), may use its non-call tools, and writes one reply.
//!
//! The customer's text is stored by the server before the turn starts (it carries Twilio's
//! delivery details), and so is the reply once it is sent; the turn only reads the
//! conversation through its actor, so a call of the same customer running at the same time
//! sees the same history.

use std::collections::BTreeMap;
use std::time::Duration;

use actors::conversation::ConversationMsg;
use actors::domain::AgentId;
use actors::ports::{
    AgentConfig, ChatMessage, LanguageModel, LlmDelta, LlmRequest, PortError, Tool, ToolCall,
};
use futures::StreamExt;
use ractor::ActorRef;

use crate::retrieval::{self, Retrieval};
use crate::tools::{self, CallAction, ToolContext};

/// How the agent writes by text, added to its system prompt.
pub const TEXT_STYLE: &str = "You are replying by text message (SMS). Write plain text in one to three short sentences, without markdown.";
/// Rounds of tool calls one reply may make before it must answer.
const MAX_TOOL_ROUNDS: usize = 4;
/// Longest one model request of a text turn may take, tools excluded.
const MODEL_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the conversation actor.
const CONVERSATION_TIMEOUT_MS: u64 = 3_000;

/// A text the agent is to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTurn {
    /// The customer's number.
    pub customer: String,
    /// The agent of the number the customer wrote to.
    pub agent: AgentId,
    /// Notes for the model beyond the agent's prompt (the last call's summary, a picture it
    /// cannot see), added to the system prompt.
    pub context: Vec<String>,
}

/// The agent's reply to a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextAnswer {
    /// What to text back (never empty).
    pub text: String,
    /// Tokens the model read and wrote for it.
    pub llm_tokens: u64,
}

/// Why a text got no reply from the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The number's agent is not one of the tenant's (deleted meanwhile).
    #[error("no such agent")]
    UnknownAgent,
    /// The runtime is shutting down.
    #[error("the runtime is draining")]
    Draining,
    /// The conversation or the model could not be reached, or the model wrote nothing.
    #[error("the agent could not answer: {0}")]
    Unavailable(String),
}

/// The tools a text conversation offers: those of the agent that need no phone leg.
pub fn text_tools(agent: &AgentConfig) -> Vec<Tool> {
    agent
        .tools
        .iter()
        .copied()
        .filter(|t| {
            matches!(
                t,
                Tool::SearchKnowledge | Tool::UpdateLead | Tool::ScheduleCallback
            )
        })
        .collect()
}

/// What one text turn runs with (gathered by the tenant's supervisor).
pub(crate) struct TextJob {
    pub(crate) turn: TextTurn,
    pub(crate) agent: AgentConfig,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) llm: std::sync::Arc<dyn LanguageModel>,
    pub(crate) conversation: ActorRef<ConversationMsg>,
    pub(crate) tools: ToolContext,
}

/// Builds the prompt from the conversation and lets the model answer, running its tools.
pub(crate) async fn answer(job: TextJob) -> Result<TextAnswer, TextError> {
    let mut system_prompt = job.agent.system_prompt.clone();
    for note in std::iter::once(TEXT_STYLE).chain(job.turn.context.iter().map(String::as_str)) {
        system_prompt.push_str("\n\n");
        system_prompt.push_str(note);
    }
    let mut messages = ractor::call_t!(
        job.conversation,
        |reply| ConversationMsg::BuildPrompt {
            system_prompt,
            variables: job.variables.clone(),
            reply,
        },
        CONVERSATION_TIMEOUT_MS
    )
    .map_err(|e| TextError::Unavailable(format!("the conversation did not answer: {e}")))?;
    if let Some(budget) = job.agent.auto_retrieval {
        let latest = messages.iter().rev().find_map(|m| match m {
            ChatMessage::User(text) => Some(text.clone()),
            _ => None,
        });
        if let Some(query) = latest {
            if let Retrieval::Found { hits, .. } =
                retrieval::retrieve(&job.tools.tenant, query, budget).await
            {
                retrieval::add_knowledge(&mut messages, &hits);
            }
        }
    }
    let specs = tools::specs(&job.tools.enabled);
    let mut llm_tokens = 0;
    for round in 0..=MAX_TOOL_ROUNDS {
        let request = LlmRequest {
            model: job.agent.llm_model.clone(),
            messages: messages.clone(),
            // The last round must answer in words.
            tools: if round < MAX_TOOL_ROUNDS {
                specs.clone()
            } else {
                Vec::new()
            },
            fallback_models: job.agent.llm_fallback_models.clone(),
        };
        let (text, calls, tokens) =
            tokio::time::timeout(MODEL_TIMEOUT, collect(&*job.llm, request))
                .await
                .map_err(|_| {
                    TextError::Unavailable(format!("the model took longer than {MODEL_TIMEOUT:?}"))
                })?
                .map_err(|e| TextError::Unavailable(e.to_string()))?;
        llm_tokens += tokens;
        if calls.is_empty() {
            let text = text.trim();
            if text.is_empty() {
                return Err(TextError::Unavailable("the model wrote nothing".to_owned()));
            }
            return Ok(TextAnswer {
                text: text.to_owned(),
                llm_tokens,
            });
        }
        messages.push(ChatMessage::Assistant {
            text,
            tool_calls: calls.clone(),
        });
        for call in calls {
            // Call actions (hang up, transfer) cannot be offered here: text tools continue.
            let (content, action) = tools::run(&call, &job.tools).await;
            debug_assert_eq!(action, CallAction::Continue);
            messages.push(ChatMessage::Tool {
                call_id: call.id,
                content,
            });
        }
    }
    Err(TextError::Unavailable(
        "the model kept calling tools".to_owned(),
    ))
}

/// Streams one reply to its end: its words, its tool calls and its tokens.
pub(crate) async fn collect(
    llm: &dyn LanguageModel,
    request: LlmRequest,
) -> Result<(String, Vec<ToolCall>, u64), PortError> {
    let mut stream = llm.stream(request).await?;
    let (mut text, mut calls, mut tokens) = (String::new(), Vec::new(), 0);
    while let Some(delta) = stream.next().await {
        match delta? {
            LlmDelta::Text(piece) => text.push_str(&piece),
            LlmDelta::ToolCall(call) => calls.push(call),
            LlmDelta::Usage {
                prompt_tokens,
                completion_tokens,
            } => tokens += u64::from(prompt_tokens) + u64::from(completion_tokens),
        }
    }
    Ok((text, calls, tokens))
}
