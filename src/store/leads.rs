//! The leads CRM: one lead per customer number within a tenant, what staff, the agent and the
//! post-call analysis learn about them, and the per-lead audit trail (`lead_changes`) of every
//! change, saying who made it and what each changed field was before and after.
//!
//! Messages and calls are not tied to a lead by id but by number, as they happen before anyone
//! creates a lead: a lead's stats count the texts of the conversation whose customer number is
//! the lead's phone, and the calls from it (inbound) or to it (outbound).
//!
//! The lead's fields are also what an agent's `{{variables}}` are filled from: see
//! [`LEAD_VARIABLES`] and [`lead_variables`].

use std::collections::{BTreeMap, BTreeSet};

use actors::domain::{CallId, LeadId, TenantId, UserId, E164};
use actors::ports::Sentiment;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{Any, Transaction};

use super::tenants::time_of;
use super::{audit, now_ms, parse_id, parse_json, to_json, Actor, Scope, Store, StoreError};
use crate::settings::DatabaseKind;

/// Where a lead is in the sales process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeadStatus {
    /// Not yet contacted.
    #[default]
    New,
    /// Talked to.
    Contacted,
    /// A real prospect.
    Qualified,
    /// Has an appointment.
    Appointment,
    /// Bought.
    Won,
    /// Will not buy.
    Lost,
}

impl LeadStatus {
    /// Every status, in sales-process order.
    pub const ALL: [LeadStatus; 6] = [
        Self::New,
        Self::Contacted,
        Self::Qualified,
        Self::Appointment,
        Self::Won,
        Self::Lost,
    ];

    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Contacted => "contacted",
            Self::Qualified => "qualified",
            Self::Appointment => "appointment",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    /// Reads a name, forgiving case and surrounding space.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A lead's fields, already checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadDraft {
    /// The customer's name (may be empty while unknown).
    pub name: String,
    /// E.164 number; unique within the tenant.
    #[schema(value_type = Option<String>, example = "+14155550123")]
    pub phone: Option<E164>,
    /// Email address.
    pub email: Option<String>,
    /// `new`, `contacted`, `qualified`, `appointment`, `won` or `lost`.
    pub status: LeadStatus,
    /// `positive`, `neutral` or `negative`.
    #[schema(value_type = Option<String>, example = "positive")]
    pub sentiment: Option<Sentiment>,
    /// How ready they are to pay or finance ("pre-approved", "needs financing").
    pub funding_readiness: Option<String>,
    /// What is known of their credit ("good", "rebuilding").
    pub credit_profile: Option<String>,
    /// Product or vehicle preferences; each key is also a prompt variable.
    #[schema(value_type = Object, example = json!({"vehicle_interest": "RAV4 hybrid"}))]
    pub preferences: Map<String, Value>,
    /// Free-form notes.
    pub notes: String,
    /// The staff member who owns the lead.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub assigned_user_id: Option<UserId>,
    /// Anything else; each key is also a prompt variable.
    #[schema(value_type = Object)]
    pub custom_fields: Map<String, Value>,
}

/// What the tenant's records say about contact with the lead.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadStats {
    /// Texts exchanged with the lead's number, both ways.
    pub message_count: i64,
    /// Calls with the lead's number, inbound and outbound, answered or not.
    pub call_count: i64,
    /// Time on those calls, from answer to hang-up, in milliseconds.
    pub total_call_ms: i64,
    /// The latest text or call, either way.
    pub last_contact_at: Option<DateTime<Utc>>,
}

/// A lead as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Lead {
    /// The lead's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: LeadId,
    /// Its fields.
    #[serde(flatten)]
    pub draft: LeadDraft,
    /// Contact with it so far.
    #[serde(flatten)]
    pub stats: LeadStats,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One entry of a lead's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadChange {
    /// `user` (a staff member), `agent` (the agent's `update_lead` tool) or `system` (the
    /// post-call analysis).
    pub actor_kind: String,
    /// The staff member, when `actor_kind` is `user`.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub user_id: Option<String>,
    /// The call the change came from, when it came from one.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub call_id: Option<String>,
    /// Each changed field: `{"status": {"from": "new", "to": "qualified"}}`.
    #[schema(value_type = Object, example = json!({"status": {"from": "new", "to": "qualified"}}))]
    pub changes: Map<String, Value>,
    /// When.
    pub created_at: DateTime<Utc>,
}

