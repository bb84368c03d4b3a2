//! The embedded vector store: Qdrant Edge in process, one shard per tenant under
//! `<data_dir>/knowledge/<tenant_id>/`.
//!
//! Tenant isolation is by construction: a tenant's upserts, searches and deletes only ever
//! open the directory named after that tenant, so no filter can be forgotten.
//!
//! Every chunk gets a BM25 sparse vector (`bm25`, built by Qdrant's own [`EdgeBm25`] from the
//! title and text, with IDF applied by the shard at query time), so search works offline
//! without an embedder. Chunks that carry a dense vector also store it under `dense_<dim>`;
//! that named vector is added to the shard the first time a chunk of that dimension arrives
//! (a shard made before an embedder was configured accepts dense vectors later, and a new
//! embedding model with another dimension gets a vector of its own instead of an error).
//! A query with a dense vector of a dimension the shard knows searches both arms and fuses
//! them by reciprocal rank inside Qdrant; otherwise it searches BM25 alone.
//!
//! Qdrant Edge blocks (file I/O, mmap), so every call runs in `spawn_blocking`. Writes to a
//! shard are serialised by a mutex of ours and each ends with a flush: `EdgeShard::flush`
//! panics if it overlaps another write, and Edge 0.7 does not replay its WAL on load, so an
//! unflushed write would be lost by a crash.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actors::domain::TenantId;
use actors::ports::{
    KnowledgeChunk, KnowledgeHit, KnowledgeQuery, PortError, PortResult, VectorStore,
};
use async_trait::async_trait;
use qdrant_edge::external::serde_json::{Map, Value};
use qdrant_edge::{
    Condition, CreateIndex, CreateVectorName, DenseVectorConfig, Distance, EdgeConfig, EdgeShard,
    EdgeSparseVectorParams, FieldCondition, FieldIndexOperations, Filter, Fusion, JsonPath, Match,
    Modifier, NamedQuery, NamedVectors, OperationError, PayloadFieldSchema, PayloadSchemaType,
    PointId, PointInsertOperations, PointOperations, PointStruct, PointStructPersisted, Prefetch,
    QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, SparseVector, UpdateOperation,
    ValueVariants, VectorInternal, VectorNameConfig, VectorNameOperations, WalOptions,
    WithPayloadInterface, WithVector,
};

use super::points::{self, dense_name, Bm25, DOCUMENT_ID, PREFETCH_FACTOR, RRF_K, SPARSE};

/// File Qdrant Edge writes when it creates a shard; its presence means "load, don't create".
const EDGE_CONFIG_FILE: &str = "edge_config.json";

/// Size of one WAL segment. Edge preallocates it (32 MiB by default), once per tenant.
const WAL_SEGMENT_BYTES: usize = 1 << 20;

/// Knowledge chunks in Qdrant Edge shards on local disk. See the module docs.
pub struct EdgeVectorStore {
    /// `<data_dir>/knowledge`: one directory per tenant below it.
    root: PathBuf,
    /// Turns text into BM25 sparse vectors, the same way for chunks and queries.
    bm25: Arc<Bm25>,
    /// Shards opened so far. A directory must never be opened twice (Edge does not lock
    /// it), so opening happens under this lock (which may thus be held for the few
    /// milliseconds a shard takes to open).
    shards: Arc<Mutex<HashMap<TenantId, Arc<Shard>>>>,
}

/// One tenant's open shard.
struct Shard {
    /// The Qdrant Edge shard.
    edge: EdgeShard,
    /// Held by every write and its flush (see the module docs); searches do not take it.
    writes: Mutex<()>,
}

