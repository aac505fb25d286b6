//! What the config module hands back when a file is wrong or dubious: one
//! [`Diagnostic`] per problem, placed at a file, line and column, printed the
//! way compilers print theirs so editors and people can jump to it.

use std::error::Error;
use std::fmt;

use super::escape::controls;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted, but probably does not do what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file name as given to [`super::parse`] or [`super::load`].
    pub file: String,
    /// 1-based line; 0 when the problem has no place in the file (it could
    /// not be read at all).
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line`.
    pub column: usize,
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The line of the file the diagnostic points into, to show it with a
    /// caret under the span; `None` when it has no place.
    pub excerpt: Option<Excerpt>,
}

/// One line of the file and the part of it a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    /// The line (line `Diagnostic::line`), without its line break, control
    /// characters escaped so it is safe to print.
    pub text: String,
    /// Byte range of the span within `text`; empty when it points between
    /// two characters. A span over several lines is cut at the first line's
    /// end.
    pub span: std::ops::Range<usize>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: message`, then `  help: ...` on its own line.
    /// Control characters (which quoted file content may hold) are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = controls(&self.file);
        let message = controls(&self.message);
        if self.line == 0 {
            write!(f, "{file}: {}: {message}", self.severity)?;
        } else {
            write!(
                f,
                "{file}:{}:{}: {}: {message}",
                self.line, self.column, self.severity
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", controls(help))?;
        }
        Ok(())
    }
}

/// Every error found in a file (never just the first), in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    /// The diagnostics one after another, each block ending in a newline
    /// except the last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
