//! What both vector-store adapters (the embedded Qdrant Edge shard and a Qdrant server) store
//! for a knowledge chunk, so the two hold the same points and rank them the same way: the
//! vector and payload names, the point id, the BM25 model and the checks on input.

use actors::knowledge::MAX_K;
use actors::ports::{KnowledgeChunk, KnowledgeQuery, PortError, PortResult};
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use sha2::{Digest, Sha256};

/// Name of the BM25 sparse vector every chunk has.
pub const SPARSE: &str = "bm25";

/// Payload key of the document a chunk belongs to; indexed, since deletes filter on it.
pub const DOCUMENT_ID: &str = "document_id";

/// Each arm of a hybrid search fetches this many times `k` candidates before fusion, so a
/// chunk ranked fair in both arms can still win.
pub const PREFETCH_FACTOR: usize = 4;

/// The usual reciprocal rank fusion constant (Qdrant's server default is 2; 60 is the
/// literature's, and damps the weight of the very first ranks less abruptly).
pub const RRF_K: usize = 60;

/// Name of the dense vector of dimension `dim`: a new embedding model with another
/// dimension gets a vector of its own instead of an error.
pub fn dense_name(dim: usize) -> String {
    format!("dense_{dim}")
}

/// A sparse vector as both adapters pass it on: token ids and their weights.
pub struct Sparse {
    /// Token ids (unique).
    pub indices: Vec<u32>,
    /// Weight of each token.
    pub values: Vec<f32>,
}

/// Turns text into BM25 sparse vectors, the same way for chunks and queries and in both
/// adapters (Qdrant's own tokenizer and stemmer, English). IDF is applied by the store at
/// query time.
pub struct Bm25(EdgeBm25);

impl Bm25 {
    /// The English BM25 model.
    pub fn english() -> PortResult<Self> {
        EdgeBm25::new(EdgeBm25Config {
            language: Some("english".to_owned()),
            ..EdgeBm25Config::default()
        })
        .map(Self)
        .map_err(|e| PortError::Unavailable(format!("knowledge store (BM25 model: {e})")))
    }

    /// The sparse vector of a chunk: its title and text.
    pub fn document(&self, chunk: &KnowledgeChunk) -> Sparse {
        let v = self
            .0
            .embed_document(&format!("{}\n{}", chunk.title, chunk.text));
        Sparse {
            indices: v.indices,
            values: v.values,
        }
    }

    /// The sparse vector of a query.
    pub fn query(&self, text: &str) -> Sparse {
        let v = self.0.embed_query(text);
        Sparse {
            indices: v.indices,
            values: v.values,
        }
    }
}

/// The point id of a chunk: a UUID derived from its tenant and id, so storing a chunk again
/// replaces it and equal chunk ids of two tenants never collide.
pub fn point_uuid(tenant: &str, chunk_id: &str) -> uuid::Uuid {
    let digest = Sha256::digest(format!("{tenant}\n{chunk_id}").as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The payload of a chunk's point (the tenant is added by adapters that share a collection).
pub fn payload(chunk: &KnowledgeChunk) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (key, value) in [
        ("chunk_id", &chunk.id),
        (DOCUMENT_ID, &chunk.document_id),
        ("title", &chunk.title),
        ("location", &chunk.location),
        ("text", &chunk.text),
    ] {
        map.insert(key.to_owned(), serde_json::Value::String(value.clone()));
    }
    map
}

/// The chunk a point's payload describes; `None` if the payload is not one of ours.
pub fn chunk_from_payload(field: impl Fn(&str) -> Option<String>) -> Option<KnowledgeChunk> {
    Some(KnowledgeChunk {
        id: field("chunk_id")?,
        document_id: field(DOCUMENT_ID)?,
        title: field("title")?,
        location: field("location")?,
        text: field("text")?,
        dense: None,
    })
}

/// Checks a chunk before it is stored, so bad input is refused rather than half-written.
pub fn validate(chunk: &KnowledgeChunk) -> PortResult<()> {
    if chunk.id.is_empty() || chunk.document_id.is_empty() {
        return Err(PortError::Refused(
            "a knowledge chunk needs an id and a document id".to_owned(),
        ));
    }
    if let Some(dense) = &chunk.dense {
        validate_dense(dense)?;
    }
    Ok(())
}

/// A dense vector must have components, all finite.
pub fn validate_dense(dense: &[f32]) -> PortResult<()> {
    if dense.is_empty() || !dense.iter().all(|x| x.is_finite()) {
        return Err(PortError::Refused(
            "a dense vector must be non-empty and finite".to_owned(),
        ));
    }
    Ok(())
}

/// How many hits a search may return (at most [`MAX_K`]), after checking its dense vector;
/// `None` when there is nothing to look for.
pub fn search_limit(query: &KnowledgeQuery) -> PortResult<Option<usize>> {
    if let Some(dense) = &query.dense {
        validate_dense(dense)?;
    }
    let k = query.k.min(MAX_K);
    Ok((k > 0).then_some(k))
}

/// The distinct dense dimensions among `chunks`, smallest first.
pub fn dense_dims(chunks: &[KnowledgeChunk]) -> Vec<usize> {
    let mut dims: Vec<usize> = chunks
        .iter()
        .filter_map(|c| c.dense.as_ref().map(Vec::len))
        .collect();
    dims.sort_unstable();
    dims.dedup();
    dims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_per_chunk_and_distinct_between_chunks_and_tenants() {
        assert_eq!(point_uuid("t1", "doc-1#0"), point_uuid("t1", "doc-1#0"));
        assert_ne!(point_uuid("t1", "doc-1#0"), point_uuid("t1", "doc-1#1"));
        assert_ne!(point_uuid("t1", "doc-1#0"), point_uuid("t2", "doc-1#0"));
    }

    #[test]
    fn bad_dense_vectors_are_refused() {
        assert!(matches!(validate_dense(&[]), Err(PortError::Refused(_))));
        assert!(matches!(
            validate_dense(&[1.0, f32::NAN]),
            Err(PortError::Refused(_))
        ));
        assert!(validate_dense(&[0.5, 0.5]).is_ok());
    }

    #[test]
    fn a_payload_reads_back_as_the_same_chunk() {
        let chunk = KnowledgeChunk {
            id: "d:0".into(),
            document_id: "d".into(),
            title: "Prices.pdf".into(),
            location: "page 2".into(),
            text: "An oil change is $40.".into(),
            dense: Some(vec![1.0]),
        };
        let payload = payload(&chunk);
        let back = chunk_from_payload(|k| payload.get(k)?.as_str().map(str::to_owned)).unwrap();
        assert_eq!(
            back,
            KnowledgeChunk {
                dense: None,
                ..chunk
            }
        );
        assert_eq!(chunk_from_payload(|_| None), None);
    }
}
