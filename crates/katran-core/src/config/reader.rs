//! Typed, located access to the parsed TOML tree. Tables are read key by key
//! through [`Fields`], which remembers what was taken so leftovers can be
//! reported as unknown keys; every wrong type is reported, with the place
//! and a correct example, and reading goes on.

use std::str::FromStr;

use toml_edit::{ArrayOfTables, InlineTable, Item, Table, Value};

use super::draft::Val;
use super::schema::{self, TableDoc};
use super::source::{Problems, Sp, Span};
use super::suggest;
use super::values::{self, Bad};

/// A node of the tree: an inline value, a `[table]` or `[[tables]]`.
#[derive(Clone, Copy, Debug)]
pub enum Node<'a> {
    Value(&'a Value),
    Table(&'a Table),
    Tables(&'a ArrayOfTables),
}

impl<'a> Node<'a> {
    pub fn from_item(item: &'a Item) -> Option<Self> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(Node::Value(v)),
            Item::Table(t) => Some(Node::Table(t)),
            Item::ArrayOfTables(a) => Some(Node::Tables(a)),
        }
    }

    /// What it is, for "must be X, not Y".
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Value(Value::String(_)) => "a string",
            Node::Value(Value::Integer(_)) => "an integer",
            Node::Value(Value::Float(_)) => "a float",
            Node::Value(Value::Boolean(_)) => "a boolean",
            Node::Value(Value::Datetime(_)) => "a date-time",
            Node::Value(Value::Array(_)) => "an array",
            Node::Value(Value::InlineTable(_)) => "an inline table",
            Node::Table(_) => "a table",
            Node::Tables(_) => "an array of tables",
        }
    }

    fn own_span(&self) -> Option<Span> {
        match self {
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
            Node::Tables(a) => a.span(),
        }
        .map(Span::from)
    }
}

/// A value found under some name, with where it was written.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// How messages name it: "`interfaces`", "each entry of `reals`".
    pub what: String,
    pub node: Node<'a>,
    /// The value (or the key, for tables without a place of their own).
    pub span: Span,
    /// The key, when the value is a table's key.
    pub key: Span,
    /// A correct line, for help texts.
    pub example: &'static str,
}

impl<'a> Entry<'a> {
    /// An element of an array, named after the array.
    pub fn element(array: &Entry<'a>, v: &'a Value) -> Self {
        let span = v.span().map(Span::from).unwrap_or(array.span);
        Entry {
            what: format!("each entry of {}", array.what),
            node: Node::Value(v),
            span,
            key: span,
            example: array.example,
        }
    }

    /// Reports that the value has the wrong type.
    pub fn wrong_type(&self, expected: &str, p: &mut Problems) {
        let found = self.node.kind();
        let unquoted = match (expected, self.node) {
            ("an integer", Node::Value(Value::String(s))) if i64::from_str(s.value()).is_ok() => {
                Some(s.value().as_str())
            }
            ("a boolean", Node::Value(Value::String(s)))
                if s.value() == "true" || s.value() == "false" =>
            {
                Some(s.value().as_str())
            }
            _ => None,
        };
        let key = self
            .what
            .strip_prefix('`')
            .and_then(|w| w.strip_suffix('`'));
        let help = match (unquoted, key) {
            (Some(v), Some(k)) => format!("remove the quotes: {k} = {v}"),
            (Some(v), None) => format!("remove the quotes: {v}"),
            (None, _) => format!("write it like: {}", self.example),
        };
        p.error(
            self.span,
            format!("{} must be {expected}, not {found}", self.what),
        )
        .help(help);
    }

