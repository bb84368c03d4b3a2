//! Text messages with their Twilio delivery details, and the staff's view of conversations:
//! the list, one conversation with the lines of both channels in order, and human takeover.
//!
//! Voice lines reach `messages` through the runtime's `ConversationStore` port
//! (conversations.rs); texts are written here, because they carry what Twilio says about
//! them (the message SID, its delivery status, pictures) and are written when Twilio accepts
//! them, not when the agent thinks of them.

use actors::conversation::{apply_corrections, Line};
use actors::domain::{CallId, ConversationId, LeadId, TenantId, UserId};
use actors::ports::{Channel, Speaker};
use serde::Serialize;

use super::conversations::conversation_id;
use super::{
    now_ms, page_of, parse_id, parse_json, time_id_cursor, to_json, usage, Scope, Store, StoreError,
};

/// A line to record: a text, or a line said on a call.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The customer's number, the conversation's key.
    pub customer: &'a str,
    /// Text or call.
    pub channel: Channel,
    /// Who wrote it: the customer (inbound), the agent or a staff member (outbound).
    pub sender: Speaker,
    /// The staff member, when `sender` is staff.
    pub sender_user_id: Option<UserId>,
    /// The words.
    pub body: &'a str,
    /// Pictures and files of an MMS, as Twilio's URLs.
    pub media_urls: &'a [String],
    /// Twilio's SID (`SM…`/`MM…`), when Twilio gave one.
    pub twilio_sid: Option<&'a str>,
    /// Twilio's status of it (`received`, `queued`, `failed`, …).
    pub status: &'a str,
    /// Twilio's error code when sending failed.
    pub error_code: Option<&'a str>,
    /// Segments Twilio bills (metered as `sms_segments`).
    pub segments: i64,
    /// Tokens the agent's model used to write it (metered as `llm_tokens`; 0 for others).
    pub llm_tokens: i64,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// One line of a conversation as staff see it: a text or a line said on a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// The line.
    pub id: String,
    /// `sms` or `voice`.
    #[schema(value_type = String, example = "sms")]
    pub channel: Channel,
    /// `inbound` (from the customer) or `outbound`.
    pub direction: String,
    /// `customer`, `agent` or `staff`.
    pub sender: String,
    /// The staff member who wrote it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub sender_user_id: Option<UserId>,
    /// The words.
    pub body: String,
    /// Pictures and files of an MMS.
    pub media_urls: Vec<String>,
    /// Twilio's id of the text (`SM…`), when Twilio gave one.
    pub twilio_sid: Option<String>,
    /// Twilio's delivery status (texts; `delivered` for lines said on a call).
    pub status: String,
    /// Twilio's error code, when delivery failed.
    pub error_code: Option<String>,
    /// The call it was said on.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub call_id: Option<CallId>,
    /// When, in Unix milliseconds.
    pub created_at: i64,
}

impl Line for Message {
    fn speaker(&self) -> Speaker {
        match self.sender.as_str() {
            "customer" => Speaker::Customer,
            "agent" => Speaker::Agent,
            _ => Speaker::Staff,
        }
    }
    fn channel(&self) -> Channel {
        self.channel
    }
    fn at_ms(&self) -> i64 {
        self.created_at
    }
    fn text(&self) -> &str {
        &self.body
    }
    fn set_text(&mut self, text: String) {
        self.body = text;
    }
    fn is_blank(&self) -> bool {
        self.body.is_empty() && self.media_urls.is_empty()
    }
}

/// A conversation in the staff's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    /// The conversation.
    #[schema(value_type = String, format = Uuid)]
    pub id: ConversationId,
    /// The customer's number.
    pub customer_number: String,
    /// The customer's lead, when there is one with this number.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub lead_id: Option<LeadId>,
    /// The lead's name (empty when unknown).
    pub customer_name: String,
    /// Summary of lines no longer sent to the agent in full.
    pub summary: String,
    /// The staff member who took it over; while set, the agent answers on no channel.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub takeover_user_id: Option<UserId>,
    /// Since when it is taken over.
    pub takeover_at: Option<i64>,
    /// Lines of both channels.
    pub message_count: i64,
    /// The last line's time.
    pub last_message_at: Option<i64>,
    /// When the customer first wrote or called.
    pub created_at: i64,
}

/// One page of conversations, most recent first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationPage {
    /// The conversations.
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// A conversation with every line, both channels in order, barge-in corrections applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Its lines, oldest first.
    pub messages: Vec<Message>,
}

/// Twilio's message statuses with their place in a message's life, so a late callback never
/// moves a message back (`sent` arriving after `delivered`); others rank 0.
const STATUS_RANKS: [(&str, u8); 11] = [
    ("accepted", 1),
    ("scheduled", 1),
    ("queued", 1),
    ("sending", 2),
    ("sent", 3),
    ("delivered", 4),
    ("undelivered", 4),
    ("failed", 4),
    ("canceled", 4),
    ("partially_delivered", 4),
    ("read", 5),
];

