//! From text to [`Draft`]: parses the TOML (turning a syntax error into a
//! diagnostic with a likely fix) and reads the top-level tables.

use toml_edit::{ImDocument, TomlError};

use super::dataplane;
use super::draft::Draft;
use super::mappings;
use super::reader::{self, Fields, Node};
use super::schema;
use super::source::{Problems, Span};
use super::vips;

/// The draft of `text`, or `None` after a syntax error (reported).
pub fn read(text: &str, p: &mut Problems) -> Option<Draft> {
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            syntax_error(text, &e, p);
            return None;
        }
    };
    let root = Node::Table(doc.as_table());
    let mut f = Fields::of(root, Span::FILE_START, &schema::ROOT)?;
    let mut draft = Draft::default();

    match f.take("dataplane") {
        Some(e) => {
            if let Some(mut t) = reader::single_table(&e, &schema::DATAPLANE, p) {
                draft.dataplane = Some(dataplane::read(&mut t, p));
                t.finish(p);
            }
        }
        None => {
            let message = if text.trim().is_empty() {
                "the file is empty"
            } else {
                "the file has no [dataplane] table"
            };
            p.error(Span::FILE_START, message).help(
                "every configuration needs [dataplane] with at least interfaces = [\"eth0\"]",
            );
        }
    }
    if let Some(e) = f.take("vip") {
        draft.vips = vips::read(&e, p);
    }
    if let Some(e) = f.take("server_id") {
        draft.server_ids = mappings::server_ids(&e, p);
    }
    if let Some(e) = f.take("healthcheck_mark") {
        draft.marks = mappings::marks(&e, p);
    }
    if let Some(e) = f.take("udp_flow_migration") {
        draft.down_reals = mappings::down_reals(&e, p);
    }
    if let Some(e) = f.take("announce") {
        draft.announce = super::announce::read(&e, p);
    }
    if let Some(e) = f.take("metrics") {
        draft.metrics = super::metrics::read(&e, p);
    }
    f.finish(p);
    Some(draft)
}

fn syntax_error(text: &str, e: &TomlError, p: &mut Problems) {
    let span = e.span().map(Span::from).unwrap_or(Span::FILE_START);
    let raw = e.message().trim();
    // The parser stacks context over cause ("invalid table header\nduplicate
    // key ..."): the cause is what a person needs.
    let cause = raw.lines().last().unwrap_or_default().trim();
    let context = raw.lines().next().unwrap_or_default().trim();
    let table_twice = cause
        .strip_prefix("duplicate key `")
        .and_then(|c| c.split('`').next())
        .filter(|_| context.contains("table header"));
    let message = if let Some(name) = table_twice {
        format!("invalid TOML: table `{name}` is defined twice")
    } else if cause.is_empty() {
        "invalid TOML: expected a value".to_string()
    } else {
        format!("invalid TOML: {cause}")
    };
    let (line_start, line) = line_at(text, span.start);
    if let Some((at, value, help)) = unquoted(line) {
        let start = line_start + at;
        p.error(
            Span {
                start,
                end: start + value.len(),
            },
            format!("invalid TOML: `{value}` needs quotes"),
        )
        .help(help);
        return;
    }
    if let Some((_, after)) = line.split_once('=') {
        if after
            .split('#')
            .next()
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            p.error(span, "invalid TOML: missing value after `=`")
                .help("write a value: a quoted string, a number, true/false or [ ... ]");
            return;
        }
    }
    let help = if table_twice.is_some() {
        "a [table] may appear only once; for several VIPs, server ids or marks write [[vip]], [[server_id]] or [[healthcheck_mark]] (two brackets) before each".to_string()
    } else if cause.starts_with("duplicate key") {
        "each key may appear once per table: remove one of them".to_string()
    } else if context.contains("string") {
        "close the string with the same quote it starts with, on the same line".to_string()
    } else if cause.contains("expected `]`") && context.contains("array") {
        "separate the elements with commas and close the array with ]".to_string()
    } else if context.contains("inline table") {
        "an inline table { ... } must end with } on the same line, without a trailing comma; use a [table] for longer ones".to_string()
    } else if context.contains("table header") {
        "a table header is a name in brackets on a line of its own: [dataplane] or [[vip]]"
            .to_string()
    } else {
        "each line is `key = value`, a [table] header or a comment; strings need quotes".to_string()
    };
    p.error(span, message).help(help);
}

/// The offset at which the line holding byte `offset` starts, and the line.
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let offset = offset.min(text.len());
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text
        .get(start..)
        .and_then(|t| t.lines().next())
        .unwrap_or_default();
    (start, line)
}

/// `key = 10.0.0.1` and the like, text that needs quotes: where the value
/// starts in the line, the value, and the fix.
fn unquoted(line: &str) -> Option<(usize, &str, String)> {
    let (key, rest) = line.split_once('=')?;
    let value = rest.split('#').next().unwrap_or_default().trim();
    let key = key.trim();
    let first = value.chars().next()?;
    let quoted_or_structured = matches!(first, '"' | '\'' | '[' | '{');
    let keyword = matches!(value, "true" | "false" | "inf" | "nan");
    let one_word = !value.contains(char::is_whitespace) && !value.contains('=');
    if key.is_empty()
        || quoted_or_structured
        || keyword
        || !one_word
        || value.parse::<f64>().is_ok()
    {
        return None;
    }
    // `rest` ends the line, so it starts at line.len() - rest.len().
    let at = line.len() - rest.len() + rest.find(value)?;
    Some((
        at,
        value,
        format!("text values need quotes: {key} = \"{value}\""),
    ))
}
