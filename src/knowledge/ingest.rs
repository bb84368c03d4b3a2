//! The knowledge base as the API uses it: an upload is recorded, then read, chunked,
//! embedded and stored in the background, its status moving `queued` → `extracting` →
//! `embedding` → `ready` (or `failed` with the reason a user can act on), each step on the
//! document's row and as a `document.status` event with its progress; searches and
//! deletions go to the same vector store the calls' knowledge actors read.
//!
//! At most [`MAX_CONCURRENT_EXTRACTIONS`] documents are read at once (reading is CPU work
//! off the async threads); others wait `queued`, so a burst of uploads cannot take every
//! core from live calls.

use std::sync::Arc;

use actors::domain::TenantId;
use actors::knowledge;
use actors::ports::{
    Embedder, EventSink, KnowledgeChunk, KnowledgeHit, PortResult, TenantEvent, VectorStore,
};
use tokio::sync::Semaphore;

use super::chunk::{self, ChunkSettings};
use super::extract::{self, Limits};
use crate::store::{Document, DocumentStatus, Store, StoreError};

/// Chunks embedded and stored per step; progress is reported after each.
const INGEST_BATCH: usize = 64;

/// Documents read at the same time, whatever the number of uploads.
pub const MAX_CONCURRENT_EXTRACTIONS: usize = 2;

/// Documents of every tenant: their records, their chunks and the search over them.
pub struct KnowledgeBase {
    store: Store,
    vectors: Arc<dyn VectorStore>,
    embedder: Option<Arc<dyn Embedder>>,
    /// Where each document's progress is announced.
    events: Arc<dyn EventSink>,
    /// Permits to read a document (see the module docs).
    extractions: Arc<Semaphore>,
    limits: Limits,
}

