//! The tools an agent's model may call during a call, their JSON schemas, and how each is
//! run. Tools reach the world only through ports and the tenant's actors; a bad argument or
//! a failing port becomes an error result the model reads, never a crash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actors::conversation::ConversationMsg;
use actors::domain::{TenantId, E164};
use actors::knowledge::KnowledgeMsg;
use actors::ports::{
    Channel, ConversationStore, EventSink, HistoryEntry, Speaker, Telephony, TenantEvent, Tool,
    ToolCall, ToolSpec,
};
use ractor::ActorRef;
use serde_json::{json, Value};

use crate::tenant::TenantMsg;

/// Longest a tool may take before the model is told it timed out.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait, in milliseconds, for one actor a tool asks.
const ASK_TIMEOUT_MS: u64 = 2_500;
/// Chunks a knowledge search returns to the model.
const KNOWLEDGE_HITS: usize = 4;

/// What a tool asks of the call beyond its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    /// Nothing: the conversation goes on.
    Continue,
    /// Hang up once the agent has finished speaking.
    HangUp,
    /// Transfer to this number once the agent has finished speaking.
    Transfer(E164),
}

/// What tools can reach.
#[derive(Clone)]
pub struct ToolContext {
    /// Whose customer.
    pub tenant_id: TenantId,
    /// The customer's number: whose lead and callbacks the tools touch.
    pub customer: String,
    /// Tools the agent enabled.
    pub enabled: Vec<Tool>,
    /// Where a transfer goes.
    pub transfer_number: Option<E164>,
    /// The tenant's supervisor, which knows its current knowledge actor.
    pub tenant: ActorRef<TenantMsg>,
    /// The customer's conversation.
    pub conversation: ActorRef<ConversationMsg>,
    /// Callbacks are booked here.
    pub conversations: Arc<dyn ConversationStore>,
    /// Where lead changes the agent makes are announced (`lead.updated`).
    pub events: Arc<dyn EventSink>,
    /// The phone leg of a call (texts go out through it); `None` in a text conversation,
    /// which offers no call tools.
    pub telephony: Option<Arc<dyn Telephony>>,
}

/// The JSON Schema of every enabled tool, as offered to the model.
pub fn specs(tools: &[Tool]) -> Vec<ToolSpec> {
    tools.iter().map(|tool| spec(*tool)).collect()
}