// ---------------------------------------------------------------- prompt variables

/// The variables every lead gives an agent's templates, whether or not the lead has a value
/// for them (an empty one fills as nothing); besides them, each key of the lead's
/// preferences and custom fields is a variable of its own.
pub const LEAD_VARIABLES: [&str; 8] = [
    "customer_name",
    "customer_email",
    "customer_phone",
    "lead_status",
    "sentiment",
    "funding_readiness",
    "credit_profile",
    "notes",
];

/// A JSON value as a template shows it: a string as is, anything else as JSON.
fn shown(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The lead's fields as prompt variables: preferences, then custom fields over them, then the
/// named fields of [`LEAD_VARIABLES`] over both. Empty values are left out.
pub fn lead_variables(lead: &LeadDraft) -> BTreeMap<String, String> {
    let [name, email, phone, status, sentiment, funding, credit, notes] = LEAD_VARIABLES;
    let named = [
        (name, Some(lead.name.clone())),
        (email, lead.email.clone()),
        (phone, lead.phone.as_ref().map(E164::to_string)),
        (status, Some(lead.status.as_str().to_owned())),
        (sentiment, lead.sentiment.map(|s| s.as_str().to_owned())),
        (funding, lead.funding_readiness.clone()),
        (credit, lead.credit_profile.clone()),
        (notes, Some(lead.notes.clone())),
    ];
    lead.preferences
        .iter()
        .chain(lead.custom_fields.iter())
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), shown(v)))
        .chain(
            named
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
        )
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

// ---------------------------------------------------------------- change tracking

