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

use super::{now_ms, parse_json, to_json, Scope, Store, StoreError};

/// The conversation's id, created on first use.
async fn conversation_id(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    customer: &str,
) -> Result<String, StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, customer_number, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant_id, customer_number) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(customer)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT id FROM conversations WHERE tenant_id = $1 AND customer_number = $2",
    )
    .bind(tenant.to_string())
    .bind(customer)
    .fetch_one(&mut **tx)
    .await?)
}

#[derive(sqlx::FromRow)]
struct LeadRow {
    name: String,
    email: Option<String>,
    status: String,
    custom_fields: String,
}

/// Lead fields as prompt variables: the named columns under the names agents use, then
/// every custom field under its own name.
fn lead_variables(lead: LeadRow) -> Result<BTreeMap<String, String>, StoreError> {
    let mut fields: BTreeMap<String, String> =
        parse_json::<BTreeMap<String, serde_json::Value>>(&lead.custom_fields)?
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
    if !lead.name.is_empty() {
        fields.insert("customer_name".to_owned(), lead.name);
    }
    if let Some(email) = lead.email {
        fields.insert("customer_email".to_owned(), email);
    }
    fields.insert("lead_status".to_owned(), lead.status);
    Ok(fields)
}

impl Store {
    async fn load_conversation(
        &self,
        tenant: TenantId,
        customer: &str,
    ) -> Result<ConversationSnapshot, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
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
        let lead: Option<LeadRow> =
            sqlx::query_as("SELECT name, email, status, custom_fields FROM leads WHERE tenant_id = $1 AND phone = $2")
                .bind(tenant.to_string())
                .bind(customer)
                .fetch_optional(&mut *tx)
                .await?;
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
            lead: lead.map(lead_variables).transpose()?.unwrap_or_default(),
        })
    }

    async fn append_line(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let conversation = conversation_id(&mut tx, tenant, customer).await?;
        let (sender, direction) = match entry.speaker {
            Speaker::Customer => ("customer", "inbound"),
            Speaker::Agent => ("agent", "outbound"),
            Speaker::Staff => ("staff", "outbound"),
        };
        let channel = match entry.channel {
            Channel::Voice => "voice",
            Channel::Sms => "sms",
        };
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction, sender, body, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'delivered', $8, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(&conversation)
        .bind(channel)
        .bind(direction)
        .bind(sender)
        .bind(&entry.text)
        .bind(entry.at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET last_message_at = $3, updated_at = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(&conversation)
            .bind(entry.at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_summary(
        &self,
        tenant: TenantId,
        customer: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let conversation = conversation_id(&mut tx, tenant, customer).await?;
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

    /// Sets lead fields of the customer's lead, creating the lead on first use: the name and
    /// email go to their columns, everything else into the custom fields.
    async fn merge_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO leads (id, tenant_id, phone, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (tenant_id, phone) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(customer)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let custom: String = sqlx::query_scalar(
            "SELECT custom_fields FROM leads WHERE tenant_id = $1 AND phone = $2",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .fetch_one(&mut *tx)
        .await?;
        let mut custom: BTreeMap<String, serde_json::Value> = parse_json(&custom)?;
        let mut name = None;
        let mut email = None;
        for (key, value) in fields {
            match key.as_str() {
                "name" | "customer_name" => name = Some(value.clone()),
                "email" | "customer_email" => email = Some(value.clone()),
                _ => {
                    custom.insert(key.clone(), serde_json::Value::String(value.clone()));
                }
            }
        }
        sqlx::query(
            "UPDATE leads SET name = COALESCE($3, name), email = COALESCE($4, email), custom_fields = $5,
                last_contact_at = $6, updated_at = $6
             WHERE tenant_id = $1 AND phone = $2",
        )
        .bind(tenant.to_string())
        .bind(customer)
        .bind(name)
        .bind(email)
        .bind(to_json(&custom))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues a callback request for the dashboard and webhooks (`callback.requested`).
    async fn queue_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let payload = serde_json::json!({ "customer": customer, "when": when, "note": note });
        sqlx::query("INSERT INTO outbox_events (id, tenant_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant.to_string())
            .bind("callback.requested")
            .bind(to_json(&payload))
            .bind(now_ms())
            .execute(&mut *tx)
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
    ) -> PortResult<()> {
        self.queue_callback(tenant, customer, when, note)
            .await
            .map_err(|e| e.into_port("conversation store"))
    }
}
