//! A tenant's knowledge base, as the agent and the knowledge API reach it: search for the
//! chunks that answer a question, ingest the chunks of an uploaded document, delete a
//! document.
//!
//! One [`KnowledgeActor`] runs per tenant under its supervisor. It owns no data (the chunks
//! live behind the [`VectorStore`] port) but it owns the tenant: every request it makes to the
//! store carries the actor's own tenant, never one from a message, so a search can only ever
//! see that tenant's documents.
//!
//! Every request runs in a task of its own that replies when done: embedding a query or a
//! document and talking to the store take from milliseconds to minutes, and a live call's
//! search must not queue behind a large upload. Requests therefore run concurrently and may
//! finish out of order.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::domain::TenantId;
use crate::ports::{
    Embedder, KnowledgeChunk, KnowledgeHit, KnowledgeQuery, PortError, PortResult, VectorStore,
};

/// Most texts sent to the embedder in one request: providers cap batch sizes (OpenAI at a
/// few thousand inputs, local servers far lower), and smaller batches fail and retry cheaper.
pub const EMBED_BATCH: usize = 64;

/// Most chunks a search returns, whatever was asked: more would not fit a prompt anyway.
pub const MAX_K: usize = 50;

/// The actor of one tenant's knowledge base. See the module docs.
pub struct KnowledgeActor;

/// What a [`KnowledgeActor`] starts from.
pub struct KnowledgeArgs {
    /// Whose knowledge; the only tenant this actor ever asks the store about.
    pub tenant: TenantId,
    /// Where chunks are kept and searched.
    pub store: Arc<dyn VectorStore>,
    /// Makes dense vectors for semantic search; without one, search is by words only.
    pub embedder: Option<Arc<dyn Embedder>>,
}

/// What a [`KnowledgeActor`] is asked.
pub enum KnowledgeMsg {
    /// The chunks that best match `query`, best first.
    Search {
        /// The question, in the customer's or the model's words.
        query: String,
        /// How many chunks (at most [`MAX_K`]).
        k: usize,
        /// The hits, or why the store could not answer.
        reply: RpcReplyPort<PortResult<Vec<KnowledgeHit>>>,
    },
    /// Adds or replaces chunks, embedding those without a vector first.
    Ingest {
        /// The chunks of one or more documents.
        chunks: Vec<KnowledgeChunk>,
        /// Whether they were stored. On an error nothing may have been stored, or some of
        /// it; ingesting again is safe (chunks are replaced by id).
        reply: RpcReplyPort<PortResult<()>>,
    },
    /// Removes every chunk of a document.
    DeleteDocument {
        /// The document.
        document_id: String,
        /// Whether the store removed them.
        reply: RpcReplyPort<PortResult<()>>,
    },
}

/// The state of a [`KnowledgeActor`]: its tenant and its ports, shared with its tasks.
pub struct KnowledgeState {
    /// Whose knowledge.
    tenant: TenantId,
    /// Where chunks are kept.
    store: Arc<dyn VectorStore>,
    /// Makes dense vectors, if configured.
    embedder: Option<Arc<dyn Embedder>>,
}

/// The store query for a search, or `None` when there is nothing to look for (blank text or
/// `k == 0`). `k` is capped at [`MAX_K`].
pub fn plan_query(text: &str, k: usize) -> Option<KnowledgeQuery> {
    let text = text.trim();
    let k = k.min(MAX_K);
    (!text.is_empty() && k > 0).then(|| KnowledgeQuery {
        text: text.to_owned(),
        dense: None,
        k,
    })
}

/// Searches `tenant`'s chunks (what the actor and the search API run). A failing embedder
/// degrades the search to words only rather than failing it: on a live call a weaker answer
/// beats none.
pub async fn search(
    tenant: TenantId,
    store: Arc<dyn VectorStore>,
    embedder: Option<Arc<dyn Embedder>>,
    text: String,
    k: usize,
) -> PortResult<Vec<KnowledgeHit>> {
    let Some(mut query) = plan_query(&text, k) else {
        return Ok(Vec::new());
    };
    if let Some(embedder) = embedder {
        match embedder.embed(vec![query.text.clone()]).await {
            Ok(mut vectors) if vectors.len() == 1 => query.dense = vectors.pop(),
            Ok(vectors) => tracing::warn!(
                tenant_id = %tenant,
                count = vectors.len(),
                "the embedder returned the wrong number of vectors; searching by words only"
            ),
            Err(error) => tracing::warn!(
                tenant_id = %tenant,
                %error,
                "the query could not be embedded; searching by words only"
            ),
        }
    }
    let k = query.k;
    let started = std::time::Instant::now();
    let searched = store.search(tenant, query).await;
    metrics::histogram!("switchboard_knowledge_search_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    let mut hits = searched?;
    hits.truncate(k);
    for hit in &mut hits {
        hit.chunk.dense = None;
    }
    Ok(hits)
}

/// Embeds the chunks that have no vector yet, [`EMBED_BATCH`] at a time, then stores all of
/// them in one upsert (what the actor and document ingestion run). Nothing is stored if any
/// batch fails: a chunk stored without its vector would be invisible to semantic search,
/// silently.
pub async fn ingest(
    tenant: TenantId,
    store: Arc<dyn VectorStore>,
    embedder: Option<Arc<dyn Embedder>>,
    mut chunks: Vec<KnowledgeChunk>,
) -> PortResult<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    if let Some(embedder) = embedder {
        let mut missing: Vec<&mut KnowledgeChunk> =
            chunks.iter_mut().filter(|c| c.dense.is_none()).collect();
        for batch in missing.chunks_mut(EMBED_BATCH) {
            let texts = batch.iter().map(|c| c.text.clone()).collect();
            let vectors = embedder.embed(texts).await?;
            if vectors.len() != batch.len() {
                return Err(PortError::Refused(format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                )));
            }
            for (chunk, vector) in batch.iter_mut().zip(vectors) {
                chunk.dense = Some(vector);
            }
        }
    }
    store.upsert(tenant, chunks).await
}

