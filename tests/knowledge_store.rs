//! Both knowledge stores pass the same suite: keyword and hybrid search, tenant isolation,
//! deletes, replacing chunks and reopening. The embedded store (Qdrant Edge, on real files)
//! always; a Qdrant server too when `TEST_QDRANT_URL` names its gRPC address
//! (`http://127.0.0.1:6334`). Every test uses tenants of its own, so on the server they
//! share one collection.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::domain::TenantId;
use actors::ports::{KnowledgeChunk, KnowledgeHit, KnowledgeQuery, PortError, VectorStore};
use actors::testing::HashEmbedder;
use switchboard::knowledge::edge::EdgeVectorStore;
use switchboard::knowledge::qdrant::QdrantVectorStore;

/// The collection the server suite writes to.
const TEST_COLLECTION: &str = "sbtest_knowledge";

/// A data directory of its own, removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("sbknowledge-{}", uuid::Uuid::new_v4())))
    }
}

/// Where a test stores its chunks.
enum Backend {
    /// The embedded store in a data directory of the test's own.
    Edge(DataDir),
    /// A Qdrant server.
    Server(String),
}

impl Backend {
    /// A store on this backend; a second call opens the same data again.
    fn store(&self) -> Arc<dyn VectorStore> {
        match self {
            Self::Edge(dir) => Arc::new(EdgeVectorStore::new(&dir.0).expect("the store opens")),
            Self::Server(url) => Arc::new(
                QdrantVectorStore::new(url, None, TEST_COLLECTION).expect("the client builds"),
            ),
        }
    }
}

/// The embedded store, and the Qdrant server when `TEST_QDRANT_URL` is set.
fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Edge(DataDir::new())];
    all.extend(switchboard::testing::qdrant_url().map(Backend::Server));
    all
}

