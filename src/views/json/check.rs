//! `katran check --json`: every diagnostic of the file (file, line,
//! column, severity, message, fix) and, for a file that loads, what it
//! holds and the pinned memory it implies.

use serde::Serialize;

use crate::config::{Diagnostic, Severity};

#[derive(Debug, Serialize)]
pub struct DiagnosticDoc {
    /// `error` (the file is refused) or `warning`.
    pub severity: &'static str,
    pub file: String,
    /// 1-based; 0 when the problem has no place (the file is unreadable).
    pub line: usize,
    /// 1-based, in characters; 0 together with `line`.
    pub column: usize,
    pub message: String,
    /// How to fix it.
    pub fix: Option<String>,
}

impl From<&Diagnostic> for DiagnosticDoc {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticDoc {
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
            fix: d.help.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub vips: usize,
    /// Distinct real addresses.
    pub reals: usize,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub format_version: u32,
    pub file: String,
    /// No errors: the file would be applied.
    pub ok: bool,
    pub errors: Vec<DiagnosticDoc>,
    pub warnings: Vec<DiagnosticDoc>,
    /// `null` when the file has errors.
    pub summary: Option<Summary>,
    /// `null` when the file has errors.
    pub memory: Option<crate::views::memory::Memory>,
}
