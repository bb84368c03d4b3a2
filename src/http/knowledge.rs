//! `/v1/knowledge`: a tenant's documents (upload, list, status, delete) and search over
//! them. Uploads are read in the background; their status shows how far they got.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Staff};
use super::{validate, AppState};
use crate::knowledge::extract;
use crate::knowledge::ingest::DeleteError;
use crate::store::{Document, NewDocument};

/// Most chunks one search returns.
const MAX_K: i64 = 20;

/// The upload form (`multipart/form-data`).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form for OpenAPI; the handler reads the parts itself
pub struct UploadForm {
    /// The file: PDF, DOCX, HTML, Markdown or plain text, recognised by its content.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The document's name; by default the file's name. Uploading a name again replaces
    /// that document.
    name: Option<String>,
}

/// The tenant's documents.
#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    /// Most recently changed first.
    pub items: Vec<Document>,
}

/// A search of the tenant's documents.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The question or words to look for.
    pub query: String,
    /// How many chunks (1–20, default 5).
    pub k: Option<i64>,
}

/// A chunk that matched.
#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    /// Fused relevance, higher is better.
    pub score: f32,
    /// The document.
    pub document_id: String,
    /// The document's name.
    pub title: String,
    /// Page or section.
    pub location: String,
    /// The chunk's text.
    pub text: String,
}

/// The best chunks, best first.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// The hits.
    pub items: Vec<SearchHit>,
}

/// Reads the upload's parts: the file's bytes and the document's name.
async fn read_upload(mut form: Multipart, max_bytes: usize) -> Result<(Vec<u8>, String), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("the upload is not a readable multipart form: {e}"))
    };
    let (mut file, mut name) = (None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") => {
                let file_name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > max_bytes {
                    return Err(too_large(max_bytes));
                }
                file = Some((bytes.to_vec(), file_name));
            }
            Some("name") => name = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    let Some((bytes, file_name)) = file else {
        return Err(ApiError::field(
            "file",
            "is required: send the document as the `file` part",
        ));
    };
    let name = name.or(file_name).ok_or_else(|| {
        ApiError::field("name", "is required when the file part has no file name")
    })?;
    Ok((bytes, validate::text("name", &name, 1, 200)?))
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("documents may be at most {max_bytes} bytes"),
    )
}

/// Uploads a document (owner or admin): 202 with its record, `queued`; it becomes `ready`
/// (or `failed` with a reason) in the background. 413 past the size limit; 415 when the
/// content is not a PDF, DOCX, HTML, Markdown or text file.
#[utoipa::path(post, path = "/v1/knowledge/documents", tag = "knowledge", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 202, body = Document), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    staff: Staff,
    request: Request,
) -> Result<(StatusCode, axum::Json<Document>), ApiError> {
    // The role is checked before the body is read: a viewer gets 403 whatever they send.
    staff.require_admin()?;
    let form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            ApiError::field(
                "file",
                format!("is required: send the document as multipart/form-data ({e})"),
            )
        })?;
    let (bytes, name) = read_upload(form, state.settings.max_document_bytes).await?;
    let kind = extract::detect(&bytes)
        .map_err(|e| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let upload = NewDocument {
        name: &name,
        content_type: kind.name(),
        size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        sha256: &sha256,
    };
    let tenant = staff.tenant();
    let document = state
        .store
        .upsert_document(tenant, staff.actor(), &upload)
        .await?;
    state
        .knowledge
        .ingest_in_background(tenant, document.clone(), bytes);
    Ok((StatusCode::ACCEPTED, axum::Json(document)))
}

/// The tenant's documents with their status.
#[utoipa::path(get, path = "/v1/knowledge/documents", tag = "knowledge", security(("bearer" = [])),
    responses((status = 200, body = DocumentList)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<DocumentList>, ApiError> {
    Ok(axum::Json(DocumentList {
        items: state.store.documents(staff.tenant()).await?,
    }))
}

/// One document: its status, progress and, when it failed, why.
#[utoipa::path(get, path = "/v1/knowledge/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Document), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<axum::Json<Document>, ApiError> {
    Ok(axum::Json(state.store.document(staff.tenant(), id).await?))
}

/// Deletes a document and its chunks (owner or admin).
#[utoipa::path(delete, path = "/v1/knowledge/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    match state
        .knowledge
        .delete(staff.tenant(), staff.actor(), id)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(DeleteError::Store(e)) => Err(e.into()),
        Err(DeleteError::Vectors(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the document's chunks could not be removed; try again: {e}"),
        )),
    }
}

/// Searches the tenant's ready documents: the chunks that best match, with their source.
#[utoipa::path(post, path = "/v1/knowledge/search", tag = "knowledge", security(("bearer" = [])),
    request_body = SearchRequest,
    responses((status = 200, body = SearchResults), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn search(
    State(state): State<AppState>,
    staff: Staff,
    Json(request): Json<SearchRequest>,
) -> Result<axum::Json<SearchResults>, ApiError> {
    let query = validate::text("query", &request.query, 1, 1_000)?;
    let k = validate::range("k", request.k.unwrap_or(5), 1, MAX_K)?;
    let hits = state
        .knowledge
        .search(staff.tenant(), &query, usize::try_from(k).unwrap_or(5))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("search failed: {e}"),
            )
        })?;
    Ok(axum::Json(SearchResults {
        items: hits
            .into_iter()
            .map(|h| SearchHit {
                score: h.score,
                document_id: h.chunk.document_id,
                title: h.chunk.title,
                location: h.chunk.location,
                text: h.chunk.text,
            })
            .collect(),
    }))
}