impl KnowledgeBase {
    /// A knowledge base on `vectors`, with dense vectors from `embedder` when one is
    /// configured (words alone otherwise), announcing documents' progress on `events`.
    pub fn new(
        store: Store,
        (vectors, embedder): (Arc<dyn VectorStore>, Option<Arc<dyn Embedder>>),
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            store,
            vectors,
            embedder,
            events,
            extractions: Arc::new(Semaphore::new(MAX_CONCURRENT_EXTRACTIONS)),
            limits: Limits::default(),
        }
    }

    /// The vector store, shared with the runtime's knowledge actors.
    pub fn vectors(&self) -> Arc<dyn VectorStore> {
        self.vectors.clone()
    }

    /// The embedder, shared with the runtime's knowledge actors.
    pub fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder.clone()
    }

    /// Reads, chunks, embeds and stores `bytes` as `document` in a task of its own; the
    /// document's row says how it goes.
    pub fn ingest_in_background(
        self: &Arc<Self>,
        tenant: TenantId,
        document: Document,
        bytes: Vec<u8>,
    ) {
        let base = self.clone();
        self.announce(tenant, &document, DocumentStatus::Queued, (0.0, 0), None);
        tokio::spawn(async move {
            let id = document.id;
            if let Err(reason) = base.ingest(tenant, &document, bytes).await {
                tracing::warn!(tenant_id = %tenant, document_id = %id, %reason, "a document could not be ingested");
                // What was stored of it goes, so a failed document is never half searchable.
                let _ = base.vectors.delete_document(tenant, &id.to_string()).await;
                if let Err(error) = base
                    .set_progress(
                        tenant,
                        &document,
                        DocumentStatus::Failed,
                        (0.0, 0),
                        Some(&reason),
                    )
                    .await
                {
                    tracing::error!(document_id = %id, %error, "a failed document could not be marked failed");
                }
            }
        });
    }

    /// Records a document's progress and announces it; false when the document is gone.
    async fn set_progress(
        &self,
        tenant: TenantId,
        document: &Document,
        status: DocumentStatus,
        (done, chunks): (f64, i64),
        failure: Option<&str>,
    ) -> Result<bool, StoreError> {
        let exists = self
            .store
            .set_document_progress(tenant, document.id, status, (done, chunks), failure)
            .await?;
        if exists {
            self.announce(tenant, document, status, (done, chunks), failure);
        }
        Ok(exists)
    }

    /// Publishes a `document.status` event.
    fn announce(
        &self,
        tenant: TenantId,
        document: &Document,
        status: DocumentStatus,
        (done, chunks): (f64, i64),
        failure: Option<&str>,
    ) {
        self.events.publish(TenantEvent {
            tenant,
            kind: "document.status",
            call_id: None,
            data: serde_json::json!({
                "document_id": document.id,
                "name": document.name,
                "status": status.as_str(),
                "progress": done,
                "chunk_count": chunks,
                "failure_reason": failure,
            }),
        });
    }

    /// The ingestion of one document; the error is the reason shown to staff.
    async fn ingest(
        &self,
        tenant: TenantId,
        document: &Document,
        bytes: Vec<u8>,
    ) -> Result<(), String> {
        let id = document.id;
        let started = std::time::Instant::now();
        let store_error = |e: StoreError| format!("the database failed: {e}");
        let progress = |status, done: f64, chunks: i64| {
            self.set_progress(tenant, document, status, (done, chunks), None)
        };
        // Waits, still `queued`, while other documents are being read.
        let permit = self
            .extractions
            .acquire()
            .await
            .map_err(|_| "the server is shutting down".to_owned())?;
        if !progress(DocumentStatus::Extracting, 0.0, 0)
            .await
            .map_err(store_error)?
        {
            return Ok(()); // deleted meanwhile
        }
        let extracted = extract::extract_safely(bytes, self.limits.clone())
            .await
            .map_err(|e| e.to_string())?;
        let chunks = chunk::chunk(&document.name, &extracted, ChunkSettings::default());
        drop(permit);
        if chunks.is_empty() {
            return Err("the document has no text to search".to_owned());
        }
        // A document uploaded again replaces all of its old chunks.
        self.vectors
            .delete_document(tenant, &id.to_string())
            .await
            .map_err(|e| format!("the vector store failed: {e}"))?;
        let total = chunks.len();
        let chunks: Vec<KnowledgeChunk> = chunks
            .into_iter()
            .map(|c| KnowledgeChunk {
                id: format!("{id}:{}", c.ordinal),
                document_id: id.to_string(),
                title: document.name.clone(),
                location: c.location,
                text: c.text,
                dense: None,
            })
            .collect();
        let mut stored = 0;
        for batch in chunks.chunks(INGEST_BATCH) {
            let done = stored as f64 / total as f64;
            if !progress(DocumentStatus::Embedding, done, stored as i64)
                .await
                .map_err(store_error)?
            {
                let _ = self.vectors.delete_document(tenant, &id.to_string()).await;
                return Ok(());
            }
            knowledge::ingest(
                tenant,
                self.vectors.clone(),
                self.embedder.clone(),
                batch.to_vec(),
            )
            .await
            .map_err(|e| format!("the chunks could not be stored: {e}"))?;
            stored += batch.len();
        }
        progress(DocumentStatus::Ready, 1.0, total as i64)
            .await
            .map_err(store_error)?;
        metrics::counter!("switchboard_knowledge_documents_ingested_total").increment(1);
        if let Some(pages) = extracted.pages {
            metrics::counter!("switchboard_knowledge_ingested_pages_total")
                .increment(u64::from(pages));
        }
        metrics::histogram!("switchboard_knowledge_ingestion_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(tenant_id = %tenant, document_id = %id, chunks = total, pages = ?extracted.pages, "document ready");
        Ok(())
    }

    /// The chunks of `tenant`'s documents that best match `query`, best first.
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        k: usize,
    ) -> PortResult<Vec<KnowledgeHit>> {
        knowledge::search(
            tenant,
            self.vectors.clone(),
            self.embedder.clone(),
            query.to_owned(),
            k,
        )
        .await
    }

    /// Removes a document's chunks, then its record.
    pub async fn delete(
        &self,
        tenant: TenantId,
        actor: crate::store::Actor,
        id: uuid::Uuid,
    ) -> Result<(), DeleteError> {
        self.store.document(tenant, id).await?;
        self.vectors
            .delete_document(tenant, &id.to_string())
            .await
            .map_err(DeleteError::Vectors)?;
        Ok(self.store.delete_document(tenant, actor, id).await?)
    }
}

/// Why a document could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No such document, or the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its chunks could not be removed (the record stays, so deleting again is possible).
    #[error("the vector store failed: {0}")]
    Vectors(actors::ports::PortError),
}
