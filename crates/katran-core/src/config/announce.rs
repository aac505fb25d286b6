//! Reading `[announce]`: the kernel routing table katran keeps one route
//! per announced VIP address in, for a routing daemon (BIRD, FRR) to
//! export over BGP, and whether the daemon withdraws them when it exits.

use super::reader::Entry;
use super::source::{Problems, Sp};
use super::{reader, schema};

/// What `[announce]` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The routing table (not main, local or default: 253-255, nor 0).
    pub table: u32,
    /// `katran run` withdraws every announcement on SIGTERM/SIGINT.
    pub withdraw_on_exit: bool,
}

fn table(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<u32>> {
    let t: Sp<u32> = e.integer_in(
        1,
        i64::from(u32::MAX),
        "a routing table number from 1 to 4294967295, not 253-255 (default, main, local)",
        p,
    )?;
    if (253..=255).contains(&t.value) {
        p.error(
            t.span,
            format!(
                "table {} is the kernel's own (253 default, 254 main, 255 local)",
                t.value
            ),
        )
        .help(
            "pick a table of its own for katran, e.g. table = 100, and export it from BIRD or FRR",
        );
        return None;
    }
    Some(t)
}

/// `[announce]`, when written; `None` on errors (reported).
pub fn read(e: &Entry<'_>, p: &mut Problems) -> Option<Announce> {
    let mut f = reader::single_table(e, &schema::ANNOUNCE, p)?;
    let table = f.require("table", p).and_then(|e| table(&e, p));
    let withdraw = f.read("withdraw_on_exit", p, |e, p| e.boolean(p));
    f.finish(p);
    Some(Announce {
        table: table?.value,
        withdraw_on_exit: withdraw.value_or(false),
    })
}
