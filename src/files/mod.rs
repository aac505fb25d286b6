//! Files katran reads and writes outside bpffs: the configuration file
//! (read without trusting what sits at its path), the daemon's status file
//! (written by the daemon, read by the views) written atomically, and lock
//! files: one daemon per pin directory, waited for with a bound.

pub mod atomic_file;
pub mod config_file;
pub mod daemon_lock;
pub mod flock_wait;
pub mod status_file;