fn status_rank(status: &str) -> u8 {
    STATUS_RANKS
        .iter()
        .find(|(name, _)| *name == status)
        .map_or(0, |(_, rank)| *rank)
}

/// The rank of the stored `status` column in SQL, from [`STATUS_RANKS`].
fn status_rank_sql() -> String {
    let cases: String = STATUS_RANKS
        .iter()
        .map(|(name, rank)| format!(" WHEN '{name}' THEN {rank}"))
        .collect();
    format!("CASE status{cases} ELSE 0 END")
}

type ConversationRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

/// Selects a [`ConversationRow`] from `conversations c` joined with its lead `l`.
const CONVERSATION_SELECT: &str = "c.id, c.customer_number, l.id, l.name, c.summary, c.takeover_user_id, c.takeover_at,
     (SELECT COUNT(*) FROM messages m WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id AND m.sender <> 'system'),
     c.last_message_at, c.created_at
     FROM conversations c LEFT JOIN leads l ON l.tenant_id = c.tenant_id AND l.phone = c.customer_number";

fn conversation_from(row: ConversationRow) -> Result<Conversation, StoreError> {
    let (id, customer_number, lead, name, summary, takeover, takeover_at, count, last, created) =
        row;
    Ok(Conversation {
        id: parse_id(&id)?,
        customer_number,
        lead_id: lead.as_deref().map(parse_id).transpose()?,
        customer_name: name.unwrap_or_default(),
        summary,
        takeover_user_id: takeover.as_deref().map(parse_id).transpose()?,
        takeover_at,
        message_count: count,
        last_message_at: last,
        created_at: created,
    })
}

type MessageRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
);

fn message_from(row: MessageRow) -> Result<Message, StoreError> {
    let (id, channel, direction, sender, user, body, media, sid, status, error_code, call, at) =
        row;
    Ok(Message {
        id,
        channel: if channel == "sms" {
            Channel::Sms
        } else {
            Channel::Voice
        },
        direction,
        sender,
        sender_user_id: user.as_deref().map(parse_id).transpose()?,
        body,
        media_urls: parse_json(&media)?,
        twilio_sid: sid,
        status,
        error_code,
        call_id: call.as_deref().map(parse_id).transpose()?,
        created_at: at,
    })
}

/// The sort key of a conversation in the list: its last line's time, then its id.
fn cursor_of(conversation: &Conversation) -> String {
    time_id_cursor(
        conversation
            .last_message_at
            .unwrap_or(conversation.created_at),
        conversation.id,
    )
}

