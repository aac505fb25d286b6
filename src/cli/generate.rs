//! `katran generate` (hidden, for packaging): the katran(8) man page and the
//! bash, zsh and fish completions, all derived from the clap definitions in
//! `cli` so they cannot drift from `--help`.
//!
//! The man page is clap_mangen's title, name, synopsis and global options,
//! then one subsection per visible command (its synopsis and options, also
//! rendered by clap_mangen), then hand-written sections clap knows nothing
//! of: SIGNALS, EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO. The committed
//! `man/katran.8` is this output; `tests/integration/manpage.rs` keeps it current.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Subcommand, ValueEnum};
use clap_mangen::Man;

use crate::cli::{Cli, DEFAULT_CONFIG, DEFAULT_PIN_DIR};
use crate::files::status_file::DEFAULT_STATUS_FILE;

/// The name completions are registered for.
const BIN: &str = "katran";
/// The date in the page footer: a year, as in katran.toml(5), not the build
/// date, so the page is reproducible (and an empty one would shift the
/// footer fields: clap_mangen drops empty `.TH` arguments).
const MAN_DATE: &str = "2026";

/// What `katran generate` writes.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// Write the man page katran.8 into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on standard output.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The shells completions are generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn clap(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Runs `katran generate …`.
pub fn run(target: Target) -> Result<ExitCode> {
    match target {
        Target::Man { dir } => {
            let path = write_man(&dir)?;
            eprintln!("wrote {}", path.display());
        }
        Target::Completions { shell } => {
            let mut out = io::stdout().lock();
            completions(shell, &mut out);
            out.flush().context("writing the completions")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `katran.8` into `dir`; returns its path.
pub fn write_man(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("katran.8");
    fs::write(&path, man_page()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = without_hidden_commands(Cli::command());
    clap_complete::generate(shell.clap(), &mut cmd, BIN, out);
}

/// `cmd` without its hidden subcommands (clap_complete would offer them:
/// clap has no way to remove a subcommand, so the top level is rebuilt).
fn without_hidden_commands(cmd: clap::Command) -> clap::Command {
    let mut out = clap::Command::new(BIN)
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if cmd.get_version().is_some() {
        out = out.version(crate::version());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

/// The katran(8) page, as roff source.
pub fn man_page() -> String {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("KATRAN")
        .section("8")
        .date(MAN_DATE)
        .manual("System Administration");

    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    man.render_title(&mut out).expect("in memory");
    man.render_name_section(&mut out).expect("in memory");
    man.render_synopsis_section(&mut out).expect("in memory");
    let mut page = String::from_utf8(out).expect("roff is UTF-8");

    page.push_str(&description());

    let mut global = Vec::new();
    man.render_options_section(&mut global).expect("in memory");
    page.push_str(&String::from_utf8(global).expect("roff is UTF-8"));

    page.push_str(".SH COMMANDS\n");
    for sub in visible_subcommands(&cmd) {
        page.push_str(&command_section(sub, ""));
    }

    page.push_str(&signals());
    page.push_str(PLAN);
    page.push_str(METRICS);
    page.push_str(JSON);
    page.push_str(EXIT_STATUS);
    page.push_str(ENVIRONMENT);
    page.push_str(&files());
    page.push_str(SEE_ALSO);
    page
}

/// Subcommands to document: neither hidden nor clap's own `help`.
fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// One `.SS` per command, then one per subcommand of it (`real attach`):
/// clap_mangen's synopsis and options for each, with their `.SH` headings
/// dropped so they nest under COMMANDS.
fn command_section(sub: &clap::Command, parent: &str) -> String {
    let name = format!("{parent}{}", sub.get_name());
    let mut s = format!(".SS \"{name}\"\n");
    let man = Man::new(sub.clone());
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)
        .expect("in memory");
    s.push_str(&without_heading(&synopsis));
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        s.push_str(".PP\n");
        for line in about.to_string().lines() {
            if line.trim().is_empty() {
                s.push_str(".PP\n");
            } else {
                s.push_str(&escape(line));
                s.push('\n');
            }
        }
    }
    let mut options = Vec::new();
    man.render_options_section(&mut options).expect("in memory");
    s.push_str(&without_heading(&options));
    for nested in visible_subcommands(sub) {
        s.push_str(&command_section(nested, &format!("{name} ")));
    }
    s
}

/// Roff text without its `.SH` lines.
fn without_heading(roff: &[u8]) -> String {
    String::from_utf8_lossy(roff)
        .lines()
        .filter(|l| !l.starts_with(".SH"))
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// Escapes plain text for a roff text line.
fn escape(text: &str) -> String {
    let body = text.replace('\\', "\\e").replace('-', "\\-");
    if body.starts_with('.') || body.starts_with('\'') {
        format!("\\&{body}")
    } else {
        body
    }
}

fn description() -> String {
    format!(
        r#".SH DESCRIPTION
.B katran
is a layer\-4 load balancer for Linux.
An XDP program forwards packets addressed to virtual IPs (VIPs) to real
servers over IP\-in\-IP or GUE encapsulation, and the real servers answer
clients directly (direct server return).
Everything it does is declared in one TOML file, by default
.IR {config} ,
described in
.BR katran.toml (5).
.PP
.B katran check
validates the file without privileges;
.B katran apply
makes the live dataplane match it in one atomic step, loading and attaching
the program when it is absent;
.B katran run
does the same and keeps doing it as a daemon.
The program, its maps and its XDP links are pinned under
.IR {pins} ,
so the dataplane keeps forwarding when no
.B katran
process runs, and a later process adopts it without interrupting traffic.
Only
.B katran down
stops forwarding.
.PP
Commands that touch the dataplane need root, or the capabilities
CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; without them they stop before
touching anything and name what is missing.
"#,
        config = escape(DEFAULT_CONFIG),
        pins = escape(DEFAULT_PIN_DIR),
    )
}

fn signals() -> String {
    format!(
        r#".SH SIGNALS
These apply to
.BR "katran run" .
.TP
.B SIGHUP
Reload the configuration file: check it, then apply the difference
atomically.
A file with errors is logged and recorded in
.IR {status} ;
the last good configuration stays in force.
Changes to the file are also picked up without a signal: edits in place,
a new file renamed over it, an edit behind a symlink, a Kubernetes ConfigMap
update (the
.I ..data
symlink swapped), and a replaced configuration directory.
A reload that changes
.B pin_dir
is refused; the daemon keeps its dataplane where it is.
.PP
One daemon runs per pin directory: it holds a lock under
.I /run/katran
for its life, and a second
.B katran run
on the same
.B pin_dir
exits 1 naming the first.
.B katran down
refuses to run under a daemon unless given
.BR \-\-force ;
the daemon then reports its dataplane gone (log, status) and restores it on
the next reload.
.TP
.BR SIGTERM ", " SIGINT
Exit.
The dataplane stays pinned and keeps forwarding, so a restart or an upgrade
drops no traffic; the next
.B katran run
or
.B katran apply
adopts it.
With
.B \-\-down\-on\-exit
the daemon instead detaches from every interface and removes everything
pinned, as
.B katran down
does.
"#,
        status = escape(DEFAULT_STATUS_FILE),
    )
}

const PLAN: &str = r#".SH PLANS
.B katran apply
works in two phases.
It first reads the live maps and checks everything that can fail for a
reason in the file or on the host: every interface (it exists, is Ethernet,
takes XDP in the mode asked, runs no other XDP program), the gateway, the
size of every map.
The result is the plan that
.B \-\-dry\-run
prints; nothing is written until all of it holds.
It then executes exactly that plan: the inactive configuration generation is
written, new interfaces are attached, one 4\-byte map update switches every
packet to the new generation, removed interfaces are detached.
A kernel failure on the way takes back what packets could see.
.PP
Plan lines start with
.B +
(added),
.B \-
(removed),
.B ~
(changed),
.B !
(needs a new dataplane: another build of katran is pinned, or load\-time
sizes, the connection\-table kind or the XDP mode change) or
.B =
(kept for a reason, such as a real a failing health check keeps drained).
.B \-\-json
prints the same plan as one JSON document with a
.B format_version
(see docs/plan.md).
.PP
A new dataplane is loaded beside the running one and filled with the
configuration that runs now; the connection tables are copied in; every
attached interface switches to it atomically
.RB ( bpf_link_update );
then the file's changes are applied to it and the old one is unpinned.
A failure at any step leaves the old dataplane attached and forwarding.
So upgrading katran is installing it (the package restarts the daemon) and
resizing is editing the file; counters restart at zero.
An XDP mode change cannot be atomic: the interface is detached and attached
again.
See docs/replace.md.
"#;

const METRICS: &str = r#".SH METRICS
.B katran run
serves Prometheus metrics where the file's
.B [metrics]
table says (loopback unless it names another address; see
.BR katran.toml (5))
or
.BR \-\-metrics\-address .
Every family has a HELP text and the prefix
.BR katran_ :
.B xdp_verdicts_total{action}
and
.B drops_total{reason}
(frames by verdict and by drop reason), one counter per other dataplane
event (connection table, ICMP, server ids),
.B vip_packets_total{vip}
and
.BR vip_bytes_total{vip} ,
.B real_packets_total{real}
and
.B real_bytes_total{real}
(over all of a real's VIPs),
.B vip_real_packets_total{vip,real}
and
.B vip_real_bytes_total{vip,real}
(when the file sets
.BR vip_real_counters ),
.BR real_weight ,
.B real_effective_weight
and
.B real_healthy
by
.BR {vip,real} ,
.B reloads_total{result}
(ok, failed),
.BR config_generation ,
.BR reload_failures_in_a_row ,
.BR last_applied_timestamp_seconds ,
.B conn_table_entries{table}
and
.B conn_table_capacity{table}
(per\-cpu, shared\-ipv4, shared\-ipv6),
.BR build_info{version,dataplane} ,
.BR dataplane_build ,
.B dataplane_pinned
and
.BR announced{address,table} .
"#;

const JSON: &str = r#".SH JSON
With
.BR \-\-json ,
.BR "apply" ", " "diff" ", " "status" ", " "stats" ", " "explain"
and
.B check
print JSON documents, each with a
.BR format_version ;
their fields and JSON Schemas are in docs/json.md and docs/json/.
.B katran check \-\-json
gives every diagnostic as
.BR "{severity, file, line, column, message, fix}" .
"#;

const EXIT_STATUS: &str = r#".SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
An error: an invalid configuration file (every problem is printed, at its
line), missing privileges, or a failure of the kernel or of an interface
(at the line of the key that asks for it, when one does).
.TP
.B 2
.B katran apply \-\-detailed\-exitcode
(also with
.BR \-\-dry\-run )
or
.B katran diff \-\-detailed\-exitcode
succeeded and there were changes.
.TP
.B 3
.B katran status
found no dataplane pinned (with
.B \-\-json
it exits 0 and says so in the output).
.TP
.B 4
.B katran status
found the daemon in trouble: its last reload failed (the last good
configuration stays in force), its dataplane is not in place, or every real
of a VIP fails its health check.
With
.B \-\-json
it exits 0; the document says the same.
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
.B RUST_LOG
Log level of the messages written to standard error:
.BR error ", " warn ", " info
(the default),
.BR debug " or " trace .
.TP
.B NOTIFY_SOCKET
Set by systemd for
.BR Type=notify
services:
.B katran run
reports readiness, reloads and the last outcome there
(see
.BR sd_notify (3)).
"#;

fn files() -> String {
    format!(
        r#".SH FILES
.TP
.I {config}
The configuration file; see
.BR katran.toml (5).
.TP
.I {pins}
The pinned dataplane: the program, its maps and one XDP link per interface
(the
.B pin_dir
setting); it must be on a bpffs, normally mounted at
.I /sys/fs/bpf
by systemd.
The directory is private (mode 0700); an apply waits at most 30 s for
another holding its lock, naming it.
In a mount namespace without the host's bpffs (such as
.B ip netns exec
gives), katran refuses to pin, since the pins would vanish with the
command; enter only the network namespace instead:
.BR "nsenter \-\-net=/run/netns/NS katran ..." .
.TP
.I {status}
The daemon's last reload and its failures, read by
.BR "katran status" .
"#,
        config = escape(DEFAULT_CONFIG),
        pins = escape(DEFAULT_PIN_DIR),
        status = escape(DEFAULT_STATUS_FILE),
    )
}

const SEE_ALSO: &str = r#".SH SEE ALSO
.BR katran.toml (5),
.BR systemd.service (5),
.BR ip (8),
.BR bpftool (8)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_guards_roff_syntax() {
        assert_eq!(escape("a-b"), "a\\-b");
        assert_eq!(escape(".x"), "\\&.x");
        assert_eq!(escape("c:\\d"), "c:\\ed");
    }

    #[test]
    fn generate_stays_out_of_the_page_and_completions() {
        let page = man_page();
        assert!(page.contains(".SS \"check\""));
        assert!(!page.contains("generate"));
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("check"), "{shell:?}");
            assert!(!text.contains("generate"), "{shell:?}");
        }
    }

    #[test]
    fn completions_offer_the_xdp_modes() {
        let mut out = Vec::new();
        completions(Shell::Bash, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(
                "--mode)\n                    COMPREPLY=($(compgen -W \"native generic auto\""
            ),
            "real attach --mode completes file names"
        );
    }
}