    pub fn string(&self, p: &mut Problems) -> Option<Sp<&'a str>> {
        match self.node {
            Node::Value(Value::String(s)) => Some(Sp::new(s.value().as_str(), self.span)),
            _ => {
                self.wrong_type("a string", p);
                None
            }
        }
    }

    pub fn integer(&self, p: &mut Problems) -> Option<Sp<i64>> {
        match self.node {
            Node::Value(Value::Integer(i)) => Some(Sp::new(*i.value(), self.span)),
            _ => {
                self.wrong_type("an integer", p);
                None
            }
        }
    }

    /// `true` or `false`.
    pub fn boolean(&self, p: &mut Problems) -> Option<Sp<bool>> {
        match self.node {
            Node::Value(Value::Boolean(b)) => Some(Sp::new(*b.value(), self.span)),
            _ => {
                self.wrong_type("a boolean", p);
                None
            }
        }
    }

    /// An integer within `lo..=hi`; `help` explains the range.
    pub fn integer_in<T>(&self, lo: i64, hi: i64, help: &str, p: &mut Problems) -> Option<Sp<T>>
    where
        T: TryFrom<i64>,
    {
        let n = self.integer(p)?;
        match T::try_from(n.value) {
            Ok(v) if (lo..=hi).contains(&n.value) => Some(Sp::new(v, n.span)),
            _ => {
                p.error(
                    n.span,
                    format!("{} must be from {lo} to {hi}, not {}", self.what, n.value),
                )
                .help(help);
                None
            }
        }
    }

    /// Reports a value that is malformed on its own terms.
    pub fn report(&self, bad: Bad, p: &mut Problems) {
        p.error(self.span, bad.message).help(bad.help);
    }

    /// A string that must be one of `words`, mapped to `values`.
    pub fn word<T: Copy>(
        &self,
        p: &mut Problems,
        words: &[&str],
        values: &[T],
        what: &str,
    ) -> Option<Sp<T>> {
        let s = self.string(p)?;
        match values::one_of(s.value, words, what) {
            Ok(i) => values.get(i).map(|v| Sp::new(*v, s.span)),
            Err(b) => {
                self.report(b, p);
                None
            }
        }
    }

    /// A string parsed by `parse`.
    pub fn parsed<T>(
        &self,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, Bad>,
    ) -> Option<Sp<T>> {
        let s = self.string(p)?;
        match parse(s.value) {
            Ok(v) => Some(Sp::new(v, s.span)),
            Err(b) => {
                self.report(b, p);
                None
            }
        }
    }

    /// The elements of an inline array.
    pub fn array(&self, p: &mut Problems) -> Option<Vec<Entry<'a>>> {
        match self.node {
            Node::Value(Value::Array(a)) => {
                Some(a.iter().map(|v| Entry::element(self, v)).collect())
            }
            _ => {
                self.wrong_type("an array", p);
                None
            }
        }
    }
}

/// A table or inline table, read key by key.
pub struct Fields<'a> {
    doc: &'static TableDoc,
    /// The table's header or opening brace (its key when it has neither).
    pub span: Span,
    entries: Vec<(String, Option<Entry<'a>>)>,
}

impl<'a> Fields<'a> {
    /// The keys of `node` if it is a table of either kind; `fallback` places
    /// tables the parser gives no place (implicit ones).
    pub fn of(node: Node<'a>, fallback: Span, doc: &'static TableDoc) -> Option<Self> {
        let span = node.own_span().unwrap_or(fallback);
        let entries = match node {
            Node::Table(t) => table_entries(t, span, doc),
            Node::Value(Value::InlineTable(t)) => inline_entries(t, span, doc),
            _ => return None,
        };
        Some(Fields { doc, span, entries })
    }

    /// The value of `name`, now taken.
    pub fn take(&mut self, name: &str) -> Option<Entry<'a>> {
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, e)| e.take())
    }

    /// Reads key `name` with `parse`: absent, invalid (reported) or given.
    pub fn read<T>(
        &mut self,
        name: &str,
        p: &mut Problems,
        parse: impl FnOnce(&Entry<'a>, &mut Problems) -> Option<Sp<T>>,
    ) -> Val<T> {
        match self.take(name) {
            None => Val::Absent,
            Some(e) => parse(&e, p).map_or(Val::Invalid, Val::Given),
        }
    }

    /// Where key `name` is written, if it is and was not taken yet.
    pub fn peek_key(&self, name: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, e)| e.as_ref().map(|e| e.key))
    }

    /// Like [`Self::take`], reporting a missing key at the table.
    pub fn require(&mut self, name: &str, p: &mut Problems) -> Option<Entry<'a>> {
        let e = self.take(name);
        if e.is_none() {
            p.error(self.span, format!("{} is missing `{name}`", self.doc.title))
                .help(format!("add {}", self.doc.example(name)));
        }
        e
    }

    /// Reports every key not taken as unknown.
    pub fn finish(self, p: &mut Problems) {
        for (name, entry) in self.entries {
            if let Some(e) = entry {
                unknown_key(&name, e.key, self.doc, p);
            }
        }
    }
}

