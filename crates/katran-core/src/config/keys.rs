//! Places for problems found after the file was accepted. Applying it can
//! still fail on something the file names: an interface the host does not
//! have, `gateway_mac = "auto"` with no gateway to ask, a dataplane too
//! small for what the file adds. [`FileText`] keeps the text as it was
//! loaded and finds such a key in it again, so the problem is shown at its
//! line, like a problem of the file itself.

use toml_edit::{ImDocument, Item, TableLike};

use super::error::{Diagnostic, Severity};
use super::source::{Source, Span};

/// A key of the file that an apply-time problem comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// This interface's string in `interfaces`.
    Interface(&'a str),
    /// The value of `gateway_mac`.
    GatewayMac,
    /// The key `max_vips`.
    MaxVips,
    /// The key `max_reals`.
    MaxReals,
}

impl Key<'_> {
    fn name(&self) -> &'static str {
        match self {
            Key::Interface(_) => "interfaces",
            Key::GatewayMac => "gateway_mac",
            Key::MaxVips => "max_vips",
            Key::MaxReals => "max_reals",
        }
    }
}

/// The text of a loaded file, and the name it was loaded under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileText {
    file: String,
    text: String,
}

impl FileText {
    pub fn new(file: &str, text: &str) -> FileText {
        FileText {
            file: file.to_string(),
            text: text.to_string(),
        }
    }

    /// An error placed at `key`; at `[dataplane]` when the file leaves the
    /// key at its default, at no place when the text no longer has it.
    pub fn error(&self, key: Key<'_>, message: String, help: String) -> Diagnostic {
        self.at(key, Severity::Error, message, help)
    }

    /// A warning placed as [`FileText::error`] places errors.
    pub fn warning(&self, key: Key<'_>, message: String, help: String) -> Diagnostic {
        self.at(key, Severity::Warning, message, help)
    }

    fn at(&self, key: Key<'_>, severity: Severity, message: String, help: String) -> Diagnostic {
        let source = Source::new(&self.file, &self.text);
        let (line, column, excerpt) = match self.span_of(key) {
            Some(span) => {
                let (line, column) = source.position(span.start);
                (line, column, Some(source.excerpt(span)))
            }
            None => (0, 0, None),
        };
        Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            column,
            message,
            help: Some(help),
            excerpt,
        }
    }

    fn span_of(&self, key: Key<'_>) -> Option<Span> {
        let doc = ImDocument::parse(self.text.as_str()).ok()?;
        let dataplane = doc.as_table().get("dataplane")?;
        let table = dataplane.as_table_like()?;
        let found = match key {
            Key::Interface(name) => interface(table, name),
            Key::GatewayMac => table.get(key.name()).and_then(Item::span),
            Key::MaxVips | Key::MaxReals => {
                table.get_key_value(key.name()).and_then(|(k, _)| k.span())
            }
        };
        found.or_else(|| dataplane.span()).map(Span::from)
    }
}

/// The span of `name`'s string in `interfaces`.
fn interface(table: &dyn TableLike, name: &str) -> Option<std::ops::Range<usize>> {
    table
        .get("interfaces")?
        .as_array()?
        .iter()
        .find(|v| v.as_str() == Some(name))?
        .span()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a\n[dataplane]\ninterfaces = [\"eth0\", \"eth1\"]\ngateway_mac = \"auto\"\nmax_reals = 4\n";

    fn placed(key: Key<'_>) -> (usize, usize, String) {
        let d = FileText::new("k.toml", FILE).error(key, "m".into(), "h".into());
        let x = d.excerpt.unwrap_or_else(|| panic!("{key:?} has no place"));
        let marked = x.text.get(x.span.clone()).unwrap_or_default().to_string();
        (d.line, d.column, marked)
    }

    #[test]
    fn keys_are_found_where_they_are_written() {
        assert_eq!(placed(Key::Interface("eth1")), (3, 23, "\"eth1\"".into()));
        assert_eq!(placed(Key::GatewayMac), (4, 15, "\"auto\"".into()));
        assert_eq!(placed(Key::MaxReals), (5, 1, "max_reals".into()));
    }

    #[test]
    fn a_key_left_at_its_default_is_placed_at_dataplane() {
        assert_eq!(placed(Key::MaxVips), (2, 1, "[dataplane]".into()));
    }

    #[test]
    fn a_key_gone_from_the_text_has_no_place() {
        let d = FileText::new("k.toml", "").error(Key::MaxVips, "m".into(), "h".into());
        assert_eq!((d.line, d.column, d.excerpt), (0, 0, None));
    }
}
