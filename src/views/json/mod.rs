//! The JSON documents katran prints for tools (`--json`), as typed serde
//! structs: one module per document, each with a `format_version` that
//! changes only when a field changes meaning or goes away. They are
//! documented, with their JSON Schemas, in docs/json.md and docs/json/;
//! tests/integration/json_docs.rs checks real output against those schemas. The plan's
//! document is `plan::Plan` itself (docs/plan.md).

pub mod check;
pub mod explain;
pub mod stats;
pub mod status;

/// The `format_version` of status, stats, explain and check documents.
pub const FORMAT_VERSION: u32 = 1;

/// Prints a document, pretty, on standard output.
pub fn print<T: serde::Serialize>(doc: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}
