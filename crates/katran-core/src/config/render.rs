//! Diagnostics shown the way cargo shows its own: the problem, then
//! `--> file:line:column`, the line of the file with a caret under what is
//! wrong, and `= help:` with the fix. The drawing is left to
//! `annotate-snippets` (the crate rustc and cargo use), in plain text unless
//! standard error is a terminal. The one-line form (`Display`) stays for
//! logs and the daemon's status file.

use std::io::IsTerminal;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use super::error::{Diagnostic, Severity};
use super::escape::controls;

/// Whether to colour what is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Never,
    Always,
}

impl Colour {
    /// Colour for a terminal on standard error, unless `NO_COLOR` is set.
    pub fn for_stderr() -> Colour {
        if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Colour::Always
        } else {
            Colour::Never
        }
    }

    fn renderer(self) -> Renderer {
        match self {
            Colour::Never => Renderer::plain(),
            Colour::Always => Renderer::styled(),
        }
    }
}

/// One diagnostic as a block of lines (no final line break).
pub fn render(d: &Diagnostic, colour: Colour) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let file = controls(&d.file);
    let message = controls(&d.message);
    let mut group = Group::with_title(level.primary_title(message));
    group = match &d.excerpt {
        Some(x) => group.element(
            Snippet::source(x.text.as_str())
                .line_start(d.line)
                .path(file)
                .annotation(AnnotationKind::Primary.span(x.span.clone())),
        ),
        None => group.element(Origin::path(file)),
    };
    let help = d.help.as_deref().map(controls);
    if let Some(help) = help {
        group = group.element(Level::HELP.message(help));
    }
    colour.renderer().render(&[group])
}

/// Every error of a file, each as a block, then how many there were.
pub fn render_errors(errors: &[Diagnostic], file: &str, colour: Colour) -> String {
    let mut out = String::new();
    for d in errors {
        out.push_str(&render(d, colour));
        out.push_str("\n\n");
    }
    let count = match errors.len() {
        1 => "1 error".to_string(),
        n => format!("{n} errors"),
    };
    let total = Diagnostic {
        severity: Severity::Error,
        file: String::new(),
        line: 0,
        column: 0,
        message: format!("{} has {count}", controls(file)),
        help: None,
        excerpt: None,
    };
    out.push_str(&title_only(&total, colour));
    out
}

/// Just the `error: message` line.
fn title_only(d: &Diagnostic, colour: Colour) -> String {
    colour.renderer().render(&[Group::with_title(
        Level::ERROR.primary_title(d.message.as_str()),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn first_error(text: &str) -> Diagnostic {
        let errors = parse(text, "k.toml").expect_err("broken");
        errors.0[0].clone()
    }

    #[test]
    fn a_caret_sits_under_the_span() {
        let d = first_error("[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mod = \"native\"\n");
        let shown = render(&d, Colour::Never);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "error: unknown key `xdp_mod` in [dataplane]");
        assert_eq!(lines[1], " --> k.toml:3:1");
        assert_eq!(lines[3], "3 | xdp_mod = \"native\"");
        assert_eq!(lines[4], "  | ^^^^^^^");
        assert_eq!(lines[5], "  |");
        assert_eq!(lines[6], "  = help: did you mean `xdp_mode`?");
    }

    #[test]
    fn control_characters_in_the_line_are_escaped() {
        let d = first_error("[dataplane]\ninterfaces = [\"eth0\"]\nx\u{1b}y = 1\n");
        let shown = render(&d, Colour::Never);
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.contains("x\\u{1b}y = 1"), "{shown}");
    }

    #[test]
    fn a_diagnostic_without_a_place_names_the_file() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "/nope.toml".into(),
            line: 0,
            column: 0,
            message: "cannot read the file".into(),
            help: Some("check the path".into()),
            excerpt: None,
        };
        assert_eq!(
            render(&d, Colour::Never),
            "error: cannot read the file\n--> /nope.toml\n = help: check the path"
        );
    }

    #[test]
    fn several_errors_end_with_their_count() {
        let text = "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mod = 1\nring = 2\n";
        let errors = parse(text, "k.toml").expect_err("broken");
        let shown = render_errors(&errors.0, "k.toml", Colour::Never);
        assert_eq!(shown.matches(" --> k.toml:").count(), 2, "{shown}");
        assert!(shown.ends_with("error: k.toml has 2 errors"), "{shown}");
    }
}
