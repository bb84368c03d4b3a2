//! The production vector store: a Qdrant server (or cluster) over gRPC, chosen by
//! `QDRANT_URL`, for several nodes that must share one knowledge base.
//!
//! Every tenant's chunks live in one collection (Qdrant's recommended layout for many
//! tenants), each point carrying its tenant in the payload under an `is_tenant` keyword
//! index. Isolation is enforced here, not by callers: every search, prefetch and delete
//! goes through [`QdrantVectorStore::tenant_filter`], so no query can leave the tenant
//! condition out, and point ids are derived from the tenant as well as the chunk, so one
//! tenant can never overwrite another's point.
//!
//! The points are the same as the embedded store's ([`super::points`]): BM25 sparse vectors
//! (computed here with Qdrant's own tokenizer, IDF applied by the server) always, and
//! `dense_<dim>` vectors added to the collection the first time a dimension is seen, so
//! both adapters rank alike and pass the same tests.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use actors::domain::TenantId;
use actors::ports::{
    KnowledgeChunk, KnowledgeHit, KnowledgeQuery, PortError, PortResult, VectorStore,
};
use async_trait::async_trait;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    CreateVectorNameRequestBuilder, DeletePointsBuilder, DenseVectorCreationConfigBuilder,
    Distance, FieldType, Filter, KeywordIndexParamsBuilder, Modifier, NamedVectors, PointStruct,
    PrefetchQueryBuilder, Query, QueryPointsBuilder, RrfBuilder, ScoredPoint,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector,
    VectorInput,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use super::points::{self, dense_name, Bm25, DOCUMENT_ID, PREFETCH_FACTOR, RRF_K, SPARSE};

/// Payload key of the tenant a point belongs to.
const TENANT_ID: &str = "tenant_id";

/// How long one request to the server may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Knowledge chunks in a Qdrant server collection. See the module docs.
pub struct QdrantVectorStore {
    client: Qdrant,
    /// The collection holding every tenant's chunks.
    collection: String,
    /// Turns text into BM25 sparse vectors, exactly as the embedded store does.
    bm25: Arc<Bm25>,
    /// Set once the collection and its indexes are known to exist.
    ready: OnceCell<()>,
    /// Dense vector names the collection is known to have.
    dense_names: Mutex<HashSet<String>>,
}

impl QdrantVectorStore {
    /// A store on the server at `url` (its gRPC port, 6334 by default), in `collection`.
    /// Nothing is sent until the first request; the collection is created then if missing.
    pub fn new(url: &str, api_key: Option<&SecretString>, collection: &str) -> PortResult<Self> {
        let mut config = Qdrant::from_url(url)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .skip_compatibility_check();
        if let Some(key) = api_key {
            config = config.api_key(key.expose_secret().to_owned());
        }
        let client = config
            .build()
            .map_err(|e| PortError::Refused(format!("QDRANT_URL: {e}")))?;
        Ok(Self {
            client,
            collection: collection.to_owned(),
            bm25: Arc::new(Bm25::english()?),
            ready: OnceCell::new(),
            dense_names: Mutex::new(HashSet::new()),
        })
    }

    /// The filter every request of `tenant` is scoped by, with `more` conditions.
    fn tenant_filter(tenant: TenantId, more: impl IntoIterator<Item = Condition>) -> Filter {
        let mut conditions = vec![Condition::matches(TENANT_ID, tenant.to_string())];
        conditions.extend(more);
        Filter::must(conditions)
    }

