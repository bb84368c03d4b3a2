//! Text out of an uploaded document, in reading order, with the page or section each piece
//! came from: the first step of ingestion, before [`super::chunk`].
//!
//! The kind of a file is decided from its bytes ([`detect`]), never from its name. Uploads
//! are hostile until proven otherwise, so every parser runs behind limits ([`Limits`]):
//! lopdf is given a decompression cap and its pages and objects are counted; a DOCX is
//! opened as a zip and checked entry by entry (count, declared and real sizes, compression
//! ratio, XML nesting depth) *before* docx-rs sees it, because docx-rs trusts sizes from the
//! zip header, unwraps read errors and parses nested tables recursively. [`extract_safely`]
//! then runs the whole thing on a thread of its own with a big stack, catches panics and
//! stops waiting at a deadline, so a bad file costs one failed document, never the process
//! or an async worker.

use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use zip::ZipArchive;

/// One mebibyte, for limits and messages.
const MIB: usize = 1 << 20;

/// Stack of the extraction thread: docx-rs parses nested elements recursively, and the
/// depth pre-check ([`Limits::max_xml_depth`]) is only safe with room to spare.
const EXTRACT_STACK_BYTES: usize = 64 * MIB;

/// What a file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// A PDF (`%PDF-` near the start).
    Pdf,
    /// A Word document (a zip holding `word/document.xml`).
    Docx,
    /// An HTML page.
    Html,
    /// UTF-8 text with `#` headings.
    Markdown,
    /// Any other UTF-8 text.
    Text,
}

impl DocKind {
    /// The name a user knows the kind by, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pdf => "PDF",
            Self::Docx => "DOCX",
            Self::Html => "HTML",
            Self::Markdown => "Markdown",
            Self::Text => "text",
        }
    }
}

/// Bounds on what one document may cost. The defaults fit uploads of up to about 20 MiB.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most pages read from a PDF; past it the file is refused, not truncated, so a
    /// document is never half in the knowledge base.
    pub max_pages: usize,
    /// Most objects a PDF may hold (each costs memory once loaded).
    pub max_pdf_objects: usize,
    /// Most bytes one compressed stream (PDF) may expand to.
    pub max_stream_bytes: usize,
    /// Most entries in a DOCX archive.
    pub max_zip_entries: usize,
    /// Most bytes all entries of a DOCX archive may expand to together.
    pub max_unzipped_bytes: u64,
    /// Highest expanded/compressed ratio of one sizeable DOCX entry (XML compresses about
    /// ten to one; bombs, thousands to one).
    pub max_compression_ratio: u64,
    /// Deepest element nesting accepted in a DOCX's XML.
    pub max_xml_depth: usize,
    /// Most bytes of text extracted from one document.
    pub max_output_bytes: usize,
    /// Longest an extraction may take in [`extract_safely`].
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pages: 2_000,
            max_pdf_objects: 500_000,
            max_stream_bytes: 64 * MIB,
            max_zip_entries: 2_000,
            max_unzipped_bytes: (200 * MIB) as u64,
            max_compression_ratio: 200,
            max_xml_depth: 256,
            max_output_bytes: 20 * MIB,
            timeout: Duration::from_secs(20),
        }
    }
}

/// Why a document gave no text. The `Display` text is meant for the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Not a kind we read; says what it looked like.
    #[error("not a PDF, DOCX, HTML, Markdown or text file: {0}")]
    Unsupported(String),
    /// A PDF that needs a password.
    #[error("the PDF is encrypted")]
    Encrypted,
    /// The parser could not read the file; says where it stopped.
    #[error("the file is corrupt: {0}")]
    Corrupt(String),
    /// The file read fine but holds no text (a scanned PDF, an empty DOCX).
    #[error("{}", no_text_message(*.0))]
    NoText(DocKind),
    /// Past one of the size [`Limits`]; says which.
    #[error("{0}")]
    TooLarge(String),
    /// Elements nested deeper than [`Limits::max_xml_depth`].
    #[error("the document is nested too deeply (more than {0} levels)")]
    TooDeep(usize),
    /// Extraction ran past [`Limits::timeout`].
    #[error("reading the file took longer than {} s", .0.as_secs())]
    TimedOut(Duration),
}

