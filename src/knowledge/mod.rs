//! A tenant's knowledge base: documents turned into text (`extract`), cut into chunks that
//! keep their document, page and section (`chunk`), kept for hybrid search in the embedded
//! vector store (`edge`), and ingested and searched for the API (`ingest`).

pub mod chunk;
pub mod edge;
pub mod extract;
pub mod ingest;
pub mod points;
pub mod qdrant;