impl Actor for KnowledgeActor {
    type Msg = KnowledgeMsg;
    type State = KnowledgeState;
    type Arguments = KnowledgeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: KnowledgeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(KnowledgeState {
            tenant: args.tenant,
            store: args.store,
            embedder: args.embedder,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (tenant, store, embedder) = (state.tenant, state.store.clone(), state.embedder.clone());
        match msg {
            KnowledgeMsg::Search { query, k, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(search(tenant, store, embedder, query, k).await);
                });
            }
            KnowledgeMsg::Ingest { chunks, reply } => {
                tokio::spawn(async move {
                    let count = chunks.len();
                    let result = ingest(tenant, store, embedder, chunks).await;
                    if let Err(error) = &result {
                        tracing::warn!(tenant_id = %tenant, count, %error, "knowledge ingest failed");
                    }
                    let _ = reply.send(result);
                });
            }
            KnowledgeMsg::DeleteDocument { document_id, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(store.delete_document(tenant, &document_id).await);
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HashEmbedder, MemoryVectorStore};

    fn chunk(id: &str, document_id: &str, text: &str) -> KnowledgeChunk {
        KnowledgeChunk {
            id: id.to_owned(),
            document_id: document_id.to_owned(),
            title: format!("{document_id}.pdf"),
            location: "p. 1".to_owned(),
            text: text.to_owned(),
            dense: None,
        }
    }

    async fn spawn(
        tenant: TenantId,
        store: Arc<MemoryVectorStore>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> ActorRef<KnowledgeMsg> {
        let (actor, _) = Actor::spawn(
            None,
            KnowledgeActor,
            KnowledgeArgs {
                tenant,
                store,
                embedder,
            },
        )
        .await
        .expect("knowledge actor starts");
        actor
    }

    async fn search_for(
        actor: &ActorRef<KnowledgeMsg>,
        query: &str,
        k: usize,
    ) -> PortResult<Vec<KnowledgeHit>> {
        ractor::call_t!(
            actor,
            |reply| KnowledgeMsg::Search {
                query: query.to_owned(),
                k,
                reply,
            },
            2000
        )
        .expect("actor answers")
    }

    async fn ingest_into(
        actor: &ActorRef<KnowledgeMsg>,
        chunks: Vec<KnowledgeChunk>,
    ) -> PortResult<()> {
        ractor::call_t!(actor, |reply| KnowledgeMsg::Ingest { chunks, reply }, 2000)
            .expect("actor answers")
    }

    /// An embedder that never answers, to show the mailbox does not wait on it.
    struct StuckEmbedder;

    #[async_trait::async_trait]
    impl Embedder for StuckEmbedder {
        async fn embed(&self, _texts: Vec<String>) -> PortResult<Vec<Vec<f32>>> {
            std::future::pending().await
        }
    }

    /// An embedder that always fails.
    struct BrokenEmbedder;

    #[async_trait::async_trait]
    impl Embedder for BrokenEmbedder {
        async fn embed(&self, _texts: Vec<String>) -> PortResult<Vec<Vec<f32>>> {
            Err(PortError::Unavailable("embeddings".into()))
        }
    }

    #[test]
    fn blank_queries_and_zero_k_ask_nothing_and_k_is_capped() {
        assert_eq!(plan_query("  ", 5), None);
        assert_eq!(plan_query("oil", 0), None);
        let planned = plan_query(" oil change ", 1000).unwrap();
        assert_eq!(planned.text, "oil change");
        assert_eq!(planned.k, MAX_K);
    }

    #[tokio::test]
    async fn knowledge_search_never_returns_another_tenants_chunks() {
        let store = Arc::new(MemoryVectorStore::new());
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        let actor_a = spawn(a, store.clone(), Some(embedder.clone())).await;
        let actor_b = spawn(b, store.clone(), Some(embedder)).await;
        ingest_into(
            &actor_a,
            vec![chunk("a1", "prices", "An oil change costs $40.")],
        )
        .await
        .unwrap();
        ingest_into(
            &actor_b,
            vec![
                chunk("b1", "prices", "An oil change costs $99."),
                chunk("b2", "hours", "Oil change appointments daily."),
            ],
        )
        .await
        .unwrap();

        let hits = search_for(&actor_a, "how much is an oil change", 10)
            .await
            .unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.chunk.id.as_str()).collect();
        assert_eq!(ids, ["a1"]);
        assert!(store.queries().iter().all(|(tenant, _)| *tenant == a));

        // Deleting a document of the same name in b leaves a's intact.
        ractor::call_t!(
            actor_b,
            |reply| KnowledgeMsg::DeleteDocument {
                document_id: "prices".into(),
                reply
            },
            2000
        )
        .unwrap()
        .unwrap();
        assert_eq!(store.chunks(a).len(), 1);
        assert_eq!(store.chunks(b).len(), 1);
        actor_a.stop(None);
        actor_b.stop(None);
    }

    #[tokio::test]
    async fn ingest_embeds_in_batches_of_at_most_64_and_keeps_given_vectors() {
        let store = Arc::new(MemoryVectorStore::new());
        let embedder = Arc::new(HashEmbedder::default());
        let tenant = TenantId::new();
        let actor = spawn(tenant, store.clone(), Some(embedder.clone())).await;
        let mut chunks: Vec<_> = (0..150)
            .map(|i| chunk(&format!("c{i}"), "manual", &format!("section {i} text")))
            .collect();
        chunks[0].dense = Some(vec![1.0; HashEmbedder::DEFAULT_DIMENSION]);
        ingest_into(&actor, chunks).await.unwrap();
        assert_eq!(embedder.batch_sizes(), [64, 64, 21]);
        let stored = store.chunks(tenant);
        assert_eq!(stored.len(), 150);
        assert_eq!(
            stored[0].dense,
            Some(vec![1.0; HashEmbedder::DEFAULT_DIMENSION])
        );
        assert_eq!(
            stored[1].dense.as_deref(),
            Some(embedder.vector("section 1 text").as_slice())
        );
        actor.stop(None);
    }

    #[tokio::test]
    async fn search_sends_the_query_vector_and_returns_hits_without_vectors() {
        let store = Arc::new(MemoryVectorStore::new());
        let embedder = Arc::new(HashEmbedder::default());
        let tenant = TenantId::new();
        let actor = spawn(tenant, store.clone(), Some(embedder.clone())).await;
        ingest_into(
            &actor,
            vec![
                chunk("1", "faq", "We are open Saturday from nine to five."),
                chunk("2", "faq", "Financing is available for every vehicle."),
            ],
        )
        .await
        .unwrap();
        let hits = search_for(&actor, "open on Saturday?", 1).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk.id, "1");
        assert_eq!(hits[0].chunk.dense, None);
        let (_, query) = store.queries().pop().unwrap();
        assert_eq!(query.dense, Some(embedder.vector("open on Saturday?")));
        actor.stop(None);
    }

