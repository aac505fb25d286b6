//! Reading the tables that point at reals by address: `[[server_id]]`,
//! `[[healthcheck_mark]]` and `[udp_flow_migration]`. Whether the address is
//! a real of some VIP, and duplicates, are `validate`'s job.

use std::net::IpAddr;

use super::draft::{Mapping, Val};
use super::reader::{self, Entry};
use super::schema::{self, TableDoc};
use super::source::{Problems, Sp};
use super::values;

/// `[[server_id]]` tables: `id` -> `real`.
pub fn server_ids(e: &Entry<'_>, p: &mut Problems) -> Vec<Mapping> {
    mappings(
        e,
        &schema::SERVER_ID,
        "id",
        "server id 0 means \"no server id\" in packets; use 1 to 4294967295",
        p,
    )
}

/// `[[healthcheck_mark]]` tables: `mark` -> `real`.
pub fn marks(e: &Entry<'_>, p: &mut Problems) -> Vec<Mapping> {
    mappings(
        e,
        &schema::HEALTHCHECK_MARK,
        "mark",
        "socket mark 0 means \"unmarked\"; use 1 to 4294967295",
        p,
    )
}

fn mappings(
    e: &Entry<'_>,
    doc: &'static TableDoc,
    id_key: &str,
    id_help: &str,
    p: &mut Problems,
) -> Vec<Mapping> {
    reader::table_list(e, doc, p)
        .into_iter()
        .map(|mut f| {
            let m = Mapping {
                span: f.span,
                id: match f.require(id_key, p) {
                    None => Val::Invalid,
                    Some(e) => e
                        .integer_in::<u32>(1, i64::from(u32::MAX), id_help, p)
                        .map_or(Val::Invalid, Val::Given),
                },
                real: match f.require("real", p) {
                    None => Val::Invalid,
                    Some(e) => address(&e, p).map_or(Val::Invalid, Val::Given),
                },
            };
            f.finish(p);
            m
        })
        .collect()
}

fn address(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<IpAddr>> {
    let s = e.string(p)?;
    match values::ip(s.value) {
        Ok(a) => Some(Sp::new(a, s.span)),
        Err(b) => {
            e.report(b, p);
            None
        }
    }
}

/// `[udp_flow_migration]`: the reals marked down.
pub fn down_reals(e: &Entry<'_>, p: &mut Problems) -> Vec<Sp<IpAddr>> {
    let Some(mut f) = reader::single_table(e, &schema::UDP_FLOW_MIGRATION, p) else {
        return Vec::new();
    };
    let list = f
        .take("down_reals")
        .and_then(|e| e.array(p))
        .unwrap_or_default()
        .iter()
        .filter_map(|item| address(item, p))
        .collect();
    f.finish(p);
    list
}
