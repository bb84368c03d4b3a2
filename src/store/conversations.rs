//! Customer conversations: one thread per (tenant, customer number) across SMS and voice,
//! its running summary, and the lead whose fields fill an agent's `{{variables}}`. The store
//! implements the runtime's [`ConversationStore`] port.

use std::collections::BTreeMap;

use actors::domain::TenantId;
use actors::ports::{
    Channel, ConversationSnapshot, ConversationStore, HistoryEntry, PortResult, Speaker,
};
use async_trait::async_trait;
use sqlx::{Any, Transaction};

use super::{now_ms, Actor, NewMessage, Scope, Store, StoreError};

/// The conversation's id, created on first use, in one statement. `last_message_at` (a
/// message being recorded) becomes its last message and update time; otherwise the update
/// time is now.
pub(super) async fn conversation_id(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    customer: &str,
    last_message_at: Option<i64>,
) -> Result<String, StoreError> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "INSERT INTO conversations (id, tenant_id, customer_number, created_at, updated_at, last_message_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, customer_number) DO UPDATE SET updated_at = excluded.updated_at,
             last_message_at = COALESCE(excluded.last_message_at, conversations.last_message_at)
         RETURNING id",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(customer)
    .bind(now)
    .bind(last_message_at.unwrap_or(now))
    .bind(last_message_at)
    .fetch_one(&mut **tx)
    .await?)
}

impl Store {
    async fn load_conversation(
        &self,
        tenant: TenantId,
        customer: &str,
    ) -> Result<ConversationSnapshot, StoreError> {
        let mut tx = self.begin_read(Scope::Tenant(tenant)).await?;
        let summary: Option<String> = sqlx::query_scalar(
            "SELECT summary FROM conversations WHERE tenant_id = $1 AND customer_number = $2",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?;
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT m.sender, m.channel, m.body, m.created_at FROM messages m
             JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
             WHERE m.tenant_id = $1 AND c.customer_number = $2 AND m.sender <> 'system'
             ORDER BY m.created_at, m.id",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .fetch_all(&mut *tx)
        .await?;
        let lead = super::leads::customer_variables(&mut tx, tenant, customer).await?;
        tx.commit().await?;
        let history = rows
            .into_iter()
            .map(|(sender, channel, text, at_ms)| {
                let speaker = match sender.as_str() {
                    "customer" => Speaker::Customer,
                    "agent" => Speaker::Agent,
                    _ => Speaker::Staff,
                };
                let channel = if channel == "sms" {
                    Channel::Sms
                } else {
                    Channel::Voice
                };
                HistoryEntry {
                    speaker,
                    channel,
                    text,
                    at_ms,
                }
            })
            .collect();
        Ok(ConversationSnapshot {
            history,
            summary: summary.unwrap_or_default(),
            lead,
        })
    }

    async fn append_line(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        let line = NewMessage {
            customer,
            channel: entry.channel,
            sender: entry.speaker,
            sender_user_id: None,
            body: &entry.text,
            media_urls: &[],
            twilio_sid: None,
            status: "delivered",
            error_code: None,
            segments: 0,
            llm_tokens: 0,
            at_ms: entry.at_ms,
        };
        self.record_message(tenant, &line).await.map(|_| ())
    }

    async fn set_summary(
        &self,
        tenant: TenantId,
        customer: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let conversation = conversation_id(&mut tx, tenant, customer, None).await?;
        sqlx::query("UPDATE conversations SET summary = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(&conversation)
            .bind(summary)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets lead fields the agent learnt (its `update_lead` tool) on the customer's lead,
    /// creating the lead on first use; see `leads::learn` for where each field goes.
    async fn merge_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let fields = fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())));
        super::leads::learn(
            &mut tx,
            tenant,
            customer,
            (Actor::Agent, None),
            None,
            fields,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ConversationStore for Store {
    async fn load(&self, tenant: TenantId, customer: &str) -> PortResult<ConversationSnapshot> {
        self.load_conversation(tenant, customer)
            .await
            .map_err(|e| e.into_port("conversation store"))
    }

    async fn append(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> PortResult<()> {
        self.append_line(tenant, customer, entry)
            .await
            .map_err(|e| e.into_port("conversation store"))
    }

    async fn save_summary(
        &self,
        tenant: TenantId,
        customer: &str,
        summary: &str,
    ) -> PortResult<()> {
        self.set_summary(tenant, customer, summary)
            .await
            .map_err(|e| e.into_port("conversation store"))
    }

    async fn update_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.merge_lead(tenant, customer, &fields)
            .await
            .map_err(|e| e.into_port("conversation store"))
    }

    async fn schedule_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> PortResult<String> {
        self.book_agent_callback(tenant, customer, when, note).await
    }
}