fn no_text_message(kind: DocKind) -> String {
    match kind {
        DocKind::Pdf => "the PDF has no extractable text (a scanned image?)".to_string(),
        other => format!("the {} file has no text", other.name()),
    }
}

/// A piece of a document's text, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The text, trimmed; never empty.
    pub text: String,
    /// The 1-based page it is on (PDF only).
    pub page: Option<u32>,
    /// The headings it sits under, outermost first, joined by " › " (for a heading, its own
    /// path); `None` before the first heading and for PDFs.
    pub section: Option<String>,
    /// Whether the block is itself a heading.
    pub is_heading: bool,
}

/// A document's text, ready to be chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// What the file was.
    pub kind: DocKind,
    /// Its pages, for PDFs (for progress and throughput figures).
    pub pages: Option<u32>,
    /// Its text, in reading order.
    pub blocks: Vec<Block>,
}

/// Decides what `bytes` hold, from their content alone.
pub fn detect(bytes: &[u8]) -> Result<DocKind, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    // The PDF spec lets the header sit anywhere in the first kilobyte.
    if find(&bytes[..bytes.len().min(1024)], b"%PDF-").is_some() {
        return Ok(DocKind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        let archive = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| ExtractError::Corrupt(format!("not a readable ZIP archive ({e})")))?;
        return if archive.index_for_name("word/document.xml").is_some() {
            Ok(DocKind::Docx)
        } else {
            Err(ExtractError::Unsupported(
                "a ZIP archive that is not a Word document".into(),
            ))
        };
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ExtractError::Unsupported("the bytes are not UTF-8 text".into()))?;
    if text.contains('\0') {
        return Err(ExtractError::Unsupported("binary data, not text".into()));
    }
    if looks_like_html(text) {
        Ok(DocKind::Html)
    } else if looks_like_markdown(text) {
        Ok(DocKind::Markdown)
    } else {
        Ok(DocKind::Text)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// HTML when it opens with a doctype, a comment or a tag, and closes some tag: text that
/// merely mentions `<b>` stays text.
fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.starts_with("<!doctype html") || head.starts_with("<html") {
        return true;
    }
    let opens_with_tag = head.starts_with("<!--")
        || (head.starts_with('<') && head[1..].starts_with(|c: char| c.is_ascii_alphabetic()));
    opens_with_tag && text.contains("</")
}

fn looks_like_markdown(text: &str) -> bool {
    text.lines().any(|l| atx_heading(l).is_some())
}

/// `# Title` → (1, "Title"); at most six `#`, then a space.
fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let line = line.trim_start_matches(' ');
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim_end();
    (!title.is_empty()).then_some((level, title))
}

/// Reads the text out of a file already [`detect`]ed as `kind`, on the calling thread.
/// Bounded by `limits` except for time: use [`extract_safely`] for untrusted files.
pub fn extract(kind: DocKind, bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut out = Sink::new(limits.max_output_bytes);
    let pages = match kind {
        DocKind::Pdf => Some(pdf(bytes, limits, &mut out)?),
        DocKind::Docx => {
            docx(bytes, limits, &mut out)?;
            None
        }
        DocKind::Html => {
            html(as_text(bytes)?, &mut out)?;
            None
        }
        DocKind::Markdown => {
            markdown(as_text(bytes)?, &mut out)?;
            None
        }
        DocKind::Text => {
            plain(as_text(bytes)?, &mut out)?;
            None
        }
    };
    if out.blocks.iter().all(|b| b.is_heading) {
        return Err(ExtractError::NoText(kind));
    }
    Ok(Extracted {
        kind,
        pages,
        blocks: out.blocks,
    })
}