fn spec(tool: Tool) -> ToolSpec {
    let (name, description, parameters) = match tool {
        Tool::SearchKnowledge => (
            "search_knowledge",
            "Look up facts in the business's documents (prices, hours, policies) before answering.",
            json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
        ),
        Tool::TransferToHuman => (
            "transfer_to_human",
            "Transfer the caller to a person when they ask for one or you cannot help.",
            json!({"type": "object", "properties": {}}),
        ),
        Tool::EndCall => (
            "end_call",
            "End the call after saying goodbye.",
            json!({"type": "object", "properties": {}}),
        ),
        Tool::UpdateLead => (
            "update_lead",
            "Record what you learnt about the customer (name, email, interest, timing).",
            json!({"type": "object", "properties": {"fields": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["fields"]}),
        ),
        Tool::SendSms => (
            "send_sms",
            "Text the customer, for example a link or a confirmation.",
            json!({"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]}),
        ),
        Tool::ScheduleCallback => (
            "schedule_callback",
            "Book a call back to the customer at the time they asked for. Give `when` as an ISO 8601 date and time: 2026-03-02T15:00 is the business's local time, or add a UTC offset (2026-03-02T15:00-06:00). A time that is past or unreadable is refused with the local time now, so ask again. The answer gives the booked time to confirm to the customer.",
            json!({"type": "object", "properties": {
                "when": {"type": "string", "description": "ISO 8601 date and time, e.g. 2026-03-02T15:00 (local) or 2026-03-02T15:00-06:00"},
                "note": {"type": "string", "description": "Why the customer wants the call, for whoever calls"}},
                "required": ["when"]}),
        ),
    };
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    }
}

fn tool_named(name: &str) -> Option<Tool> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

/// Runs one tool call; returns the answer for the model and what the call should do next.
pub async fn run(call: &ToolCall, ctx: &ToolContext) -> (String, CallAction) {
    let Some(tool) = tool_named(&call.name).filter(|t| ctx.enabled.contains(t)) else {
        return (
            error(format!("no tool named {}", call.name)),
            CallAction::Continue,
        );
    };
    let args: Value = match serde_json::from_str(if call.arguments.trim().is_empty() {
        "{}"
    } else {
        &call.arguments
    }) {
        Ok(args) => args,
        Err(e) => {
            return (
                error(format!("arguments are not JSON: {e}")),
                CallAction::Continue,
            )
        }
    };
    match tokio::time::timeout(TOOL_TIMEOUT, run_tool(tool, &args, ctx)).await {
        Ok(Ok(done)) => done,
        Ok(Err(message)) => (error(message), CallAction::Continue),
        Err(_) => (
            error(format!("{} timed out", call.name)),
            CallAction::Continue,
        ),
    }
}

async fn run_tool(
    tool: Tool,
    args: &Value,
    ctx: &ToolContext,
) -> Result<(String, CallAction), String> {
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
    match tool {
        Tool::SearchKnowledge => {
            let query = text("query").ok_or("query is required")?;
            let knowledge = ractor::call_t!(ctx.tenant, TenantMsg::Knowledge, ASK_TIMEOUT_MS)
                .map_err(|_| "the knowledge base is not available".to_owned())?
                .ok_or("the knowledge base is not available")?;
            let hits = ractor::call_t!(
                knowledge,
                |reply| KnowledgeMsg::Search {
                    query,
                    k: KNOWLEDGE_HITS,
                    reply,
                },
                ASK_TIMEOUT_MS
            )
            .map_err(|_| "the knowledge base did not answer".to_owned())?
            .map_err(|e| e.to_string())?;
            let found: Vec<Value> = hits
                .iter()
                .map(|h| json!({"source": h.chunk.title, "location": h.chunk.location, "text": h.chunk.text}))
                .collect();
            Ok((
                json!({ "results": found }).to_string(),
                CallAction::Continue,
            ))
        }
        Tool::TransferToHuman => match &ctx.transfer_number {
            Some(number) => Ok((ok(), CallAction::Transfer(number.clone()))),
            None => Err("no transfer number is configured; offer to take a message".to_owned()),
        },
        Tool::EndCall => Ok((ok(), CallAction::HangUp)),
        Tool::UpdateLead => {
            let fields: BTreeMap<String, String> = args
                .get("fields")
                .and_then(Value::as_object)
                .ok_or("fields must be an object")?
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect();
            let announced = json!({"customer": ctx.customer, "fields": fields, "change": "updated", "by": "agent"});
            ractor::call_t!(
                ctx.conversation,
                |reply| ConversationMsg::UpdateLead { fields, reply },
                ASK_TIMEOUT_MS
            )
            .map_err(|_| "the customer record did not answer".to_owned())?
            .map_err(|e| e.to_string())?;
            ctx.events.publish(TenantEvent {
                tenant: ctx.tenant_id,
                kind: "lead.updated",
                call_id: None,
                data: announced,
            });
            Ok((ok(), CallAction::Continue))
        }
        Tool::SendSms => {
            let body = text("body")
                .filter(|b| !b.trim().is_empty())
                .ok_or("body is required")?;
            ctx.telephony
                .as_ref()
                .ok_or("texting is not available here")?
                .send_sms(&body)
                .await
                .map_err(|e| e.to_string())?;
            // The port stored the text; the conversation reads it from now on.
            let _ = ctx
                .conversation
                .send_message(ConversationMsg::Remember(HistoryEntry {
                    speaker: Speaker::Agent,
                    channel: Channel::Sms,
                    text: body,
                    at_ms: chrono::Utc::now().timestamp_millis(),
                }));
            Ok((ok(), CallAction::Continue))
        }
        Tool::ScheduleCallback => {
            let when = text("when").ok_or("when is required")?;
            let note = text("note").unwrap_or_default();
            let booked = ctx
                .conversations
                .schedule_callback(ctx.tenant_id, &ctx.customer, &when, &note)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                json!({"ok": true, "booked_for": booked}).to_string(),
                CallAction::Continue,
            ))
        }
    }
}

fn ok() -> String {
    json!({"ok": true}).to_string()
}

fn error(message: impl Into<String>) -> String {
    json!({"error": message.into()}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_name_the_model_can_call_back() {
        let all = [
            Tool::SearchKnowledge,
            Tool::TransferToHuman,
            Tool::EndCall,
            Tool::UpdateLead,
            Tool::SendSms,
            Tool::ScheduleCallback,
        ];
        for tool in all {
            assert_eq!(tool_named(&spec(tool).name), Some(tool));
            assert_eq!(spec(tool).parameters["type"], "object");
        }
    }
}