impl EdgeVectorStore {
    /// A store keeping its shards under `<data_dir>/knowledge`. Nothing is created on disk
    /// until a tenant's first chunk is stored.
    pub fn new(data_dir: &Path) -> PortResult<Self> {
        Ok(Self {
            root: data_dir.join("knowledge"),
            bm25: Arc::new(Bm25::english()?),
            shards: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The tenant's shard, opened (and, if `create`, created) on first use. `None` when the
    /// tenant has no shard and `create` is false: it has never stored anything.
    async fn shard(&self, tenant: TenantId, create: bool) -> PortResult<Option<Arc<Shard>>> {
        if let Some(shard) = lock(&self.shards).get(&tenant) {
            return Ok(Some(Arc::clone(shard)));
        }
        let shards = Arc::clone(&self.shards);
        let dir = self.root.join(tenant.to_string());
        blocking(move || {
            // Opened and cached under the lock, inside the blocking task: a caller that gives
            // up waiting cannot leave a half-opened handle behind for a second one to race.
            let mut shards = lock(&shards);
            if let Some(shard) = shards.get(&tenant) {
                return Ok(Some(Arc::clone(shard)));
            }
            let edge = if dir.join(EDGE_CONFIG_FILE).exists() {
                EdgeShard::load(&dir, None).map_err(port_error)?
            } else if create {
                create_shard(&dir)?
            } else {
                return Ok(None);
            };
            let shard = Arc::new(Shard {
                edge,
                writes: Mutex::new(()),
            });
            shards.insert(tenant, Arc::clone(&shard));
            Ok(Some(shard))
        })
        .await
    }
}

/// Locks `m`; a panic while it was held (Edge `expect`s on I/O failures) leaves nothing
/// half-done that the lock protects, so the data is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates a shard in `dir`: the BM25 vector (no dense one yet), a small WAL and an index
/// on the document id.
fn create_shard(dir: &Path) -> PortResult<EdgeShard> {
    std::fs::create_dir_all(dir)
        .map_err(|e| PortError::Unavailable(format!("knowledge store ({}: {e})", dir.display())))?;
    let config = EdgeConfig {
        sparse_vectors: HashMap::from([(
            SPARSE.to_owned(),
            EdgeSparseVectorParams {
                modifier: Some(Modifier::Idf),
                ..EdgeSparseVectorParams::default()
            },
        )]),
        wal_options: Some(WalOptions {
            segment_capacity: WAL_SEGMENT_BYTES,
            segment_queue_len: 0,
            retain_closed: NonZeroUsize::MIN,
        }),
        ..EdgeConfig::default()
    };
    let edge = EdgeShard::new(dir, config).map_err(port_error)?;
    edge.update(UpdateOperation::FieldIndexOperation(
        FieldIndexOperations::CreateIndex(CreateIndex {
            field_name: json_path(DOCUMENT_ID)?,
            field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
        }),
    ))
    .map_err(port_error)?;
    edge.flush();
    Ok(edge)
}

impl Shard {
    /// Runs `write` then flushes, with no other write of this shard in between.
    fn write(&self, write: impl FnOnce(&EdgeShard) -> PortResult<()>) -> PortResult<()> {
        let _serialised = lock(&self.writes);
        let written = write(&self.edge);
        // Flushed even after an error: part of the write may have been applied.
        self.edge.flush();
        written
    }
}

/// Adds the dense vector `dense_<dim>` for each dimension in `dims` the shard lacks.
fn ensure_dense(edge: &EdgeShard, dims: &[usize]) -> PortResult<()> {
    for &dim in dims {
        let name = dense_name(dim);
        if edge.config().vectors.contains_key(&name) {
            continue;
        }
        let config = VectorNameConfig::dense(DenseVectorConfig {
            size: dim,
            distance: Distance::Cosine,
            multivector_config: None,
            datatype: None,
        });
        edge.update(UpdateOperation::VectorNameOperation(
            VectorNameOperations::CreateVectorName(CreateVectorName {
                vector_name: name,
                config,
            }),
        ))
        .map_err(port_error)?;
    }
    Ok(())
}

/// The point a chunk of `tenant` is stored as.
fn point(bm25: &Bm25, tenant: TenantId, chunk: KnowledgeChunk) -> PointStruct {
    let sparse = bm25.document(&chunk);
    let mut vectors = NamedVectors::default();
    if !sparse.indices.is_empty() {
        vectors = vectors.add_vector(
            SPARSE,
            SparseVector {
                indices: sparse.indices,
                values: sparse.values,
            },
        );
    }
    let id = PointId::Uuid(points::point_uuid(&tenant.to_string(), &chunk.id));
    // An object: `PointStruct::new` panics on any other JSON value.
    let payload = Value::Object(points::payload(&chunk));
    if let Some(dense) = chunk.dense {
        vectors = vectors.add_vector(dense_name(dense.len()), dense);
    }
    PointStruct::new(id, vectors, payload)
}

/// A nearest-neighbour query on the named vector.
fn nearest(using: String, query: VectorInternal) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query,
        using: Some(using),
    }))
}

/// The chunk a search hit's payload describes; `None` if the payload is not one of ours.
fn hit(point: ScoredPoint) -> Option<KnowledgeHit> {
    let payload = point.payload?.0;
    Some(KnowledgeHit {
        chunk: points::chunk_from_payload(|key| field(&payload, key))?,
        score: point.score,
    })
}

/// A string field of a payload.
fn field(payload: &Map<String, Value>, key: &str) -> Option<String> {
    payload.get(key)?.as_str().map(str::to_owned)
}