/// [`detect`] then [`extract`], off the async threads: on a thread of its own (with a
/// large stack), panics turned into [`ExtractError::Corrupt`], and at most
/// [`Limits::timeout`] of waiting. A timed-out thread cannot be killed; it runs on until
/// it finishes (PDFs stop at the next page).
pub async fn extract_safely(bytes: Vec<u8>, limits: Limits) -> Result<Extracted, ExtractError> {
    let timeout = limits.timeout;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("extract".into())
        .stack_size(EXTRACT_STACK_BYTES)
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                detect(&bytes).and_then(|kind| extract(kind, &bytes, &limits))
            }))
            .unwrap_or_else(|_| {
                Err(ExtractError::Corrupt(
                    "the parser could not make sense of it".into(),
                ))
            });
            let _ = tx.send(result);
        })
        .map_err(|e| ExtractError::Corrupt(format!("could not start the reader ({e})")))?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        // The thread died without sending: only a panic that escaped catch_unwind.
        Ok(Err(_)) => Err(ExtractError::Corrupt(
            "the parser could not make sense of it".into(),
        )),
        Err(_) => Err(ExtractError::TimedOut(timeout)),
    }
}

fn as_text(bytes: &[u8]) -> Result<&str, ExtractError> {
    std::str::from_utf8(bytes)
        .map_err(|_| ExtractError::Unsupported("the bytes are not UTF-8 text".into()))
}

/// Collects blocks, keeping the heading path and the output budget.
struct Sink {
    blocks: Vec<Block>,
    outline: Vec<(usize, String)>,
    bytes: usize,
    max_bytes: usize,
}

impl Sink {
    fn new(max_bytes: usize) -> Self {
        Self {
            blocks: Vec::new(),
            outline: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    fn section(&self) -> Option<String> {
        (!self.outline.is_empty()).then(|| {
            self.outline
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" › ")
        })
    }

    fn push(
        &mut self,
        text: &str,
        page: Option<u32>,
        is_heading: bool,
    ) -> Result<(), ExtractError> {
        let text = clean(text);
        if text.is_empty() {
            return Ok(());
        }
        self.bytes += text.len();
        if self.bytes > self.max_bytes {
            return Err(ExtractError::TooLarge(format!(
                "the document holds more than {} MiB of text",
                self.max_bytes / MIB
            )));
        }
        let section = self.section();
        self.blocks.push(Block {
            text,
            page,
            section,
            is_heading,
        });
        Ok(())
    }

    fn paragraph(&mut self, text: &str) -> Result<(), ExtractError> {
        self.push(text, None, false)
    }

    /// A heading of `level` (1 = outermost): it closes every section at its level or below.
    fn heading(&mut self, level: usize, text: &str) -> Result<(), ExtractError> {
        let title = clean(text).replace('\n', " ");
        if title.is_empty() {
            return Ok(());
        }
        while self.outline.last().is_some_and(|(l, _)| *l >= level) {
            self.outline.pop();
        }
        self.outline.push((level, title.clone()));
        self.push(&title, None, true)
    }
}

/// Drops control characters (broken font encodings produce them), trims line ends and
/// squeezes runs of blank lines.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out.trim().to_string()
}

// ------------------------------------------------------------------------------- PDF

fn pdf(bytes: &[u8], limits: &Limits, out: &mut Sink) -> Result<u32, ExtractError> {
    let started = Instant::now();
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(limits.max_stream_bytes),
        ..Default::default()
    };
    let doc = lopdf::Document::load_mem_with_options(bytes, options)
        .map_err(|e| pdf_error(&e, limits))?;
    if doc.is_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    if doc.objects.len() > limits.max_pdf_objects {
        return Err(ExtractError::TooLarge(format!(
            "the PDF has more than {} objects",
            limits.max_pdf_objects
        )));
    }
    let pages = doc.get_pages();
    if pages.len() > limits.max_pages {
        return Err(ExtractError::TooLarge(format!(
            "the PDF has more than {} pages",
            limits.max_pages
        )));
    }
    let mut first_error = None;
    for &number in pages.keys() {
        if started.elapsed() > limits.timeout {
            return Err(ExtractError::TimedOut(limits.timeout));
        }
        let mut text = String::new();
        for piece in doc.extract_text_chunks_with_limit(&[number], limits.max_stream_bytes) {
            match piece {
                Ok(t) => text.push_str(&t),
                Err(e @ lopdf::Error::Decompress(_)) => return Err(pdf_error(&e, limits)),
                // A broken operator or font loses a fragment, not the page.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        out.push(&text, Some(number), false)?;
    }
    if out.blocks.is_empty() {
        if let Some(e) = first_error {
            return Err(ExtractError::Corrupt(e.to_string()));
        }
    }
    Ok(pages.len() as u32)
}

fn pdf_error(e: &lopdf::Error, limits: &Limits) -> ExtractError {
    match e {
        lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }) => {
            ExtractError::TooLarge(format!(
                "a PDF stream would expand past {} MiB",
                limits.max_stream_bytes / MIB
            ))
        }
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => ExtractError::Encrypted,
        other => ExtractError::Corrupt(other.to_string()),
    }
}

