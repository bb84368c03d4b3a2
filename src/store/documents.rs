//! Knowledge-base documents: what a tenant uploaded and where its ingestion stands
//! (`queued` → `extracting` → `embedding` → `ready`, or `failed` with a reason). The text
//! itself lives in the vector store as chunks; this row is the document's record.

use actors::domain::TenantId;
use serde::Serialize;

use super::tenants::time_of;
use super::{now_ms, parse_id, Actor, Scope, Store, StoreError};
use chrono::{DateTime, Utc};

/// A document's place in ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Uploaded, waiting for its turn.
    Queued,
    /// Its text is being read.
    Extracting,
    /// Its chunks are being embedded and stored.
    Embedding,
    /// Searchable.
    Ready,
    /// Not searchable; `failure_reason` says why.
    Failed,
}

impl DocumentStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Extracting => "extracting",
            Self::Embedding => "embedding",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        Ok(match raw {
            "queued" => Self::Queued,
            "extracting" => Self::Extracting,
            "embedding" => Self::Embedding,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            other => return Err(StoreError::Corrupt(format!("document status {other}"))),
        })
    }
}

/// A tenant's document as staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Document {
    /// The document.
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// Its name (the uploaded file name unless another was given); unique per tenant, and
    /// uploading the same name again replaces the document.
    pub name: String,
    /// What its content was detected as: `pdf`, `docx`, `html`, `markdown` or `text`.
    pub content_type: String,
    /// Bytes uploaded.
    pub size_bytes: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Where ingestion stands.
    pub status: DocumentStatus,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Ingestion progress, 0 to 1.
    pub progress: f64,
    /// Searchable chunks.
    pub chunk_count: i64,
    /// First upload.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// An upload to record.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its detected kind.
    pub content_type: &'a str,
    /// Bytes uploaded.
    pub size_bytes: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: &'a str,
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    name: String,
    content_type: String,
    size_bytes: i64,
    sha256: String,
    status: String,
    failure_reason: Option<String>,
    progress: f64,
    chunk_count: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StoreError;
    fn try_from(r: DocumentRow) -> Result<Self, StoreError> {
        Ok(Document {
            id: parse_id(&r.id)?,
            name: r.name,
            content_type: r.content_type,
            size_bytes: r.size_bytes,
            sha256: r.sha256,
            status: DocumentStatus::parse(&r.status)?,
            failure_reason: r.failure_reason,
            progress: r.progress,
            chunk_count: r.chunk_count,
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

/// How long an ingestion may go without progress before a starting server takes it for
/// one a stopped server left behind.
pub const INGESTION_STALL_MS: i64 = 120_000;

const DOCUMENT_COLUMNS: &str = "id, name, content_type, size_bytes, sha256, status, failure_reason, progress, chunk_count, created_at, updated_at";

impl Store {
    /// Records an upload as `queued`: a new document, or, when the tenant already has one of
    /// that name, the same document (same id) starting over with the new bytes.
    pub async fn upsert_document(
        &self,
        tenant: TenantId,
        actor: Actor,
        upload: &NewDocument<'_>,
    ) -> Result<Document, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO documents (id, tenant_id, name, content_type, size_bytes, sha256, status,
                failure_reason, progress, chunk_count, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', NULL, 0, 0, $7, $7)
             ON CONFLICT (tenant_id, name) DO UPDATE SET content_type = $4, size_bytes = $5,
                sha256 = $6, status = 'queued', failure_reason = NULL, progress = 0,
                chunk_count = 0, updated_at = $7",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(upload.name)
        .bind(upload.content_type)
        .bind(upload.size_bytes)
        .bind(upload.sha256)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row: DocumentRow = sqlx::query_as(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.to_string())
        .bind(upload.name)
        .fetch_one(&mut *tx)
        .await?;
        super::audit::record(
            &mut tx,
            tenant,
            actor,
            "document.uploaded",
            "document",
            Some(&row.id),
            &serde_json::json!({"name": upload.name, "size_bytes": upload.size_bytes}),
        )
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Moves a document's ingestion on. `false` when the document is gone (deleted while it
    /// was being ingested).
    pub async fn set_document_progress(
        &self,
        tenant: TenantId,
        id: uuid::Uuid,
        status: DocumentStatus,
        (progress, chunk_count): (f64, i64),
        failure: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let updated = sqlx::query(
            "UPDATE documents SET status = $3, progress = $4, chunk_count = $5, failure_reason = $6,
                updated_at = $7
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(progress)
        .bind(chunk_count)
        .bind(failure)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// The tenant's documents, newest change first.
    pub async fn documents(&self, tenant: TenantId) -> Result<Vec<Document>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = $1 ORDER BY updated_at DESC, id DESC"
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(Document::try_from).collect()
    }

    /// One of the tenant's documents.
    pub async fn document(&self, tenant: TenantId, id: uuid::Uuid) -> Result<Document, StoreError> {
        let table = ("documents", DOCUMENT_COLUMNS);
        self.owned_row::<DocumentRow, _>(tenant, table, &id.to_string())
            .await
    }

    /// Removes a document's record (its chunks are the vector store's to remove).
    pub async fn delete_document(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: uuid::Uuid,
    ) -> Result<(), StoreError> {
        let table = ("documents", "document");
        self.delete_one(tenant, actor, table, &id.to_string(), None)
            .await
    }

    /// Documents whose ingestion a stopped server left unfinished (no progress for
    /// [`INGESTION_STALL_MS`]; another node's live ingestion moves more often): they are
    /// marked failed so staff know to upload them again. Returns how many.
    pub async fn fail_interrupted_documents(&self) -> Result<u64, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let failed = sqlx::query(
            "UPDATE documents SET status = 'failed', failure_reason = $1, updated_at = $2
             WHERE status IN ('queued', 'extracting', 'embedding') AND updated_at < $3",
        )
        .bind("the server stopped while reading this document; upload it again")
        .bind(now_ms())
        .bind(now_ms() - INGESTION_STALL_MS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(failed)
    }
}