/// Runs `check` on a store of every backend.
async fn on_every_store<F, Fut>(check: F)
where
    F: Fn(Arc<dyn VectorStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        check(backend.store()).await;
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FACT: &str = "The vault code for the Riverside branch is 7431, changed every March.";

/// A chunk of `document` with no dense vector.
fn chunk(id: &str, document: &str, text: &str) -> KnowledgeChunk {
    KnowledgeChunk {
        id: id.to_owned(),
        document_id: document.to_owned(),
        title: format!("{document}.pdf"),
        location: "page 2".to_owned(),
        text: text.to_owned(),
        dense: None,
    }
}

/// Ordinary paragraphs a knowledge base holds around the fact.
fn filler(document: &str) -> Vec<KnowledgeChunk> {
    [
        "Opening hours are nine to five on weekdays and ten to two on Saturdays.",
        "Parking is free for customers in the lot behind the Riverside branch.",
        "Service appointments can be booked by phone or on the website.",
        "We accept cash, cards and bank transfers; financing is available.",
        "The code of conduct applies to every visitor of our showrooms.",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| chunk(&format!("{document}#{i}"), document, text))
    .collect()
}

fn query(text: &str, k: usize) -> KnowledgeQuery {
    KnowledgeQuery {
        text: text.to_owned(),
        dense: None,
        k,
    }
}

fn ids(hits: &[KnowledgeHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk.id.as_str()).collect()
}

#[tokio::test]
async fn a_fact_is_found_by_keyword_for_its_tenant_and_never_for_another() {
    on_every_store(|store| async move {
        let (a, b) = (TenantId::new(), TenantId::new());
        let mut chunks = filler("handbook");
        chunks.push(chunk("handbook#fact", "handbook", FACT));
        store.upsert(a, chunks).await.unwrap();
        store.upsert(b, filler("other")).await.unwrap();

        let hits = store
            .search(a, query("what is the vault code?", 3))
            .await
            .unwrap();
        let first = &hits[0];
        assert_eq!(first.chunk.id, "handbook#fact");
        assert_eq!(first.chunk.document_id, "handbook");
        assert_eq!(first.chunk.title, "handbook.pdf");
        assert_eq!(first.chunk.location, "page 2");
        assert_eq!(first.chunk.text, FACT);
        assert!(first.score > 0.0);
        assert!(hits.len() <= 3);

        // Tenant B has a shard of its own, with words in common ("code", "Riverside"), but
        // never sees A's chunk; a tenant with no shard at all gets nothing.
        for tenant in [b, TenantId::new()] {
            for text in ["vault code 7431", "Riverside branch code"] {
                let hits = store.search(tenant, query(text, 50)).await.unwrap();
                assert!(
                    hits.iter().all(|h| h.chunk.document_id != "handbook"),
                    "{tenant} saw tenant A's chunk: {:?}",
                    ids(&hits)
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_document_removes_its_chunks_only() {
    on_every_store(|store| async move {
        let tenant = TenantId::new();
        store
            .upsert(tenant, vec![chunk("secret#0", "secret", FACT)])
            .await
            .unwrap();
        store.upsert(tenant, filler("handbook")).await.unwrap();
        assert_eq!(
            ids(&store.search(tenant, query("vault code", 5)).await.unwrap())[0],
            "secret#0"
        );

        store.delete_document(tenant, "secret").await.unwrap();

        let hits = store.search(tenant, query("vault code", 50)).await.unwrap();
        assert!(
            hits.iter().all(|h| h.chunk.document_id != "secret"),
            "{:?}",
            ids(&hits)
        );
        let parking = store.search(tenant, query("parking", 5)).await.unwrap();
        assert_eq!(ids(&parking), ["handbook#1"]);
        // Deleting what is not there (or for a tenant with nothing stored) is not an error.
        store.delete_document(tenant, "secret").await.unwrap();
        store
            .delete_document(TenantId::new(), "secret")
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn chunks_and_dense_vectors_survive_reopening_the_store() {
    for backend in backends() {
        let tenant = TenantId::new();
        let embedder = HashEmbedder::default();
        {
            let store = backend.store();
            store.upsert(tenant, filler("handbook")).await.unwrap();
            let mut fact = chunk("handbook#fact", "handbook", FACT);
            fact.dense = Some(embedder.vector(FACT));
            store.upsert(tenant, vec![fact]).await.unwrap();
        }

        let store = backend.store();
        let hits = store.search(tenant, query("vault code", 5)).await.unwrap();
        assert_eq!(ids(&hits)[0], "handbook#fact");
        // The dense vector added after the store was created is still there: a query whose
        // words BM25 cannot match finds the fact by its vector alone.
        let by_vector = KnowledgeQuery {
            text: "xyzzy".to_owned(),
            dense: Some(embedder.vector(FACT)),
            k: 5,
        };
        let hits = store.search(tenant, by_vector).await.unwrap();
        assert_eq!(ids(&hits), ["handbook#fact"]);
    }
}

#[tokio::test]
async fn hybrid_search_fuses_keywords_and_dense_vectors() {
    on_every_store(|store| async move {
        let tenant = TenantId::new();
        let embedder = HashEmbedder::default();
        let mut chunks = filler("handbook");
        chunks.push(chunk("handbook#fact", "handbook", FACT));
        for c in &mut chunks {
            c.dense = Some(embedder.vector(&c.text));
        }
        store.upsert(tenant, chunks).await.unwrap();

        let text = "what is the vault code of the Riverside branch";
        let hybrid = KnowledgeQuery {
            text: text.to_owned(),
            dense: Some(embedder.vector(text)),
            k: 4,
        };
        let hits = store.search(tenant, hybrid).await.unwrap();
        assert_eq!(ids(&hits)[0], "handbook#fact");
        assert!(hits.len() <= 4);
        // Reciprocal rank fusion, as Qdrant counts it (rank 0 first): first in both arms scores
        // 1/60 + 1/60, and scores fall from there.
        assert!(
            (hits[0].score - 2.0 / 60.0).abs() < 1e-4,
            "{}",
            hits[0].score
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

        // A query vector of a dimension no chunk has is answered by BM25 alone.
        let other_dim = KnowledgeQuery {
            text: "vault code".to_owned(),
            dense: Some(vec![1.0; 8]),
            k: 4,
        };
        assert_eq!(
            ids(&store.search(tenant, other_dim).await.unwrap())[0],
            "handbook#fact"
        );
    })
    .await;
}

#[tokio::test]
async fn storing_a_chunk_again_replaces_it() {
    on_every_store(|store| async move {
        let tenant = TenantId::new();
        store
            .upsert(
                tenant,
                vec![chunk(
                    "faq#0",
                    "faq",
                    "The old opening hours were nine to five.",
                )],
            )
            .await
            .unwrap();
        store
            .upsert(
                tenant,
                vec![chunk(
                    "faq#0",
                    "faq",
                    "The new opening hours are eight to six.",
                )],
            )
            .await
            .unwrap();

        let hits = store
            .search(tenant, query("opening hours", 10))
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["faq#0"]);
        assert_eq!(
            hits[0].chunk.text,
            "The new opening hours are eight to six."
        );
        assert!(store
            .search(tenant, query("old", 10))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_and_empty_queries_find_nothing() {
    on_every_store(|store| async move {
        let tenant = TenantId::new();
        let no_id = chunk("", "faq", "text");
        assert!(matches!(
            store.upsert(tenant, vec![no_id]).await,
            Err(PortError::Refused(_))
        ));
        let mut nan = chunk("faq#0", "faq", "text");
        nan.dense = Some(vec![f32::NAN; 4]);
        assert!(matches!(
            store.upsert(tenant, vec![nan]).await,
            Err(PortError::Refused(_))
        ));

        store.upsert(tenant, filler("handbook")).await.unwrap();
        // Only stopwords, or k = 0: nothing to look for, not an error.
        assert!(store
            .search(tenant, query("the of and", 5))
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .search(tenant, query("parking", 0))
            .await
            .unwrap()
            .is_empty());
        // k is capped rather than refused.
        let all = store
            .search(tenant, query("the parking code is free", 10_000))
            .await
            .unwrap();
        assert!(!all.is_empty() && all.len() <= actors::knowledge::MAX_K);
    })
    .await;
}

/// Upsert of 10,000 short paragraphs, then search latency (BM25 alone and hybrid).
/// `cargo test --release --test knowledge_store -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by hand"]
async fn benchmark_10k_chunks() {
    const CHUNKS: usize = 10_000;
    const BATCH: usize = 500;
    const SEARCHES: usize = 500;
    let words: Vec<&str> = "account appointment battery brake branch cabin camera charge \
        clinic contract coverage dealer delivery diesel discount engine estimate filter \
        finance fleet garage hybrid insurance invoice lease loan mileage model navigation \
        office oil parking payment pickup policy premium quote recall refund rental repair \
        schedule seat service sedan showroom spare tire trade transfer tyre warranty wheel"
        .split_whitespace()
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut paragraph = |n: usize| -> String {
        (0..n)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let embedder = HashEmbedder::new(384);
    let chunks: Vec<KnowledgeChunk> = (0..CHUNKS)
        .map(|i| {
            let text = paragraph(60);
            KnowledgeChunk {
                id: format!("doc{}#{i}", i / 20),
                document_id: format!("doc{}", i / 20),
                title: format!("Document {}", i / 20),
                location: format!("page {}", i % 20 + 1),
                dense: Some(embedder.vector(&text)),
                text,
            }
        })
        .collect();
    let queries: Vec<String> = (0..SEARCHES).map(|_| paragraph(5)).collect();

    let dir = DataDir::new();
    let store = EdgeVectorStore::new(&dir.0).expect("the store opens");
    let tenant = TenantId::new();
    let started = Instant::now();
    for batch in chunks.chunks(BATCH) {
        store.upsert(tenant, batch.to_vec()).await.unwrap();
    }
    let upsert = started.elapsed();

    let mut report = format!(
        "upsert {CHUNKS} chunks (batches of {BATCH}, 384-d dense + BM25): {upsert:?} ({:.0} chunks/s)\n",
        CHUNKS as f64 / upsert.as_secs_f64()
    );
    for hybrid in [false, true] {
        let mut times: Vec<Duration> = Vec::with_capacity(SEARCHES);
        for q in &queries {
            let query = KnowledgeQuery {
                text: q.clone(),
                dense: hybrid.then(|| embedder.vector(q)),
                k: 5,
            };
            let started = Instant::now();
            let hits = store.search(tenant, query).await.unwrap();
            times.push(started.elapsed());
            assert!(!hits.is_empty());
        }
        times.sort();
        report.push_str(&format!(
            "search {} k=5 over {SEARCHES} queries: p50 {:?}, p99 {:?}, max {:?}\n",
            if hybrid { "hybrid (RRF)" } else { "BM25 only" },
            times[SEARCHES / 2],
            times[SEARCHES * 99 / 100],
            times[SEARCHES - 1],
        ));
    }
    let du = |sub: &str| {
        walk_size(&dir.0.join("knowledge").join(tenant.to_string()).join(sub)) / (1 << 20)
    };
    report.push_str(&format!(
        "on disk: wal {} MiB, segments {} MiB\n",
        du("wal"),
        du("segments")
    ));
    eprint!("{report}");
}

/// Bytes of the files under `path`.
fn walk_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
