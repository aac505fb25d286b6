//! Places in the file. The TOML parser gives byte ranges; checks report
//! problems against those ranges into [`Problems`], and only at the end are
//! they turned into 1-based line:column [`Diagnostic`]s.

use std::ops::Range;

use super::error::{Diagnostic, Excerpt, Severity};
use super::escape::controls;

/// A byte range of the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The very start of the file, for problems of the file as a whole.
    pub const FILE_START: Span = Span { start: 0, end: 0 };
}

impl From<Range<usize>> for Span {
    fn from(r: Range<usize>) -> Self {
        Span {
            start: r.start,
            end: r.end,
        }
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Span) -> Self {
        Sp { value, span }
    }
}

/// A problem before it is placed on a line.
#[derive(Clone, Debug)]
pub struct Problem {
    severity: Severity,
    span: Span,
    message: String,
    help: Option<String>,
}

impl Problem {
    /// Says how to fix the problem.
    pub fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// Collects every problem found, so all of them can be reported at once.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Problem {
        self.push(Severity::Error, span, message.into())
    }

    pub fn warn(&mut self, span: Span, message: impl Into<String>) -> &mut Problem {
        self.push(Severity::Warning, span, message.into())
    }

    fn push(&mut self, severity: Severity, span: Span, message: String) -> &mut Problem {
        self.list.push(Problem {
            severity,
            span,
            message,
            help: None,
        });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }

    /// Errors and warnings as diagnostics, each list in file order.
    pub fn into_diagnostics(self, source: &Source<'_>) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut all: Vec<(usize, Diagnostic)> = self
            .list
            .into_iter()
            .map(|p| (p.span.start, source.diagnostic(p)))
            .collect();
        // Stable: problems at one place keep the order they were found in.
        all.sort_by_key(|(offset, _)| *offset);
        let (errors, warnings): (Vec<_>, Vec<_>) = all
            .into_iter()
            .map(|(_, d)| d)
            .partition(|d| d.severity == Severity::Error);
        (errors, warnings)
    }
}

/// The text being checked, with the offsets at which its lines start.
pub struct Source<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = self.boundary(offset);
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }

    /// 1-based line of a span, for messages like "first listed on line 7".
    pub fn line_of(&self, span: Span) -> usize {
        self.position(span.start).0
    }

    /// The line holding the start of `span`, and the span within it (cut
    /// at the line's end), made safe to print.
    pub fn excerpt(&self, span: Span) -> Excerpt {
        let start = self.boundary(span.start);
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts[line - 1];
        let rest = &self.text[line_start..];
        let rest = rest.split('\n').next().unwrap_or_default();
        let line_end = line_start + rest.strip_suffix('\r').unwrap_or(rest).len();
        let start = start.min(line_end);
        let end = self.boundary(span.end.clamp(start, line_end));
        // A tab becomes one space (offsets stay) so the caret lines up.
        let shown = |a: usize, b: usize| controls(&self.text[a..b].replace('\t', " ")).into_owned();
        let from = shown(line_start, start).len();
        Excerpt {
            text: shown(line_start, line_end),
            span: from..from + shown(start, end).len(),
        }
    }

    /// The char boundary at or before `offset`, within the text.
    fn boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    fn diagnostic(&self, p: Problem) -> Diagnostic {
        let (line, column) = self.position(p.span.start);
        Diagnostic {
            severity: p.severity,
            file: self.file.to_string(),
            line,
            column,
            excerpt: Some(self.excerpt(p.span)),
            message: p.message,
            help: p.help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("f", "ab\n\u{e9}x = 1\n");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(1), (1, 2));
        assert_eq!(s.position(3), (2, 1));
        // 'x' follows a two-byte character: byte 5, column 2.
        assert_eq!(s.position(5), (2, 2));
        // Past the end and inside a character both clamp.
        assert_eq!(s.position(4), (2, 1));
        assert_eq!(s.position(100), (3, 1));
    }
}
