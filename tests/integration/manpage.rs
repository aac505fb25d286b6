//! The committed `man/katran.8` is exactly what `katran generate man`
//! produces from the current clap definitions, so the page cannot fall
//! behind `--help`.

use std::path::Path;

#[test]
fn committed_man_page_matches_the_cli() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/katran.8");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = katran::cli::generate::man_page();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date with the command-line definitions (first difference at \
             line {}).\nRegenerate it with:\n    cargo run -- generate man man/\n\
             and commit the result.",
            path.display(),
            line + 1
        );
    }
}