/// The lead's fields as JSON, by name: what the audit trail compares.
fn field_values(lead: &LeadDraft) -> Map<String, Value> {
    match serde_json::to_value(lead) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `{field: {"from": …, "to": …}}` for each field that differs.
fn diff(before: &LeadDraft, after: &LeadDraft) -> Map<String, Value> {
    let before = field_values(before);
    field_values(after)
        .into_iter()
        .filter(|(k, to)| before.get(k) != Some(to))
        .map(|(k, to)| {
            let from = before.get(&k).cloned().unwrap_or(Value::Null);
            (k, serde_json::json!({ "from": from, "to": to }))
        })
        .collect()
}

/// Appends the changes from `before` to `after` to the lead's trail, if there are any;
/// returns them.
async fn record_changes(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    lead: LeadId,
    (actor, call): (Actor, Option<CallId>),
    before: &LeadDraft,
    after: &LeadDraft,
) -> Result<Map<String, Value>, StoreError> {
    let changes = diff(before, after);
    if changes.is_empty() {
        return Ok(changes);
    }
    let (kind, user) = match actor {
        Actor::User(id) => ("user", Some(id.to_string())),
        Actor::Agent => ("agent", None),
        Actor::System => ("system", None),
    };
    sqlx::query(
        "INSERT INTO lead_changes (id, tenant_id, lead_id, actor_kind, user_id, call_id, changes, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(lead.to_string())
    .bind(kind)
    .bind(user)
    .bind(call.map(|c| c.to_string()))
    .bind(to_json(&changes))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(changes)
}

// ---------------------------------------------------------------- rows

#[derive(sqlx::FromRow)]
struct DraftRow {
    id: String,
    name: String,
    phone: Option<String>,
    email: Option<String>,
    status: String,
    sentiment: Option<String>,
    funding_readiness: Option<String>,
    credit_profile: Option<String>,
    preferences: String,
    notes: String,
    assigned_user_id: Option<String>,
    custom_fields: String,
}

impl DraftRow {
    fn into_draft(self) -> Result<(LeadId, LeadDraft), StoreError> {
        let draft = LeadDraft {
            name: self.name,
            phone: self
                .phone
                .map(|p| E164::parse(&p).map_err(|e| StoreError::Corrupt(e.to_string())))
                .transpose()?,
            email: self.email,
            status: LeadStatus::parse(&self.status).ok_or_else(|| {
                StoreError::Corrupt(format!("`{}` is not a lead status", self.status))
            })?,
            sentiment: self
                .sentiment
                .map(|s| {
                    Sentiment::parse(&s)
                        .ok_or_else(|| StoreError::Corrupt(format!("`{s}` is not a sentiment")))
                })
                .transpose()?,
            funding_readiness: self.funding_readiness,
            credit_profile: self.credit_profile,
            preferences: parse_json(&self.preferences)?,
            notes: self.notes,
            assigned_user_id: self.assigned_user_id.as_deref().map(parse_id).transpose()?,
            custom_fields: parse_json(&self.custom_fields)?,
        };
        Ok((parse_id(&self.id)?, draft))
    }
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    actor_kind: String,
    user_id: Option<String>,
    call_id: Option<String>,
    changes: String,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct LeadRow {
    #[sqlx(flatten)]
    draft: DraftRow,
    message_count: i64,
    call_count: i64,
    total_call_ms: i64,
    last_contact_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<LeadRow> for Lead {
    type Error = StoreError;
    fn try_from(r: LeadRow) -> Result<Self, StoreError> {
        let (id, draft) = r.draft.into_draft()?;
        Ok(Lead {
            id,
            draft,
            stats: LeadStats {
                message_count: r.message_count,
                call_count: r.call_count,
                total_call_ms: r.total_call_ms,
                last_contact_at: r.last_contact_at.map(time_of).transpose()?,
            },
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

const DRAFT_COLUMNS: &str = "id, name, phone, email, status, sentiment, funding_readiness, credit_profile, preferences, notes, assigned_user_id, custom_fields";

/// Every lead of tenant `$1` with its stats, as a table `s` with the lead's columns,
/// `message_count`, `call_count`, `total_call_ms` and `last_contact_at`. A call is with the
/// lead's number when the customer's side of it (the caller of an inbound call, the callee
/// of an outbound one) is that number.
const LEADS_WITH_STATS: &str = "
    SELECT t.*, CASE
            WHEN t.last_call_at IS NULL THEN t.last_message_at
            WHEN t.last_message_at IS NULL OR t.last_call_at > t.last_message_at THEN t.last_call_at
            ELSE t.last_message_at END AS last_contact_at
    FROM (
        SELECT l.id, l.name, l.phone, l.email, l.status, l.sentiment, l.funding_readiness, l.credit_profile,
            l.preferences, l.notes, l.assigned_user_id, l.custom_fields, l.created_at, l.updated_at,
            (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
             WHERE c.tenant_id = l.tenant_id AND c.customer_number = l.phone AND m.channel = 'sms') AS message_count,
            (SELECT MAX(m.created_at) FROM messages m JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
             WHERE c.tenant_id = l.tenant_id AND c.customer_number = l.phone AND m.channel = 'sms') AS last_message_at,
            (SELECT COUNT(*) FROM calls k WHERE k.tenant_id = l.tenant_id
                AND CASE WHEN k.direction = 'inbound' THEN k.from_number ELSE k.to_number END = l.phone) AS call_count,
            (SELECT CAST(COALESCE(SUM(k.duration_ms), 0) AS BIGINT) FROM calls k WHERE k.tenant_id = l.tenant_id
                AND CASE WHEN k.direction = 'inbound' THEN k.from_number ELSE k.to_number END = l.phone) AS total_call_ms,
            (SELECT MAX(k.started_at) FROM calls k WHERE k.tenant_id = l.tenant_id
                AND CASE WHEN k.direction = 'inbound' THEN k.from_number ELSE k.to_number END = l.phone) AS last_call_at
        FROM leads l WHERE l.tenant_id = $1
    ) t";

/// Reads a lead's fields, by id or by number. With `lock`, the row is first locked until the
/// transaction ends (a no-op update, which locks on both backends), so a change made from
/// what was read cannot undo a concurrent one.
async fn draft_where(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    (column, value): (&str, &str),
    lock: bool,
) -> Result<Option<(LeadId, LeadDraft)>, StoreError> {
    if lock {
        sqlx::query(&format!(
            "UPDATE leads SET updated_at = updated_at WHERE tenant_id = $1 AND {column} = $2"
        ))
        .bind(tenant.to_string())
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    let row: Option<DraftRow> = sqlx::query_as(&format!(
        "SELECT {DRAFT_COLUMNS} FROM leads WHERE tenant_id = $1 AND {column} = $2"
    ))
    .bind(tenant.to_string())
    .bind(value)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(DraftRow::into_draft).transpose()
}

/// The customer's lead, created (empty but for the number) when they have none.
async fn lead_of_customer(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    customer: &str,
) -> Result<(LeadId, LeadDraft), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO leads (id, tenant_id, phone, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (tenant_id, phone) DO NOTHING",
    )
    .bind(LeadId::new().to_string())
    .bind(tenant.to_string())
    .bind(customer)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    draft_where(tx, tenant, ("phone", customer), true)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Writes the lead's fields; `phone` is refused as a conflict when another lead has it and
/// `assigned_user_id` as a bad reference when it is not a user of the tenant.
async fn write_fields(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    id: LeadId,
    lead: &LeadDraft,
    insert: bool,
) -> Result<(), StoreError> {
    let sql = if insert {
        "INSERT INTO leads (tenant_id, id, name, phone, email, status, sentiment, funding_readiness, credit_profile,
            preferences, notes, assigned_user_id, custom_fields, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)"
    } else {
        "UPDATE leads SET name = $3, phone = $4, email = $5, status = $6, sentiment = $7, funding_readiness = $8,
            credit_profile = $9, preferences = $10, notes = $11, assigned_user_id = $12, custom_fields = $13,
            updated_at = $14
         WHERE tenant_id = $1 AND id = $2"
    };
    let written = sqlx::query(sql)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(&lead.name)
        .bind(lead.phone.as_ref().map(E164::to_string))
        .bind(lead.email.clone())
        .bind(lead.status.as_str())
        .bind(lead.sentiment.map(Sentiment::as_str))
        .bind(lead.funding_readiness.clone())
        .bind(lead.credit_profile.clone())
        .bind(to_json(&lead.preferences))
        .bind(&lead.notes)
        .bind(lead.assigned_user_id.map(|u| u.to_string()))
        .bind(to_json(&lead.custom_fields))
        .bind(now_ms())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::refused_as(
            Some(StoreError::Conflict(
                "another lead already has this phone number",
            )),
            Some(StoreError::BadReference(
                "assigned_user_id is not a user of this tenant",
            )),
        ))?;
    if written.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

// ---------------------------------------------------------------- learnt fields

/// Lays fields learnt from a conversation over `lead`: names of lead columns (or of their
/// variables, such as `customer_name`) set the column when the value fits it (notes are
/// appended to what is there); everything else goes into the custom fields. Null values
/// are ignored.
fn merge_learnt(lead: &mut LeadDraft, fields: impl IntoIterator<Item = (String, Value)>) {
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        let text = shown(&value).trim().to_owned();
        match key.as_str() {
            "name" | "customer_name" => lead.name = text,
            "email" | "customer_email" => lead.email = Some(text.to_lowercase()),
            "funding_readiness" => lead.funding_readiness = Some(text),
            "credit_profile" => lead.credit_profile = Some(text),
            // Learnt notes add to what staff wrote rather than replace it.
            "notes" if lead.notes.trim().is_empty() => lead.notes = text,
            "notes" if !lead.notes.contains(&text) => {
                lead.notes = format!("{}\n{text}", lead.notes.trim_end());
            }
            "notes" => {}
            "status" | "lead_status" if LeadStatus::parse(&text).is_some() => {
                lead.status = LeadStatus::parse(&text).unwrap_or_default();
            }
            "sentiment" if Sentiment::parse(&text).is_some() => {
                lead.sentiment = Sentiment::parse(&text);
            }
            _ => {
                lead.custom_fields.insert(key, value);
            }
        }
    }
}

/// Applies learnt fields to the customer's lead (created on first use) and records what
/// changed as `actor`, in `call` when there is one. A customer without a phone number (a
/// `client:` caller) has no lead, so nothing is kept for them.
pub(crate) async fn learn(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    customer: &str,
    (actor, call): (Actor, Option<CallId>),
    sentiment: Option<Sentiment>,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Result<(), StoreError> {
    let Ok(customer) = E164::parse(customer) else {
        return Ok(());
    };
    let (id, before) = lead_of_customer(tx, tenant, &customer.to_string()).await?;
    let mut after = before.clone();
    merge_learnt(&mut after, fields);
    if sentiment.is_some() {
        after.sentiment = sentiment;
    }
    if record_changes(tx, tenant, id, (actor, call), &before, &after)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    write_fields(tx, tenant, id, &after, false).await
}

/// The prompt variables of the customer's lead; empty when they have none.
pub(crate) async fn customer_variables(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    customer: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(draft_where(tx, tenant, ("phone", customer), false)
        .await?
        .map(|(_, lead)| lead_variables(&lead))
        .unwrap_or_default())
}

// ---------------------------------------------------------------- listing

/// What a list of leads is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadSort {
    /// Creation time.
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// Name, case-insensitively.
    Name,
    /// Latest text or call (leads never contacted first).
    LastContactAt,
}

impl LeadSort {
    /// Reads `created_at`, `updated_at`, `name` or `last_contact_at`, each optionally
    /// preceded by `-` for descending order; returns the order and whether it descends.
    pub fn parse(raw: &str) -> Option<(Self, bool)> {
        let (name, descending) = match raw.trim().strip_prefix('-') {
            Some(name) => (name, true),
            None => (raw.trim(), false),
        };
        let sort = match name {
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "name" => Self::Name,
            "last_contact_at" => Self::LastContactAt,
            _ => return None,
        };
        Some((sort, descending))
    }

    fn name(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::Name => "name",
            Self::LastContactAt => "last_contact_at",
        }
    }
}

/// Which leads to list, in what order, from where.
#[derive(Debug, Clone, Default)]
pub struct LeadQuery {
    /// Part of the name (any case) or of the number.
    pub search: Option<String>,
    /// Only this status.
    pub status: Option<LeadStatus>,
    /// Only this sentiment.
    pub sentiment: Option<Sentiment>,
    /// Only leads assigned to this staff member.
    pub assigned_user_id: Option<UserId>,
    /// Created at or after, Unix ms.
    pub created_from_ms: Option<i64>,
    /// Created before, Unix ms.
    pub created_to_ms: Option<i64>,
    /// Order and direction (default: newest first).
    pub sort: Option<(LeadSort, bool)>,
    /// Where the previous page ended, as given in its `next_cursor`.
    pub cursor: Option<String>,
    /// Most leads to return.
    pub limit: i64,
}

/// One page of leads.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LeadPage {
    /// The leads, in the requested order.
    pub items: Vec<Lead>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Where a page ended: the sort it was made with, the last lead's sort key and id. Opaque to
/// clients (URL-safe base64 of JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    sort: String,
    descending: bool,
    key: Value,
    id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(to_json(self))
    }

    fn decode(raw: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Why a list query was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor was not made by this server for this sort.
    #[error("is not a cursor of this list and sort; start again without it")]
    BadCursor,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A value bound to a list query.
enum Bind {
    Text(String),
    Int(i64),
}

/// `%…%` for LIKE, with LIKE's own characters escaped (by `\`).
fn like_pattern(raw: &str) -> String {
    let mut pattern = String::from("%");
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// The sort key column of the stats table for `sort`; names compare by code point on both
    /// backends so pages are cut the same way.
    fn sort_key(&self, sort: LeadSort) -> String {
        match sort {
            LeadSort::CreatedAt => "s.created_at".to_owned(),
            LeadSort::UpdatedAt => "s.updated_at".to_owned(),
            LeadSort::LastContactAt => "COALESCE(s.last_contact_at, 0)".to_owned(),
            LeadSort::Name => match self.kind {
                DatabaseKind::Postgres => "LOWER(s.name) COLLATE \"C\"".to_owned(),
                DatabaseKind::Sqlite => "LOWER(s.name)".to_owned(),
            },
        }
    }

    /// A page of the tenant's leads with their stats.
    pub async fn leads(&self, tenant: TenantId, query: &LeadQuery) -> Result<LeadPage, ListError> {
        let (sort, descending) = query.sort.unwrap_or((LeadSort::CreatedAt, true));
        let key = self.sort_key(sort);
        let mut binds = vec![Bind::Text(tenant.to_string())];
        let mut conditions: Vec<String> = Vec::new();
        let push = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(search) = query.search.as_deref().filter(|s| !s.trim().is_empty()) {
            let p = push(
                &mut binds,
                Bind::Text(like_pattern(&search.trim().to_lowercase())),
            );
            conditions.push(format!(
                "(LOWER(s.name) LIKE {p} ESCAPE '\\' OR s.phone LIKE {p} ESCAPE '\\')"
            ));
        }
        if let Some(status) = query.status {
            let p = push(&mut binds, Bind::Text(status.as_str().to_owned()));
            conditions.push(format!("s.status = {p}"));
        }
        if let Some(sentiment) = query.sentiment {
            let p = push(&mut binds, Bind::Text(sentiment.as_str().to_owned()));
            conditions.push(format!("s.sentiment = {p}"));
        }
        if let Some(user) = query.assigned_user_id {
            let p = push(&mut binds, Bind::Text(user.to_string()));
            conditions.push(format!("s.assigned_user_id = {p}"));
        }
        if let Some(from) = query.created_from_ms {
            let p = push(&mut binds, Bind::Int(from));
            conditions.push(format!("s.created_at >= {p}"));
        }
        if let Some(to) = query.created_to_ms {
            let p = push(&mut binds, Bind::Int(to));
            conditions.push(format!("s.created_at < {p}"));
        }
        if let Some(raw) = &query.cursor {
            let cursor = Cursor::decode(raw)
                .filter(|c| c.sort == sort.name() && c.descending == descending)
                .ok_or(ListError::BadCursor)?;
            let at = match (&cursor.key, sort) {
                (Value::String(name), LeadSort::Name) => Bind::Text(name.clone()),
                (
                    Value::Number(n),
                    LeadSort::CreatedAt | LeadSort::UpdatedAt | LeadSort::LastContactAt,
                ) => Bind::Int(n.as_i64().ok_or(ListError::BadCursor)?),
                _ => return Err(ListError::BadCursor),
            };
            let k = push(&mut binds, at);
            let id = push(&mut binds, Bind::Text(cursor.id));
            let op = if descending { "<" } else { ">" };
            conditions.push(format!(
                "({key} {op} {k} OR ({key} = {k} AND s.id {op} {id}))"
            ));
        }
        let limit = push(&mut binds, Bind::Int(query.limit + 1));
        let direction = if descending { "DESC" } else { "ASC" };
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT s.*, {key} AS sort_key FROM ({LEADS_WITH_STATS}) s {filter}
             ORDER BY {key} {direction}, s.id {direction} LIMIT {limit}"
        );
        let mut select = sqlx::query(&sql);
        for bind in binds {
            select = match bind {
                Bind::Text(text) => select.bind(text),
                Bind::Int(n) => select.bind(n),
            };
        }
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows = select.fetch_all(&mut *tx).await.map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last_key = Value::Null;
        for row in rows.iter().take(usize::try_from(query.limit).unwrap_or(0)) {
            use sqlx::{FromRow, Row};
            let lead: Lead = LeadRow::from_row(row)
                .map_err(StoreError::from)?
                .try_into()?;
            last_key = match sort {
                LeadSort::Name => Value::from(
                    row.try_get::<String, _>("sort_key")
                        .map_err(StoreError::from)?,
                ),
                _ => Value::from(
                    row.try_get::<i64, _>("sort_key")
                        .map_err(StoreError::from)?,
                ),
            };
            items.push(lead);
        }
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > query.limit;
        let next_cursor = match items.last() {
            Some(last) if more => Some(
                Cursor {
                    sort: sort.name().to_owned(),
                    descending,
                    key: last_key,
                    id: last.id.to_string(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(LeadPage { items, next_cursor })
    }

    /// One lead of the tenant, with its stats.
    pub async fn lead(&self, tenant: TenantId, id: LeadId) -> Result<Lead, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let lead = lead_in(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(lead)
    }

    /// Creates a lead as a staff member (or another `actor`); the trail and the audit log
    /// record every field it was given.
    pub async fn create_lead(
        &self,
        tenant: TenantId,
        actor: Actor,
        lead: &LeadDraft,
    ) -> Result<Lead, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let id = LeadId::new();
        write_fields(&mut tx, tenant, id, lead, true).await?;
        let changes = record_changes(
            &mut tx,
            tenant,
            id,
            (actor, None),
            &LeadDraft::default(),
            lead,
        )
        .await?;
        audit::record(
            &mut tx,
            tenant,
            actor,
            "lead.created",
            "lead",
            Some(&id.to_string()),
            &changes,
        )
        .await?;
        let created = lead_in(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Changes a lead: `change` is given the current fields and returns the new ones (or why
    /// not), inside the transaction with the lead locked, so concurrent changes cannot interleave. What changed goes
    /// to the trail and the audit log.
    pub async fn change_lead<E: From<StoreError>>(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: LeadId,
        change: impl FnOnce(LeadDraft) -> Result<LeadDraft, E>,
    ) -> Result<Lead, E> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let (_, before) = draft_where(&mut tx, tenant, ("id", &id.to_string()), true)
            .await?
            .ok_or(StoreError::NotFound)?;
        let after = change(before.clone())?;
        let changes = record_changes(&mut tx, tenant, id, (actor, None), &before, &after).await?;
        if !changes.is_empty() {
            write_fields(&mut tx, tenant, id, &after, false).await?;
            audit::record(
                &mut tx,
                tenant,
                actor,
                "lead.updated",
                "lead",
                Some(&id.to_string()),
                &changes,
            )
            .await?;
        }
        let updated = lead_in(&mut tx, tenant, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(updated)
    }

    /// Deletes a lead and its trail; its calls and conversation stay, unlinked.
    pub async fn delete_lead(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: LeadId,
    ) -> Result<(), StoreError> {
        self.delete_one(tenant, actor, ("leads", "lead"), &id.to_string(), None)
            .await
    }

    /// The lead's trail, newest first, at most `limit` entries; `NotFound` when the tenant has
    /// no such lead.
    pub async fn lead_changes(
        &self,
        tenant: TenantId,
        id: LeadId,
        limit: i64,
    ) -> Result<Vec<LeadChange>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        draft_where(&mut tx, tenant, ("id", &id.to_string()), false)
            .await?
            .ok_or(StoreError::NotFound)?;
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT actor_kind, user_id, call_id, changes, created_at FROM lead_changes
             WHERE tenant_id = $1 AND lead_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                Ok(LeadChange {
                    actor_kind: r.actor_kind,
                    user_id: r.user_id,
                    call_id: r.call_id,
                    changes: parse_json(&r.changes)?,
                    created_at: time_of(r.created_at)?,
                })
            })
            .collect()
    }

    /// Every variable name the tenant's leads can fill: [`LEAD_VARIABLES`] and each key of
    /// any lead's preferences or custom fields.
    pub async fn lead_variable_names(
        &self,
        tenant: TenantId,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT preferences, custom_fields FROM leads WHERE tenant_id = $1",
        )
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut names: BTreeSet<String> = LEAD_VARIABLES.iter().map(|&n| n.to_owned()).collect();
        for (preferences, custom) in rows {
            for raw in [preferences, custom] {
                names.extend(
                    parse_json::<Map<String, Value>>(&raw)?
                        .into_iter()
                        .map(|(k, _)| k),
                );
            }
        }
        Ok(names)
    }
}

/// One lead with its stats, inside a transaction.
async fn lead_in(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    id: LeadId,
) -> Result<Lead, StoreError> {
    let row: Option<LeadRow> = sqlx::query_as(&format!(
        "SELECT s.* FROM ({LEADS_WITH_STATS}) s WHERE s.id = $2"
    ))
    .bind(tenant.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.ok_or(StoreError::NotFound)?.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trail_names_only_the_fields_that_changed() {
        let before = LeadDraft {
            name: "Ana".to_owned(),
            ..LeadDraft::default()
        };
        let mut after = before.clone();
        after.status = LeadStatus::Qualified;
        after
            .custom_fields
            .insert("budget".to_owned(), Value::from(30_000));
        let changes = diff(&before, &after);
        assert_eq!(
            Value::Object(changes),
            serde_json::json!({
                "status": {"from": "new", "to": "qualified"},
                "custom_fields": {"from": {}, "to": {"budget": 30000}},
            })
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn learnt_fields_fill_columns_they_fit_and_custom_fields_otherwise() {
        let mut lead = LeadDraft::default();
        merge_learnt(
            &mut lead,
            [
                ("customer_name", Value::from(" Ana ")),
                ("email", Value::from("Ana@Example.com")),
                ("status", Value::from("Qualified")),
                ("lead_status", Value::from("not a status")),
                ("sentiment", Value::from("great")),
                ("vehicle_interest", Value::from("RAV4")),
                ("budget", Value::from(30_000)),
                ("ignored", Value::Null),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        assert_eq!(lead.name, "Ana");
        assert_eq!(lead.email.as_deref(), Some("ana@example.com"));
        assert_eq!(lead.status, LeadStatus::Qualified);
        assert_eq!(lead.sentiment, None);
        assert_eq!(
            Value::Object(lead.custom_fields),
            serde_json::json!({"lead_status": "not a status", "sentiment": "great", "vehicle_interest": "RAV4", "budget": 30000})
        );
    }

    #[test]
    fn learnt_notes_add_to_what_staff_wrote() {
        let mut lead = LeadDraft {
            notes: "VIP, call after 5pm".to_owned(),
            ..LeadDraft::default()
        };
        let note = |text: &str| [("notes".to_owned(), Value::from(text))];
        merge_learnt(&mut lead, note("Wants a red Civic"));
        merge_learnt(&mut lead, note("Wants a red Civic"));
        assert_eq!(lead.notes, "VIP, call after 5pm\nWants a red Civic");
        let mut empty = LeadDraft::default();
        merge_learnt(&mut empty, note("First contact"));
        assert_eq!(empty.notes, "First contact");
    }

    #[test]
    fn variables_give_named_fields_over_custom_fields_over_preferences() {
        let mut lead = LeadDraft {
            name: "Ana".to_owned(),
            phone: Some(E164::parse("+14155550100").unwrap()),
            funding_readiness: Some("pre-approved".to_owned()),
            ..LeadDraft::default()
        };
        lead.preferences
            .insert("vehicle_interest".to_owned(), Value::from("RAV4"));
        lead.preferences
            .insert("colour".to_owned(), Value::from("red"));
        lead.custom_fields
            .insert("colour".to_owned(), Value::from("blue"));
        lead.custom_fields
            .insert("customer_name".to_owned(), Value::from("not Ana"));
        lead.custom_fields
            .insert("seats".to_owned(), Value::from(7));
        let values = lead_variables(&lead);
        assert_eq!(values["customer_name"], "Ana");
        assert_eq!(values["customer_phone"], "+14155550100");
        assert_eq!(values["lead_status"], "new");
        assert_eq!(values["funding_readiness"], "pre-approved");
        assert_eq!(values["vehicle_interest"], "RAV4");
        assert_eq!(values["colour"], "blue");
        assert_eq!(values["seats"], "7");
        assert!(!values.contains_key("notes"), "empty values are left out");
        assert!(!values.contains_key("customer_email"));
    }

    #[test]
    fn sorts_parse_with_an_optional_minus_and_cursors_round_trip() {
        assert_eq!(
            LeadSort::parse("-created_at"),
            Some((LeadSort::CreatedAt, true))
        );
        assert_eq!(LeadSort::parse("name"), Some((LeadSort::Name, false)));
        assert_eq!(LeadSort::parse("phone"), None);
        let cursor = Cursor {
            sort: "name".to_owned(),
            descending: false,
            key: Value::from("ana"),
            id: "x".to_owned(),
        };
        let back = Cursor::decode(&cursor.encode()).unwrap();
        assert_eq!((back.sort.as_str(), back.key), ("name", Value::from("ana")));
        assert!(Cursor::decode("not a cursor").is_none());
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}
