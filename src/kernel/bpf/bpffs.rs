//! The bpf filesystem under the pins, checked rather than assumed. Pins
//! only outlive katran on the host's bpffs: under `ip netns exec`, which
//! gives the command a mount namespace with /sys remounted, /sys/fs/bpf is
//! an empty sysfs directory, and a bpffs mounted there dies with the
//! command, taking the pinned dataplane and its XDP links with it while
//! apply reports success. So katran mounts bpffs only in the host's own
//! mount namespace (a fresh machine), and refuses elsewhere, saying how to
//! enter only the network namespace. Pin directories are created 0700:
//! nobody else may open them, so nobody else can hold their lock or plant
//! entries in them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// `statfs` magic of the bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is mounted.
pub const ROOT: &str = "/sys/fs/bpf";

/// Whether `path` is on the bpf filesystem.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: an all-zero statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Whether this process shares the host's mount namespace: pid 1's, or,
/// where pid 1 hides its namespaces (a VM's init that is not dumpable,
/// read as EACCES even by root), kthreadd's, whose kernel threads always
/// run in the initial one. `None` when neither can be read.
fn in_host_mount_namespace() -> Option<bool> {
    let ours = fs::read_link("/proc/self/ns/mnt").ok()?;
    let host = fs::read_link("/proc/1/ns/mnt").ok().or_else(|| {
        let comm = fs::read_to_string("/proc/2/comm").ok()?;
        if comm.trim() != "kthreadd" {
            return None;
        }
        fs::read_link("/proc/2/ns/mnt").ok()
    })?;
    Some(ours == host)
}

/// Makes sure bpffs is mounted at /sys/fs/bpf, mounting it on a machine that
/// has none (only in the host's own mount namespace).
pub fn mount_if_missing() -> Result<()> {
    let root = Path::new(ROOT);
    if is_bpffs(root).unwrap_or(false) {
        return Ok(());
    }
    if in_host_mount_namespace() != Some(true) {
        bail!(
            "{ROOT} is not the bpf filesystem in this mount namespace (is this `ip netns exec`? \
             it remounts /sys): pins made here would vanish when this command exits, and \
             with them the dataplane. Enter only the network namespace instead: \
             `nsenter --net=/run/netns/NS katran ...`"
        );
    }
    mount_bpffs(root)
}

/// Makes sure `dir` is a directory on the host's bpffs (see
/// [`mount_if_missing`]), creating `dir` (mode 0700) if needed.
pub fn ensure(dir: &Path) -> Result<()> {
    mount_if_missing()?;
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if !is_bpffs(existing).unwrap_or(false) {
        bail!(
            "{} is not on the bpf filesystem ({} is not); pin_dir must be below {ROOT}",
            dir.display(),
            existing.display()
        );
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir).unwrap_or(false) {
        bail!("{} is not on the bpf filesystem", dir.display());
    }
    // a directory made by an older katran (0755) is closed too
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

fn mount_bpffs(root: &Path) -> Result<()> {
    fs::create_dir_all(root).context("creating /sys/fs/bpf")?;
    let target = CString::new(ROOT).context("static path")?;
    let fstype = CString::new("bpf").context("static name")?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let ret = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error()).context("mounting bpffs at /sys/fs/bpf");
    }
    log::info!("mounted bpffs at /sys/fs/bpf");
    Ok(())
}

/// What katran pins directly under a pin directory: the balancer's maps,
/// program and links, the health-check plane, `katran real`'s pins, and a
/// replacement's staged (`next`) and outgoing (`retired`) dataplanes.
pub const LAYOUT: &[&str] = &["maps", "prog", "links", "hc", "real", "next", "retired"];

/// Refuses to let `katran down` remove `dir` unless it is on bpffs and
/// holds nothing but katran's layout (and empty directories).
pub fn check_removable(dir: &Path) -> Result<()> {
    if !is_bpffs(dir).with_context(|| format!("examining {}", dir.display()))? {
        bail!(
            "{} is not on the bpf filesystem: not a katran pin directory, nothing removed",
            dir.display()
        );
    }
    let mut foreign = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !LAYOUT.contains(&name.as_str()) && !empty_tree(&entry.path()) {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "{} holds entries katran did not pin ({}): nothing removed",
            dir.display(),
            foreign.join(", ")
        );
    }
    Ok(())
}

/// A directory holding nothing but (possibly) empty directories.
fn empty_tree(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_dir() {
        return false;
    }
    fs::read_dir(path).is_ok_and(|d| d.flatten().all(|e| empty_tree(&e.path())))
}