    /// Creates the collection and its payload indexes unless they exist, once per process.
    async fn ensure_collection(&self) -> PortResult<()> {
        self.ready
            .get_or_try_init(|| async {
                let exists = self
                    .client
                    .collection_exists(&self.collection)
                    .await
                    .map_err(port_error)?;
                if !exists {
                    let mut sparse = SparseVectorsConfigBuilder::default();
                    sparse.add_named_vector_params(
                        SPARSE,
                        SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
                    );
                    let created = self
                        .client
                        .create_collection(
                            CreateCollectionBuilder::new(&self.collection)
                                .sparse_vectors_config(sparse),
                        )
                        .await;
                    // Another node may have created it meanwhile.
                    if let Err(e) = created {
                        if !already_exists(&e) {
                            return Err(port_error(e));
                        }
                    }
                }
                for (field, params) in [
                    (
                        TENANT_ID,
                        KeywordIndexParamsBuilder::default().is_tenant(true),
                    ),
                    (DOCUMENT_ID, KeywordIndexParamsBuilder::default()),
                ] {
                    self.client
                        .create_field_index(
                            CreateFieldIndexCollectionBuilder::new(
                                &self.collection,
                                field,
                                FieldType::Keyword,
                            )
                            .field_index_params(params)
                            .wait(true),
                        )
                        .await
                        .map_err(port_error)?;
                }
                let info = self
                    .client
                    .collection_info(&self.collection)
                    .await
                    .map_err(port_error)?;
                let known = info
                    .result
                    .and_then(|i| i.config)
                    .and_then(|c| c.params)
                    .and_then(|p| p.vectors_config)
                    .and_then(|v| v.config);
                if let Some(qdrant_client::qdrant::vectors_config::Config::ParamsMap(map)) = known {
                    self.dense_names
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(map.map.into_keys());
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Whether the collection has the dense vector `name` (as far as this process knows).
    fn has_dense(&self, name: &str) -> bool {
        self.dense_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    /// Adds the dense vector `dense_<dim>` for each dimension in `dims` the collection lacks.
    async fn ensure_dense(&self, dims: &[usize]) -> PortResult<()> {
        for &dim in dims {
            let name = dense_name(dim);
            if self.has_dense(&name) {
                continue;
            }
            let created = self
                .client
                .create_vector_name(
                    CreateVectorNameRequestBuilder::new(
                        &self.collection,
                        &name,
                        DenseVectorCreationConfigBuilder::new(dim as u64, Distance::Cosine),
                    )
                    .wait(true),
                )
                .await;
            if let Err(e) = created {
                if !already_exists(&e) {
                    return Err(port_error(e));
                }
            }
            self.dense_names
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name);
        }
        Ok(())
    }

    /// The point a chunk of `tenant` is stored as.
    fn point(&self, tenant: TenantId, chunk: KnowledgeChunk) -> PortResult<PointStruct> {
        let tenant = tenant.to_string();
        let sparse = self.bm25.document(&chunk);
        let mut vectors = NamedVectors::default();
        if !sparse.indices.is_empty() {
            vectors = vectors.add_vector(SPARSE, Vector::new_sparse(sparse.indices, sparse.values));
        }
        let id = points::point_uuid(&tenant, &chunk.id).to_string();
        let mut payload = points::payload(&chunk);
        payload.insert(TENANT_ID.to_owned(), serde_json::Value::String(tenant));
        if let Some(dense) = chunk.dense {
            vectors = vectors.add_vector(dense_name(dense.len()), Vector::new_dense(dense));
        }
        Ok(PointStruct::new(id, vectors, Payload::from(payload)))
    }
}

/// Whether the server refused because the thing already exists (a race with another node).
fn already_exists(e: &QdrantError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("already exists")
}

/// Maps a client error: an unreachable or overloaded server may recover, anything else is
/// the request's fault.
fn port_error(e: QdrantError) -> PortError {
    let transient = match &e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted
                | tonic::Code::Internal
                | tonic::Code::Unknown
        ),
        QdrantError::ResourceExhaustedError { .. } => true,
        _ => false,
    };
    if transient {
        PortError::Unavailable(format!("knowledge store ({e})"))
    } else {
        PortError::Refused(format!("knowledge store: {e}"))
    }
}

/// The chunk a search hit's payload describes; `None` if the payload is not one of ours.
fn hit(point: ScoredPoint) -> Option<KnowledgeHit> {
    let field = |key: &str| match point.payload.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    };
    Some(KnowledgeHit {
        chunk: points::chunk_from_payload(field)?,
        score: point.score,
    })
}

#[async_trait]
impl VectorStore for QdrantVectorStore {
    async fn upsert(&self, tenant: TenantId, chunks: Vec<KnowledgeChunk>) -> PortResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        chunks.iter().try_for_each(points::validate)?;
        self.ensure_collection().await?;
        self.ensure_dense(&points::dense_dims(&chunks)).await?;
        let points = chunks
            .into_iter()
            .map(|chunk| self.point(tenant, chunk))
            .collect::<PortResult<Vec<_>>>()?;
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
            .await
            .map_err(port_error)?;
        Ok(())
    }

    async fn search(
        &self,
        tenant: TenantId,
        query: KnowledgeQuery,
    ) -> PortResult<Vec<KnowledgeHit>> {
        let Some(k) = points::search_limit(&query)? else {
            return Ok(Vec::new());
        };
        self.ensure_collection().await?;
        let mut arms: Vec<(String, VectorInput)> = Vec::new();
        let sparse = self.bm25.query(&query.text);
        if !sparse.indices.is_empty() {
            arms.push((
                SPARSE.to_owned(),
                VectorInput::new_sparse(sparse.indices, sparse.values),
            ));
        }
        if let Some(dense) = query.dense {
            let name = dense_name(dense.len());
            // A dimension no chunk has had yet: only BM25 can answer.
            if self.has_dense(&name) {
                arms.push((name, VectorInput::new_dense(dense)));
            }
        }
        let mut request = QueryPointsBuilder::new(&self.collection)
            .filter(Self::tenant_filter(tenant, []))
            .limit(k as u64)
            .with_payload(true);
        request = match arms.len() {
            0 => return Ok(Vec::new()),
            1 => {
                let (using, vector) = arms.remove(0);
                request.query(Query::new_nearest(vector)).using(using)
            }
            _ => {
                for (using, vector) in arms {
                    request = request.add_prefetch(
                        PrefetchQueryBuilder::default()
                            .query(Query::new_nearest(vector))
                            .using(using)
                            .filter(Self::tenant_filter(tenant, []))
                            .limit((k * PREFETCH_FACTOR) as u64),
                    );
                }
                request.query(Query::new_rrf(RrfBuilder::with_k(RRF_K as u32)))
            }
        };
        let found = self.client.query(request).await.map_err(port_error)?;
        Ok(found.result.into_iter().filter_map(hit).collect())
    }

    async fn delete_document(&self, tenant: TenantId, document_id: &str) -> PortResult<()> {
        self.ensure_collection().await?;
        let filter = Self::tenant_filter(
            tenant,
            [Condition::matches(DOCUMENT_ID, document_id.to_owned())],
        );
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(port_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_names_the_tenant_first() {
        let tenant = TenantId::new();
        let filter = QdrantVectorStore::tenant_filter(
            tenant,
            [Condition::matches(DOCUMENT_ID, "d".to_owned())],
        );
        assert_eq!(filter.must.len(), 2);
        assert_eq!(
            filter.must[0],
            Condition::matches(TENANT_ID, tenant.to_string())
        );
    }

    #[test]
    fn a_malformed_url_is_refused_at_once() {
        assert!(QdrantVectorStore::new("not a url", None, "c").is_err());
    }
}
