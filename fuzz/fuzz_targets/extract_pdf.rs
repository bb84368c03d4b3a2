//! Any bytes handed to the PDF extractor must give text or an error, never a panic, a hang
//! or runaway memory (libFuzzer's -timeout and -rss_limit_mb catch the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::knowledge::extract::{extract, DocKind, Limits};

fuzz_target!(|data: &[u8]| {
    let _ = extract(DocKind::Pdf, data, &Limits::default());
});
