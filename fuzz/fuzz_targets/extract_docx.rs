//! Any bytes handed to the DOCX extractor must give text or an error, never a panic, a hang
//! or runaway memory. Panics inside docx-rs that our zip and XML pre-checks let through
//! show up here; in production `extract_safely` turns them into "the file is corrupt".
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::knowledge::extract::{extract, DocKind, Limits};

fuzz_target!(|data: &[u8]| {
    let _ = extract(DocKind::Docx, data, &Limits::default());
});