/// A payload key as Qdrant wants it.
fn json_path(key: &str) -> PortResult<JsonPath> {
    JsonPath::try_from(key)
        .map_err(|()| PortError::Refused(format!("`{key}` is not a payload key")))
}

/// Maps a Qdrant error: storage trouble may pass, anything else is the request's fault.
fn port_error(e: OperationError) -> PortError {
    match e {
        OperationError::ServiceError { .. }
        | OperationError::InconsistentStorage { .. }
        | OperationError::OutOfMemory { .. }
        | OperationError::Cancelled { .. }
        | OperationError::Timeout { .. } => {
            PortError::Unavailable(format!("knowledge store ({e})"))
        }
        other => PortError::Refused(format!("knowledge store: {other}")),
    }
}

/// Runs blocking Qdrant work off the async threads. A panic inside (Edge has `expect`s on
/// its I/O paths) becomes an error, not a crashed caller.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> PortResult<T> + Send + 'static,
) -> PortResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(PortError::Unavailable(format!("knowledge store ({e})"))))
}

#[async_trait]
impl VectorStore for EdgeVectorStore {
    async fn upsert(&self, tenant: TenantId, chunks: Vec<KnowledgeChunk>) -> PortResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        chunks.iter().try_for_each(points::validate)?;
        let Some(shard) = self.shard(tenant, true).await? else {
            return Err(PortError::Unavailable("knowledge store".to_owned()));
        };
        let bm25 = Arc::clone(&self.bm25);
        blocking(move || {
            let dims = points::dense_dims(&chunks);
            let points: Vec<PointStructPersisted> = chunks
                .into_iter()
                .map(|chunk| point(&bm25, tenant, chunk).into())
                .collect();
            shard.write(|edge| {
                ensure_dense(edge, &dims)?;
                edge.update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(port_error)
            })
        })
        .await
    }

    async fn search(
        &self,
        tenant: TenantId,
        query: KnowledgeQuery,
    ) -> PortResult<Vec<KnowledgeHit>> {
        let Some(k) = points::search_limit(&query)? else {
            return Ok(Vec::new());
        };
        let Some(shard) = self.shard(tenant, false).await? else {
            return Ok(Vec::new());
        };
        let bm25 = Arc::clone(&self.bm25);
        blocking(move || {
            let mut arms = Vec::new();
            let sparse = bm25.query(&query.text);
            if !sparse.indices.is_empty() {
                let sparse = SparseVector {
                    indices: sparse.indices,
                    values: sparse.values,
                };
                arms.push(nearest(SPARSE.to_owned(), sparse.into()));
            }
            if let Some(dense) = query.dense {
                let name = dense_name(dense.len());
                // A dimension no chunk has had yet: only BM25 can answer.
                if shard.edge.config().vectors.contains_key(&name) {
                    arms.push(nearest(name, dense.into()));
                }
            }
            let (prefetches, scoring) = match arms.len() {
                0 => return Ok(Vec::new()),
                1 => (Vec::new(), arms.pop()),
                _ => {
                    let prefetches = arms
                        .into_iter()
                        .map(|arm| Prefetch {
                            prefetches: Vec::new(),
                            query: Some(arm),
                            limit: k * PREFETCH_FACTOR,
                            params: None,
                            filter: None,
                            score_threshold: None,
                        })
                        .collect();
                    let rrf = ScoringQuery::Fusion(Fusion::Rrf {
                        k: RRF_K,
                        weights: None,
                    });
                    (prefetches, Some(rrf))
                }
            };
            let points = shard
                .edge
                .query(QueryRequest {
                    prefetches,
                    query: scoring,
                    filter: None,
                    score_threshold: None,
                    limit: k,
                    offset: 0,
                    params: None,
                    with_vector: WithVector::Bool(false),
                    with_payload: WithPayloadInterface::Bool(true),
                })
                .map_err(port_error)?;
            Ok(points.into_iter().filter_map(hit).collect())
        })
        .await
    }

    async fn delete_document(&self, tenant: TenantId, document_id: &str) -> PortResult<()> {
        let Some(shard) = self.shard(tenant, false).await? else {
            return Ok(());
        };
        let filter = Filter::new_must(Condition::Field(FieldCondition::new_match(
            json_path(DOCUMENT_ID)?,
            Match::new_value(ValueVariants::String(document_id.to_owned())),
        )));
        blocking(move || {
            shard.write(|edge| {
                edge.update(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter),
                ))
                .map_err(port_error)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edge shards are shared across blocking tasks, which needs them `Send + Sync`.
    const _: fn() = || {
        fn shared<T: Send + Sync>() {}
        shared::<EdgeShard>();
    };
}