fn make_entry<'a>(name: &str, key: Span, node: Node<'a>, doc: &'static TableDoc) -> Entry<'a> {
    Entry {
        what: format!("`{name}`"),
        node,
        span: node.own_span().unwrap_or(key),
        key,
        example: doc.example(name),
    }
}

fn table_entries<'a>(
    t: &'a Table,
    span: Span,
    doc: &'static TableDoc,
) -> Vec<(String, Option<Entry<'a>>)> {
    t.iter()
        .filter_map(|(name, item)| {
            let key = t
                .key(name)
                .and_then(|k| k.span())
                .map(Span::from)
                .unwrap_or(span);
            let node = Node::from_item(item)?;
            Some((name.to_string(), Some(make_entry(name, key, node, doc))))
        })
        .collect()
}

fn inline_entries<'a>(
    t: &'a InlineTable,
    span: Span,
    doc: &'static TableDoc,
) -> Vec<(String, Option<Entry<'a>>)> {
    t.iter()
        .map(|(name, v)| {
            let key = t
                .key(name)
                .and_then(|k| k.span())
                .map(Span::from)
                .unwrap_or(span);
            (
                name.to_string(),
                Some(make_entry(name, key, Node::Value(v), doc)),
            )
        })
        .collect()
}

/// "unknown key", with the most likely fix.
fn unknown_key(name: &str, at: Span, doc: &'static TableDoc, p: &mut Problems) {
    let alias = doc
        .aliases
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, k)| *k);
    let close = alias.or_else(|| suggest::closest(name, doc.names()));
    let elsewhere = schema::TABLES
        .iter()
        .copied()
        .chain([&schema::ROOT])
        .find(|t| !std::ptr::eq(*t, doc) && t.key(name).is_some());
    let help = match (close, elsewhere) {
        (Some(k), _) => format!("did you mean `{k}`?"),
        (None, Some(t)) if std::ptr::eq(t, &schema::ROOT) => format!(
            "`{name}` is a top-level table; write [{name}] or [[{name}]] on a line of its own"
        ),
        (None, Some(t)) if std::ptr::eq(doc, &schema::ROOT) => {
            format!("`{name}` belongs in {}: move it below that header", t.title)
        }
        (None, Some(t)) => format!(
            "`{name}` belongs in {}; a key belongs to the nearest table header above it",
            t.title
        ),
        (None, None) => format!(
            "keys of {} are: {}",
            doc.title,
            doc.names().collect::<Vec<_>>().join(", ")
        ),
    };
    let message = if std::ptr::eq(doc, &schema::ROOT) {
        format!("unknown top-level key `{name}`")
    } else {
        format!("unknown key `{name}` in {}", doc.title)
    };
    p.error(at, message).help(help);
}

/// The tables of an array of tables (`[[vip]]`), or of an inline array of
/// inline tables; anything else is reported.
pub fn table_list<'a>(e: &Entry<'a>, doc: &'static TableDoc, p: &mut Problems) -> Vec<Fields<'a>> {
    match e.node {
        Node::Tables(a) => a
            .iter()
            .filter_map(|t| Fields::of(Node::Table(t), e.key, doc))
            .collect(),
        Node::Value(Value::Array(a)) => a
            .iter()
            .filter_map(|v| {
                let item = Entry::element(e, v);
                let f = Fields::of(item.node, item.span, doc);
                if f.is_none() {
                    item.wrong_type("an inline table", p);
                }
                f
            })
            .collect(),
        Node::Table(_) => {
            let name = e.what.trim_matches('`');
            p.error(
                e.span,
                format!("{} must be an array of tables, not a single table", e.what),
            )
            .help(format!("write [[{name}]] (two brackets) before each entry"));
            Vec::new()
        }
        _ => {
            e.wrong_type("an array of tables", p);
            Vec::new()
        }
    }
}

/// A single table (`[dataplane]` or an inline table); anything else is
/// reported.
pub fn single_table<'a>(
    e: &Entry<'a>,
    doc: &'static TableDoc,
    p: &mut Problems,
) -> Option<Fields<'a>> {
    if let Node::Tables(_) = e.node {
        let name = e.what.trim_matches('`');
        p.error(
            e.span,
            format!("{} must be a single table, not an array of tables", e.what),
        )
        .help(format!("write [{name}] (one pair of brackets), once"));
        return None;
    }
    let f = Fields::of(e.node, e.key, doc);
    if f.is_none() {
        e.wrong_type("a table", p);
    }
    f
}
