//! The daemon's status file lives in directories others may write to. A
//! symlink planted at the old fixed temporary name (`status.json.tmp`) or
//! at the status file itself must not make katran write anywhere else: the
//! victim keeps its content, and the status path ends up a regular file
//! holding the status. No privileges needed.

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;

use common::Scratch;

use katran::files::status_file::DaemonStatus;

/// A scratch directory named after this process, removed on drop.
fn status() -> DaemonStatus {
    DaemonStatus {
        pid: 4242,
        config: "/etc/katran.toml".into(),
        ..DaemonStatus::default()
    }
}

/// Writes the status with `plant` symlinked to a victim file; checks the
/// victim is untouched and the status is a regular file read back whole.
fn survives(name: &str, plant: &str) {
    let dir = Scratch::new(&format!("status-{name}"));
    let victim = dir.0.join("victim");
    fs::write(&victim, "root's file\n").expect("victim");
    symlink(&victim, dir.0.join(plant)).expect("symlink");
    let path = dir.0.join("status.json");
    status().write(&path).expect("writing the status");
    assert_eq!(
        fs::read_to_string(&victim).expect("victim"),
        "root's file\n",
        "the write followed the symlink at {plant}"
    );
    let meta = fs::symlink_metadata(&path).expect("status file");
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(DaemonStatus::read(&path).expect("read back"), status());
    // nothing but the status, the victim and what was planted is left
    let mut left: Vec<String> = fs::read_dir(&dir.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec!["status.json".to_string(), "victim".to_string()];
    if plant != "status.json" {
        want.push(plant.to_string());
    }
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn a_symlink_at_the_old_temporary_name_is_not_followed() {
    survives("tmp", "status.json.tmp");
}

#[test]
fn a_symlink_at_the_status_file_is_replaced_not_followed() {
    survives("target", "status.json");
}