// ------------------------------------------------------------------------------ DOCX

fn docx(bytes: &[u8], limits: &Limits, out: &mut Sink) -> Result<(), ExtractError> {
    precheck_docx(bytes, limits)?;
    let doc = docx_rs::read_docx_with_options(
        bytes,
        docx_rs::ReadDocxOptions::default().with_image_previews(false),
    )
    .map_err(|e| ExtractError::Corrupt(format!("unreadable Word document ({e})")))?;
    let reader = DocxReader {
        styles: &doc.styles.styles,
    };
    for child in &doc.document.children {
        match child {
            docx_rs::DocumentChild::Paragraph(p) => reader.paragraph(p, out)?,
            docx_rs::DocumentChild::Table(t) => reader.table(t, out)?,
            docx_rs::DocumentChild::StructuredDataTag(sdt) => reader.sdt(sdt, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks a DOCX archive before docx-rs reads it: docx-rs allocates what zip headers
/// declare, panics on read errors and recurses on nesting. Every entry is expanded here,
/// within the limits, so a header that lies or a corrupt stream is caught first.
fn precheck_docx(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    let corrupt = |e: zip::result::ZipError| ExtractError::Corrupt(format!("bad ZIP data ({e})"));
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    if archive.len() > limits.max_zip_entries {
        return Err(ExtractError::TooLarge(format!(
            "the DOCX holds more than {} files",
            limits.max_zip_entries
        )));
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(corrupt)?;
        let declared = entry.size();
        total = total.saturating_add(declared);
        let ratio = declared / entry.compressed_size().max(1);
        if total > limits.max_unzipped_bytes {
            return Err(ExtractError::TooLarge(format!(
                "the DOCX would expand past {} MiB",
                limits.max_unzipped_bytes / MIB as u64
            )));
        }
        if declared > MIB as u64 && ratio > limits.max_compression_ratio {
            return Err(ExtractError::TooLarge(format!(
                "the DOCX looks like a zip bomb ({} expands {ratio} to 1)",
                entry.name()
            )));
        }
        let name = entry.name().to_string();
        let mut data = Vec::new();
        (&mut entry)
            .take(declared.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| ExtractError::Corrupt(format!("cannot expand {name} ({e})")))?;
        if data.len() as u64 != declared {
            return Err(ExtractError::Corrupt(format!(
                "{name} is not the size its header says"
            )));
        }
        if name.ends_with(".xml") || name.ends_with(".rels") {
            check_xml_depth(&name, &data, limits.max_xml_depth)?;
        }
    }
    Ok(())
}

/// Fails when elements in `xml` nest deeper than `max`, or the XML is not well formed.
fn check_xml_depth(name: &str, xml: &[u8], max: usize) -> Result<(), ExtractError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let mut depth: usize = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > max {
                    return Err(ExtractError::TooDeep(max));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            // docx-rs loops forever on some unclosed documents: refuse them here.
            Ok(Event::Eof) if depth > 0 => {
                return Err(ExtractError::Corrupt(format!(
                    "{name} ends inside an element"
                )));
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(ExtractError::Corrupt(format!(
                    "invalid XML in {name} ({e})"
                )));
            }
        }
        buf.clear();
    }
}

/// Walks a parsed DOCX in document order.
struct DocxReader<'a> {
    styles: &'a [docx_rs::Style],
}

impl DocxReader<'_> {
    fn paragraph(&self, p: &docx_rs::Paragraph, out: &mut Sink) -> Result<(), ExtractError> {
        let mut text = String::new();
        paragraph_text(&p.children, &mut text);
        match self.heading_level(p) {
            Some(level) => out.heading(level, &text),
            None => out.paragraph(&text),
        }
    }

    /// The heading level from the paragraph's style ("heading 2" → 2) or outline level.
    fn heading_level(&self, p: &docx_rs::Paragraph) -> Option<usize> {
        let outline =
            |lvl: &Option<docx_rs::OutlineLvl>| lvl.as_ref().filter(|o| o.v < 9).map(|o| o.v + 1);
        if let Some(level) = outline(&p.property.outline_lvl) {
            return Some(level);
        }
        let id = &p.property.style.as_ref()?.val;
        if let Some(style) = self.styles.iter().find(|s| &s.style_id == id) {
            if style.name.is_heading() {
                if let Some(n) = style.name.get_heading_number() {
                    return Some(n.max(1));
                }
            }
            if let Some(level) = outline(&style.paragraph_property.outline_lvl) {
                return Some(level);
            }
        }
        // Documents whose styles part is missing still name the built-in ids.
        let lower = id.to_ascii_lowercase();
        let digits = lower.strip_prefix("heading")?.trim_start();
        digits.parse::<usize>().ok().map(|n| n.max(1))
    }

    /// A table: each row one block, its cells joined by " | ".
    fn table(&self, t: &docx_rs::Table, out: &mut Sink) -> Result<(), ExtractError> {
        for docx_rs::TableChild::TableRow(row) in &t.rows {
            let cells: Vec<String> = row
                .cells
                .iter()
                .map(|docx_rs::TableRowChild::TableCell(c)| {
                    let mut text = String::new();
                    cell_text(&c.children, &mut text);
                    text.split_whitespace().collect::<Vec<_>>().join(" ")
                })
                .collect();
            if cells.iter().any(|c| !c.is_empty()) {
                out.paragraph(&cells.join(" | "))?;
            }
        }
        Ok(())
    }

    fn sdt(&self, sdt: &docx_rs::StructuredDataTag, out: &mut Sink) -> Result<(), ExtractError> {
        for child in &sdt.children {
            match child {
                docx_rs::StructuredDataTagChild::Paragraph(p) => self.paragraph(p, out)?,
                docx_rs::StructuredDataTagChild::Table(t) => self.table(t, out)?,
                docx_rs::StructuredDataTagChild::StructuredDataTag(inner) => {
                    self.sdt(inner, out)?
                }
                docx_rs::StructuredDataTagChild::Run(r) => {
                    let mut text = String::new();
                    run_text(r, &mut text);
                    out.paragraph(&text)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn paragraph_text(children: &[docx_rs::ParagraphChild], text: &mut String) {
    for child in children {
        match child {
            docx_rs::ParagraphChild::Run(r) => run_text(r, text),
            docx_rs::ParagraphChild::Hyperlink(h) => paragraph_text(&h.children, text),
            docx_rs::ParagraphChild::Insert(i) => {
                for c in &i.children {
                    if let docx_rs::InsertChild::Run(r) = c {
                        run_text(r, text);
                    }
                }
            }
            docx_rs::ParagraphChild::StructuredDataTag(sdt) => {
                for c in &sdt.children {
                    match c {
                        docx_rs::StructuredDataTagChild::Run(r) => run_text(r, text),
                        docx_rs::StructuredDataTagChild::Paragraph(p) => {
                            paragraph_text(&p.children, text)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn run_text(run: &docx_rs::Run, text: &mut String) {
    for child in &run.children {
        match child {
            docx_rs::RunChild::Text(t) => text.push_str(&t.text),
            docx_rs::RunChild::Tab(_) | docx_rs::RunChild::PTab(_) => text.push('\t'),
            docx_rs::RunChild::Break(_) | docx_rs::RunChild::CarriageReturn(_) => text.push('\n'),
            _ => {}
        }
    }
}

fn cell_text(children: &[docx_rs::TableCellContent], text: &mut String) {
    for child in children {
        match child {
            docx_rs::TableCellContent::Paragraph(p) => paragraph_text(&p.children, text),
            docx_rs::TableCellContent::Table(t) => {
                for docx_rs::TableChild::TableRow(row) in &t.rows {
                    for docx_rs::TableRowChild::TableCell(c) in &row.cells {
                        cell_text(&c.children, text);
                    }
                }
            }
            _ => {}
        }
        text.push(' ');
    }
}

// ------------------------------------------------------------------------------ HTML

/// Elements whose content is never shown as text.
const HIDDEN_ELEMENTS: [&str; 7] = [
    "script", "style", "noscript", "template", "title", "svg", "head",
];

/// Elements that end the current block of text.
const BLOCK_ELEMENTS: [&str; 28] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "blockquote",
    "pre",
    "dt",
    "dd",
    "dl",
    "figure",
    "figcaption",
    "form",
    "hr",
    "body",
    "html",
    "thead",
    "tbody",
];

/// A small tag stripper: enough for pages people upload as knowledge (headings, paragraphs,
/// lists, tables), with scripts and styles dropped and common entities decoded. Not a
/// conforming HTML parser, and it need not be: it only has to find the words.
fn html(text: &str, out: &mut Sink) -> Result<(), ExtractError> {
    let mut block = String::new();
    let mut heading: Option<usize> = None;
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        block.push_str(&rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || "/!?".contains(c)) {
            // "a < b": a '<' that opens no tag is text.
            block.push('<');
            rest = &rest[1..];
            continue;
        }
        let Some(gt) = rest.find('>') else {
            // No '>' anywhere after: the rest is text with a '<' in it.
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            continue; // <!doctype>, <?xml?>
        }
        if !closing && HIDDEN_ELEMENTS.contains(&name.as_str()) && !tag.ends_with('/') {
            rest = skip_element(rest, &name);
            continue;
        }
        if name == "td" || name == "th" {
            // Cells of a row stay on one line, as in DOCX tables.
            if closing {
                block.push_str(" | ");
            }
            continue;
        }
        let level = heading_tag_level(&name);
        if level.is_some() || BLOCK_ELEMENTS.contains(&name.as_str()) {
            flush_html_block(&mut block, heading, out)?;
            heading = if closing { None } else { level };
        }
    }
    block.push_str(rest);
    flush_html_block(&mut block, heading, out)
}

fn heading_tag_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
        _ => None,
    }
}

/// The text after `</name>` (case-insensitive), or nothing if it never closes.
fn skip_element<'a>(rest: &'a str, name: &str) -> &'a str {
    let mut from = 0;
    while let Some(at) = rest[from..].find("</") {
        let after = &rest[from + at + 2..];
        if after
            .as_bytes()
            .get(..name.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        {
            return after.find('>').map_or("", |gt| &after[gt + 1..]);
        }
        from += at + 2;
    }
    ""
}

fn flush_html_block(
    block: &mut String,
    heading: Option<usize>,
    out: &mut Sink,
) -> Result<(), ExtractError> {
    let decoded = decode_entities(block);
    let text = decoded
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(" |")
        .trim_end_matches('|')
        .trim()
        .to_string();
    block.clear();
    match heading {
        Some(level) => out.heading(level, &text),
        None => out.paragraph(&text),
    }
}

/// Decodes the named entities pages commonly use and every numeric one.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Entities are short: looking further would make a page of '&' quadratic.
        let entity = rest.as_bytes()[1..]
            .iter()
            .take(12)
            .position(|&b| b == b';')
            .map(|semi| &rest[1..semi + 1]);
        let decoded = entity.and_then(|e| match e {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "mdash" => Some('—'),
            "ndash" => Some('–'),
            "hellip" => Some('…'),
            "rsquo" => Some('’'),
            "lsquo" => Some('‘'),
            "ldquo" => Some('“'),
            "rdquo" => Some('”'),
            "euro" => Some('€'),
            "copy" => Some('©'),
            _ => {
                let num = e.strip_prefix('#')?;
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => num.parse().ok()?,
                };
                char::from_u32(code)
            }
        });
        match (entity, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// --------------------------------------------------------------- Markdown, plain text

/// `#` headings become headings, blank-line separated paragraphs become blocks; fenced
/// code is kept as text (a `#` in it is a comment, not a heading).
fn markdown(text: &str, out: &mut Sink) -> Result<(), ExtractError> {
    let mut paragraph = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~");
        if fence {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            if let Some((level, title)) = atx_heading(line) {
                out.paragraph(&paragraph)?;
                paragraph.clear();
                out.heading(level, title)?;
                continue;
            }
            if line.trim().is_empty() {
                out.paragraph(&paragraph)?;
                paragraph.clear();
                continue;
            }
        }
        paragraph.push_str(line);
        paragraph.push('\n');
    }
    out.paragraph(&paragraph)
}

/// Paragraphs separated by blank lines.
fn plain(text: &str, out: &mut Sink) -> Result<(), ExtractError> {
    let mut paragraph = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            out.paragraph(&paragraph)?;
            paragraph.clear();
        } else {
            paragraph.push_str(line);
            paragraph.push('\n');
        }
    }
    out.paragraph(&paragraph)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(kind: DocKind, text: &str) -> Vec<Block> {
        extract(kind, text.as_bytes(), &Limits::default())
            .unwrap()
            .blocks
    }

    #[test]
    fn kinds_are_told_apart_by_content() {
        assert_eq!(detect(b"%PDF-1.7\n..."), Ok(DocKind::Pdf));
        assert_eq!(detect(b"  <!DOCTYPE html><p>x</p>"), Ok(DocKind::Html));
        assert_eq!(detect(b"<div>hello</div>"), Ok(DocKind::Html));
        assert_eq!(detect(b"# Title\n\nBody"), Ok(DocKind::Markdown));
        assert_eq!(detect(b"Use <b> for bold."), Ok(DocKind::Text));
        assert_eq!(
            blocks(DocKind::Html, "<p>if a < b &amp;&amp; c > d</p>")[0].text,
            "if a < b && c > d"
        );
        assert_eq!(detect(b"#hashtag is not a heading"), Ok(DocKind::Text));
        assert_eq!(detect(b""), Err(ExtractError::Empty));
        assert!(matches!(
            detect(&[0xff, 0xfe, 0x00, 0x81]),
            Err(ExtractError::Unsupported(m)) if m.contains("not UTF-8")
        ));
    }

    #[test]
    fn html_keeps_headings_and_paragraphs_and_drops_scripts() {
        let got = blocks(
            DocKind::Html,
            "<html><head><title>T</title><style>p{color:red}</style></head><body>\
             <h1>Hours</h1><p>Open &amp; ready 9&ndash;5&#33;</p>\
             <script>var secret = 1;</script><h2>Weekend</h2><ul><li>Saturday</li><li>Sunday</li></ul>\
             <table><tr><td>Gold</td><td>ZX-42</td></tr></table></body></html>",
        );
        let texts: Vec<&str> = got.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Hours",
                "Open & ready 9–5!",
                "Weekend",
                "Saturday",
                "Sunday",
                "Gold | ZX-42"
            ]
        );
        assert!(got[0].is_heading && got[2].is_heading);
        assert_eq!(got[3].section.as_deref(), Some("Hours › Weekend"));
    }

    #[test]
    fn markdown_headings_nest_and_code_comments_are_not_headings() {
        let got = blocks(
            DocKind::Markdown,
            "# Guide\nIntro line\n\n## Setup\n```sh\n# not a heading\n```\nRun it.\n\n# Other\nEnd.",
        );
        let pairs: Vec<(&str, Option<&str>, bool)> = got
            .iter()
            .map(|b| (b.text.as_str(), b.section.as_deref(), b.is_heading))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Guide", Some("Guide"), true),
                ("Intro line", Some("Guide"), false),
                ("Setup", Some("Guide › Setup"), true),
                ("# not a heading\nRun it.", Some("Guide › Setup"), false),
                ("Other", Some("Other"), true),
                ("End.", Some("Other"), false),
            ]
        );
    }

    #[test]
    fn text_past_the_output_cap_is_refused() {
        let limits = Limits {
            max_output_bytes: 100,
            ..Limits::default()
        };
        let text = "word ".repeat(100);
        assert!(matches!(
            extract(DocKind::Text, text.as_bytes(), &limits),
            Err(ExtractError::TooLarge(_))
        ));
    }

    #[test]
    fn whitespace_only_text_has_no_text() {
        assert_eq!(
            extract(DocKind::Text, b" \n\n\t", &Limits::default()),
            Err(ExtractError::NoText(DocKind::Text))
        );
    }
}
