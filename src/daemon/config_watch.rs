//! Following the configuration file wherever it really lives, so the
//! daemon reloads on every way people and tools replace it:
//!
//! - an edit in place, or a new file renamed over the old one (the file's
//!   own directory is watched, not the file);
//! - a Kubernetes ConfigMap update: `katran.toml -> ..data/katran.toml`,
//!   where `..data` is a symlink swapped to a new timestamped directory
//!   (the directory of every symlink on the way to the file is watched);
//! - the directory itself replaced (`mv conf conf.old; mkdir conf`): the
//!   directory above is watched too, and the watches are re-armed whenever
//!   a watched directory is no longer the one at its path.
//!
//! Events only say "look again": whether the file changed is decided by
//! comparing the identity and times of what the path resolves to with what
//! was last loaded, so unrelated events in a busy directory cost a `stat`.
//! The daemon also looks again every few seconds, in case an event was
//! missed (a watch lost while the directory was being replaced).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// What the path resolved to, as far as a change is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The fingerprint of the file `path` resolves to, `None` when there is
/// none (missing, or a dangling symlink).
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// At most this many symlinks are followed (the kernel's own limit).
const MAX_HOPS: usize = 40;

/// The directories whose changes can change what `path` reads: the
/// directory above the file's, the file's own, and, for every symlink on
/// the way to the file, the directory it points into (as written and
/// resolved). Relative paths are taken from the current directory.
pub fn dirs_to_watch(path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: PathBuf| {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    let mut p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(grand) = p.parent().and_then(Path::parent) {
        add(grand.to_path_buf());
    }
    for _ in 0..MAX_HOPS {
        let Some(dir) = p.parent().map(Path::to_path_buf) else {
            break;
        };
        if let Ok(real) = dir.canonicalize() {
            add(real);
        }
        add(dir.clone());
        match std::fs::read_link(&p) {
            Ok(target) => p = dir.join(target),
            Err(_) => break,
        }
    }
    dirs
}

/// The identity of a directory now, to notice it being replaced.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

pub struct ConfigWatch {
    path: PathBuf,
    watcher: RecommendedWatcher,
    /// Directories watched, with the identity each had when armed.
    armed: Vec<(PathBuf, (u64, u64))>,
    /// The file as last loaded.
    loaded: Option<Fingerprint>,
}

impl ConfigWatch {
    /// Watches what `path` depends on; `poke` runs (on the watcher's
    /// thread) for every event in a watched directory.
    pub fn new(path: &Path, poke: impl Fn() + Send + 'static) -> Result<ConfigWatch> {
        // In the directory above the file's, only its own directory matters
        // (it may be /tmp or /etc, where much else happens).
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let own = abs.parent().map(Path::to_path_buf);
        let above = own.as_deref().and_then(Path::parent).map(Path::to_path_buf);
        let relevant = move |p: &PathBuf| {
            p.parent() != above.as_deref()
                || own.as_deref().and_then(Path::file_name) == p.file_name()
        };
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|ev| !ev.kind.is_access() && ev.paths.iter().any(&relevant)) {
                poke();
            }
        })
        .context("creating the file watcher")?;
        let mut w = ConfigWatch {
            path: path.to_path_buf(),
            watcher,
            armed: Vec::new(),
            loaded: None,
        };
        w.rearm();
        if w.armed.is_empty() {
            anyhow::bail!(
                "cannot watch any directory of {} (none exists)",
                path.display()
            );
        }
        Ok(w)
    }

    /// Brings the watches in line with where the path leads now.
    pub fn rearm(&mut self) {
        let want: Vec<(PathBuf, (u64, u64))> = dirs_to_watch(&self.path)
            .into_iter()
            .filter_map(|d| identity(&d).map(|id| (d, id)))
            .collect();
        for gone in self.armed.iter().filter(|a| !want.contains(a)) {
            let _ = self.watcher.unwatch(&gone.0);
        }
        self.armed.retain(|a| want.contains(a));
        for (dir, id) in want {
            if self.armed.iter().any(|a| a.0 == dir && a.1 == id) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.armed.push((dir, id)),
                Err(e) => log::warn!("cannot watch {}: {e}", dir.display()),
            }
        }
    }

    /// Records the file as it is now, just before it is read.
    pub fn loading(&mut self) {
        self.loaded = fingerprint(&self.path);
    }

    /// Whether the file differs from what was last loaded.
    pub fn changed(&self) -> bool {
        fingerprint(&self.path) != self.loaded
    }

    /// The directories watched now.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.armed.iter().map(|a| a.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("katran-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d.canonicalize().unwrap())
    }

    #[test]
    fn a_plain_file_watches_its_directory_and_the_one_above() {
        let t = tmp("plain");
        let f = t.0.join("k.toml");
        std::fs::write(&f, "x").unwrap();
        let dirs = dirs_to_watch(&f);
        assert_eq!(dirs, vec![t.0.parent().unwrap().to_path_buf(), t.0.clone()]);
    }

    #[test]
    fn a_configmap_layout_watches_every_hop() {
        let t = tmp("configmap");
        let v1 = t.0.join("..2026_12_02_v1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("k.toml"), "x").unwrap();
        symlink("..2026_12_02_v1", t.0.join("..data")).unwrap();
        symlink("..data/k.toml", t.0.join("k.toml")).unwrap();
        let dirs = dirs_to_watch(&t.0.join("k.toml"));
        assert!(dirs.contains(&t.0), "{dirs:?}");
        assert!(dirs.contains(&v1), "{dirs:?}");
    }

    #[test]
    fn a_symlink_elsewhere_watches_the_target_directory() {
        let t = tmp("elsewhere");
        std::fs::create_dir_all(t.0.join("etc")).unwrap();
        std::fs::create_dir_all(t.0.join("conf")).unwrap();
        std::fs::write(t.0.join("etc/k.toml"), "x").unwrap();
        symlink(t.0.join("etc/k.toml"), t.0.join("conf/k.toml")).unwrap();
        let dirs = dirs_to_watch(&t.0.join("conf/k.toml"));
        assert!(dirs.contains(&t.0.join("conf")), "{dirs:?}");
        assert!(dirs.contains(&t.0.join("etc")), "{dirs:?}");
        assert!(dirs.contains(&t.0), "{dirs:?}");
    }

    #[test]
    fn a_symlink_loop_ends() {
        let t = tmp("loop");
        symlink("b", t.0.join("a")).unwrap();
        symlink("a", t.0.join("b")).unwrap();
        let dirs = dirs_to_watch(&t.0.join("a"));
        assert!(dirs.contains(&t.0));
        assert!(fingerprint(&t.0.join("a")).is_none());
    }

    #[test]
    fn fingerprints_change_with_content_and_swaps() {
        let t = tmp("fingerprint");
        let f = t.0.join("k.toml");
        std::fs::write(&f, "a").unwrap();
        let first = fingerprint(&f);
        assert!(first.is_some());
        assert_eq!(fingerprint(&f), first);
        std::fs::write(t.0.join("new"), "a").unwrap();
        std::fs::rename(t.0.join("new"), &f).unwrap();
        assert_ne!(fingerprint(&f), first, "a rename over the file");
        std::fs::remove_file(&f).unwrap();
        assert_eq!(fingerprint(&f), None);
    }
}