impl Store {
    /// Records a line in the customer's conversation (created on first use), with its usage
    /// (SMS segments, model tokens). `None` when a text with the same Twilio SID is already
    /// recorded: Twilio retried its webhook.
    pub async fn record_message(
        &self,
        tenant: TenantId,
        text: &NewMessage<'_>,
    ) -> Result<Option<Message>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let conversation =
            conversation_id(&mut tx, tenant, text.customer, Some(text.at_ms)).await?;
        let (sender, direction) = match text.sender {
            Speaker::Customer => ("customer", "inbound"),
            Speaker::Agent => ("agent", "outbound"),
            Speaker::Staff => ("staff", "outbound"),
        };
        let id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction, sender, sender_user_id,
                body, media_urls, twilio_sid, status, error_code, segments, created_at, updated_at)
             VALUES ($1, $2, $3, $14, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT (twilio_sid) DO NOTHING",
        )
        .bind(&id)
        .bind(tenant.to_string())
        .bind(&conversation)
        .bind(direction)
        .bind(sender)
        .bind(text.sender_user_id.map(|u| u.to_string()))
        .bind(text.body)
        .bind(to_json(&text.media_urls))
        .bind(text.twilio_sid)
        .bind(text.status)
        .bind(text.error_code)
        .bind(text.segments)
        .bind(text.at_ms)
        .bind(match text.channel {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        })
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        usage::insert_usage(
            &mut tx,
            tenant,
            ("sms_segments", text.segments),
            None,
            text.at_ms,
        )
        .await?;
        usage::insert_usage(
            &mut tx,
            tenant,
            ("llm_tokens", text.llm_tokens),
            None,
            text.at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Message {
            id,
            channel: text.channel,
            direction: direction.to_owned(),
            sender: sender.to_owned(),
            sender_user_id: text.sender_user_id,
            body: text.body.to_owned(),
            media_urls: text.media_urls.to_vec(),
            twilio_sid: text.twilio_sid.map(str::to_owned),
            status: text.status.to_owned(),
            error_code: text.error_code.map(str::to_owned),
            call_id: None,
            created_at: text.at_ms,
        }))
    }

    /// Applies Twilio's delivery report for a message we sent. `false` when no message has
    /// that SID. A status earlier in a message's life than the one recorded is ignored, since
    /// Twilio's callbacks can arrive out of order.
    pub async fn apply_message_status(
        &self,
        message_sid: &str,
        status: &str,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        // One statement, so two reports handled at once cannot leave the older one last.
        let updated = sqlx::query(&format!(
            "UPDATE messages SET status = $2, error_code = COALESCE($3, error_code), updated_at = $4
             WHERE twilio_sid = $1 AND {} <= $5",
            status_rank_sql()
        ))
        .bind(message_sid)
        .bind(status)
        .bind(error_code)
        .bind(now_ms())
        .bind(i64::from(status_rank(status)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let known = updated > 0
            || sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages WHERE twilio_sid = $1")
                .bind(message_sid)
                .fetch_one(&mut *tx)
                .await?
                > 0;
        tx.commit().await?;
        Ok(known)
    }

    /// The tenant's conversations, most recent first, `limit` at a time after `cursor` (read
    /// from a page's `next_cursor` by [`super::parse_time_id_cursor`]); only those taken over
    /// by staff when `taken_over`.
    pub async fn conversations(
        &self,
        tenant: TenantId,
        taken_over: bool,
        cursor: Option<(i64, ConversationId)>,
        limit: i64,
    ) -> Result<ConversationPage, StoreError> {
        let (before_at, before_id) =
            cursor.map_or((i64::MAX, String::new()), |(at, id)| (at, id.to_string()));
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_SELECT}
             WHERE c.tenant_id = $1 AND ($2 = 0 OR c.takeover_user_id IS NOT NULL)
               AND (COALESCE(c.last_message_at, c.created_at) < $3
                    OR (COALESCE(c.last_message_at, c.created_at) = $3 AND ($4 = '' OR c.id < $4)))
             ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC
             LIMIT $5"
        ))
        .bind(tenant.to_string())
        .bind(i64::from(taken_over))
        .bind(before_at)
        .bind(&before_id)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .into_iter()
            .map(conversation_from)
            .collect::<Result<Vec<_>, _>>()?;
        let (items, next_cursor) =
            page_of(items, usize::try_from(limit).unwrap_or_default(), cursor_of);
        Ok(ConversationPage { items, next_cursor })
    }

    /// One conversation of the tenant.
    pub async fn conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Conversation, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_SELECT} WHERE c.tenant_id = $1 AND c.id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        conversation_from(row.ok_or(StoreError::NotFound)?)
    }

    /// One conversation with its lines of both channels, oldest first, corrections applied.
    pub async fn conversation_detail(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<ConversationDetail, StoreError> {
        let conversation = self.conversation(tenant, id).await?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT id, channel, direction, sender, sender_user_id, body, media_urls, twilio_sid, status, error_code,
                    call_id, created_at
             FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND sender <> 'system'
             ORDER BY created_at, id",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let messages = rows
            .into_iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ConversationDetail {
            conversation,
            messages: apply_corrections(messages),
        })
    }

    /// Takes the conversation over for `user` (the agent stops answering this customer on
    /// every channel), or hands it back to the agent when `user` is `None`.
    pub async fn set_takeover(
        &self,
        tenant: TenantId,
        id: ConversationId,
        user: Option<UserId>,
    ) -> Result<Conversation, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE conversations SET takeover_user_id = $3, takeover_at = $4, updated_at = $5
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(user.map(|u| u.to_string()))
        .bind(user.map(|_| now))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        self.conversation(tenant, id).await
    }

    /// The staff member who has taken over the customer's conversation, if anyone has.
    pub async fn takeover_of(
        &self,
        tenant: TenantId,
        customer: &str,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self.begin_read(Scope::Tenant(tenant)).await?;
        let user: Option<Option<String>> = sqlx::query_scalar(
            "SELECT takeover_user_id FROM conversations WHERE tenant_id = $1 AND customer_number = $2",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        user.flatten().as_deref().map(parse_id).transpose()
    }

    /// The summary of the customer's last analysed call and when it started, for the agent
    /// that texts with them afterwards.
    pub async fn last_call_summary(
        &self,
        tenant: TenantId,
        customer: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT started_at, summary FROM calls
             WHERE tenant_id = $1 AND (from_number = $2 OR to_number = $2) AND summary IS NOT NULL
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_status_never_moves_a_message_back() {
        assert!(status_rank("sent") < status_rank("delivered"));
        assert!(status_rank("queued") < status_rank("sent"));
        assert!(status_rank("delivered") < status_rank("read"));
        assert!(status_rank("undelivered") > status_rank("sending"));
    }
}
