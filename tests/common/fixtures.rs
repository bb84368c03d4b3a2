//! Real documents for knowledge tests, generated here: a two-page PDF and a DOCX with
//! headings and a table, each holding a fact found nowhere else.

use std::io::Cursor;

/// A PDF with one page per text, each line in its own text object.
pub fn pdf_document(pages: &[&[&str]]) -> lopdf::Document {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Object, Stream};
    let mut doc = lopdf::Document::with_version("1.5");
    doc.trailer.set(
        "ID",
        Object::Array(vec![
            Object::string_literal(b"0123456789abcdef".to_vec()),
            Object::string_literal(b"fedcba9876543210".to_vec()),
        ]),
    );
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let kids: Vec<Object> = pages
        .iter()
        .map(|lines| {
            let mut operations = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                operations.extend([
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), (720 - 20 * i as i64).into()]),
                    Operation::new("Tj", vec![Object::string_literal(*line)]),
                    Operation::new("ET", vec![]),
                ]);
            }
            let content = Content { operations }.encode().unwrap();
            let contents = doc.add_object(Stream::new(dictionary! {}, content));
            doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => contents,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
            })
            .into()
        })
        .collect();
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc
}

pub fn save(mut doc: lopdf::Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

/// The two-page manual: the vault code is only on page 2.
pub fn manual_pdf() -> Vec<u8> {
    let mut doc = pdf_document(&[
        &["Welcome to the Acme manual.", "Read on for details."],
        &["Security", "The vault code is 7431-KESTREL."],
    ]);
    doc.compress();
    save(doc)
}

pub fn para(text: &str) -> docx_rs::Paragraph {
    docx_rs::Paragraph::new().add_run(docx_rs::Run::new().add_text(text))
}

pub fn cell(text: &str) -> docx_rs::TableCell {
    docx_rs::TableCell::new().add_paragraph(para(text))
}

/// A price list: intro, "Pricing" (Heading 1) with a paragraph and a table whose second
/// row holds the fact, then "Support" (Heading 1) › "Hours" (Heading 2).
pub fn price_list_docx() -> Vec<u8> {
    use docx_rs::{Docx, Style, StyleType, Table, TableRow};
    let mut out = Cursor::new(Vec::new());
    Docx::new()
        .add_style(Style::new("Heading1", StyleType::Paragraph).name("Heading 1"))
        .add_style(Style::new("Heading2", StyleType::Paragraph).name("Heading 2"))
        .add_paragraph(para("Acme price list."))
        .add_paragraph(para("Pricing").style("Heading1"))
        .add_paragraph(para("Plans are billed monthly."))
        .add_table(Table::new(vec![
            TableRow::new(vec![cell("Plan"), cell("Code")]),
            TableRow::new(vec![cell("Gold"), cell("ZX-42-OSPREY")]),
        ]))
        .add_paragraph(para("Support").style("Heading1"))
        .add_paragraph(para("Hours").style("Heading2"))
        .add_paragraph(para("Open 9 to 5."))
        .build()
        .pack(&mut out)
        .unwrap();
    out.into_inner()
}