    #[tokio::test]
    async fn without_an_embedder_or_with_a_broken_one_search_is_by_words() {
        let store = Arc::new(MemoryVectorStore::new());
        let tenant = TenantId::new();
        let plain = spawn(tenant, store.clone(), None).await;
        let broken = spawn(tenant, store.clone(), Some(Arc::new(BrokenEmbedder))).await;
        ingest_into(
            &plain,
            vec![chunk("1", "faq", "Free coffee in the lounge.")],
        )
        .await
        .unwrap();
        assert_eq!(store.chunks(tenant)[0].dense, None);
        for actor in [&plain, &broken] {
            let hits = search_for(actor, "coffee", 3).await.unwrap();
            assert_eq!(hits.len(), 1);
        }
        assert!(store.queries().iter().all(|(_, q)| q.dense.is_none()));
        // Ingest, unlike search, fails rather than store chunks without vectors.
        let failed = ingest_into(&broken, vec![chunk("2", "faq", "Tea too.")]).await;
        assert_eq!(failed, Err(PortError::Unavailable("embeddings".into())));
        assert_eq!(store.chunks(tenant).len(), 1);
        plain.stop(None);
        broken.stop(None);
    }

    #[tokio::test]
    async fn a_blank_query_returns_nothing_without_asking_the_store() {
        let store = Arc::new(MemoryVectorStore::new());
        let actor = spawn(TenantId::new(), store.clone(), None).await;
        assert_eq!(search_for(&actor, "   ", 5).await, Ok(Vec::new()));
        assert!(store.queries().is_empty());
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_stuck_embedder_never_blocks_the_mailbox() {
        let store = Arc::new(MemoryVectorStore::new());
        let actor = spawn(TenantId::new(), store, Some(Arc::new(StuckEmbedder))).await;
        let stuck = ractor::call_t!(
            actor,
            |reply| KnowledgeMsg::Search {
                query: "anything".into(),
                k: 3,
                reply
            },
            100
        );
        assert!(stuck.is_err(), "the search cannot finish");
        let deleted = ractor::call_t!(
            actor,
            |reply| KnowledgeMsg::DeleteDocument {
                document_id: "d".into(),
                reply
            },
            1000
        )
        .expect("the actor still answers");
        assert_eq!(deleted, Ok(()));
        actor.stop(None);
    }
}
