//! Command-line interface: clap definitions and the commands. Each command
//! validates its input completely before it touches the system.

pub mod drain;
pub mod filediff;
pub mod generate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::apply::read_live;
use crate::apply::reconcile::{commit, prepare, Purpose, Verdicts};
use crate::config::render::{render, render_errors, Colour};
use crate::config::{self, Config, XdpMode};
use crate::files::status_file::DEFAULT_STATUS_FILE;
use crate::kernel::caps;
use crate::kernel::live::{self, Pins};
use crate::plan;

pub const DEFAULT_CONFIG: &str = "/etc/katran.toml";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/katran";

/// Where the dataplane is pinned: the file's `pin_dir` with `-c FILE`, or
/// `--pin-dir`, or the default.
#[derive(Debug, clap::Args)]
pub struct PinPlace {
    /// Take pin_dir from this configuration file.
    #[arg(short = 'c', long = "config", conflicts_with = "pin_dir")]
    config: Option<PathBuf>,
    /// The bpffs directory the dataplane is pinned under
    /// [default: /sys/fs/bpf/katran].
    #[arg(long)]
    pin_dir: Option<PathBuf>,
}

impl PinPlace {
    /// The pin directory; `None` when the file named has errors (printed).
    fn resolve(&self) -> Option<PathBuf> {
        match (&self.config, &self.pin_dir) {
            (Some(file), _) => load(file).map(|c| c.settings.pin_dir),
            (None, Some(dir)) => Some(dir.clone()),
            (None, None) => Some(PathBuf::from(DEFAULT_PIN_DIR)),
        }
    }
}

/// How a plan is printed as text: in brief (changes counted by kind) or
/// line by line; by default in brief above `plan::brief::BRIEF_ABOVE`
/// changes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Listing {
    /// Print the plan in brief: VIP, real, weight, health and ring changes
    /// counted by kind, every other change on its line.
    #[arg(long, conflicts_with = "full")]
    summary: bool,
    /// List every change, however many (plans of more than 200 changes
    /// are printed in brief otherwise).
    #[arg(long)]
    full: bool,
}

impl Listing {
    fn brief(self, p: &plan::Plan) -> bool {
        self.summary || (!self.full && p.changes.len() > plan::brief::BRIEF_ABOVE)
    }
}

/// Exit code of `apply --detailed-exitcode` when there are changes.
const EXIT_CHANGES: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "katran",
    version = crate::version(),
    about = "A layer-4 XDP load balancer driven by one TOML file"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate a configuration file (no root, no kernel access).
    Check {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The configuration file, as a plain argument (takes precedence).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print the diagnostics, a summary and the pinned memory as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the live dataplane match the file, atomically; load and attach it
    /// when absent.
    Apply {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only print what would change, compared with the live maps (or with
        /// an empty state where there are none).
        #[arg(long)]
        dry_run: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 2 when there are changes (0: none, 1: error).
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        listing: Listing,
    },
    /// Print the plan between two files (for reviewing a change).
    Diff {
        /// The file as it is now (e.g. on the main branch).
        old: PathBuf,
        /// The file as proposed.
        new: PathBuf,
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
        /// Exit 2 when the files differ (0: the same, 1: error).
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        listing: Listing,
    },
    /// Run as a daemon: apply the file and keep it applied (file changes,
    /// SIGHUP); SIGTERM leaves the dataplane forwarding.
    Run {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where the daemon reports its reloads for `katran status`.
        #[arg(long, default_value = DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Detach and unpin everything when stopping.
        #[arg(long)]
        down_on_exit: bool,
        /// Serve Prometheus metrics at http://ADDRESS/metrics (loopback only),
        /// instead of where the file's [metrics] says (off when it has none):
        /// OpenMetrics to clients that accept it, the Prometheus text format
        /// otherwise; GET and HEAD.
        #[arg(long)]
        metrics_address: Option<std::net::SocketAddr>,
    },
    /// The live configuration (read back from the maps) and the daemon's state.
    Status {
        #[command(flatten)]
        place: PinPlace,
        /// Where the daemon reports its reloads and health (read by `katran status`).
        #[arg(long, default_value = DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Packet and byte rates: totals, per VIP, per real; connection table,
    /// ICMP, server ids, drops by reason, XDP verdicts.
    Stats {
        #[command(flatten)]
        place: PinPlace,
        /// Seconds between the two readings a rate is taken from.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Keep printing every interval.
        #[arg(long)]
        watch: bool,
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Which real a flow goes to, and why: from the file (no root), or from
    /// the live maps with --live (also shows the connection-table entry).
    Explain {
        /// The client, ADDRESS:PORT ([IPv6]:PORT).
        src: String,
        /// The VIP, ADDRESS:PORT/PROTO.
        vip: String,
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Explain from the live maps (pinned at the file's pin_dir).
        #[arg(long)]
        live: bool,
        /// With --live: the bpffs directory the dataplane is pinned under
        /// instead of the file's.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Print JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// On a real server: decapsulate what the balancer sends (XDP), and
    /// accept VIP traffic locally.
    Real {
        #[command(subcommand)]
        action: RealAction,
    },
    /// Take this balancer out of the fleet: withdraw every announcement
    /// ([announce]), keep forwarding, and wait until no packet reaches a
    /// VIP for 3 s (exit 0) or the timeout passes (exit 1). The node stays
    /// drained, across daemon restarts, until --undo.
    Drain {
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Seconds to wait for the traffic to stop.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// End the drain: announce again.
        #[arg(long)]
        undo: bool,
    },
    /// Detach from every interface and remove everything pinned. Refuses
    /// (removing nothing) a directory not on bpffs or holding entries katran
    /// did not pin.
    Down {
        #[command(flatten)]
        place: PinPlace,
        /// Take it down even while a `katran run` manages it (that daemon
        /// reports the dataplane gone, and its next reload brings it back).
        #[arg(long)]
        force: bool,
    },
    /// Write the man page or shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        target: crate::cli::generate::Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum RealAction {
    /// Attach the decapsulation program (IP-in-IP, IPv6, GUE) to an interface.
    Attach {
        /// The network interface.
        #[arg(short, long)]
        interface: String,
        /// How to attach.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// UDP port of GUE packets to decapsulate.
        #[arg(long, default_value_t = 9886)]
        gue_port: u16,
        /// The bpffs directory the dataplane is pinned under.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Detach it.
    Detach {
        /// The network interface.
        #[arg(short, long)]
        interface: String,
        /// The bpffs directory the dataplane is pinned under.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// What it decapsulated, passed and dropped.
    Stats {
        /// The network interface.
        #[arg(short, long)]
        interface: String,
        /// The bpffs directory the dataplane is pinned under.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Put a VIP on `lo` and turn reverse-path filtering off, so the real
    /// accepts the decapsulated packets and answers the client directly.
    Setup {
        #[arg(long)]
        vip: std::net::IpAddr,
    },
}

/// `real attach --mode`: a value enum, so shells complete the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// In the driver; fails where the driver lacks XDP.
    Native,
    /// In the generic (skb) path: works everywhere, slower.
    Generic,
    /// Native where the driver supports it, generic otherwise.
    Auto,
}

impl From<ModeArg> for XdpMode {
    fn from(m: ModeArg) -> XdpMode {
        match m {
            ModeArg::Native => XdpMode::Native,
            ModeArg::Generic => XdpMode::Generic,
            ModeArg::Auto => XdpMode::Auto,
        }
    }
}

fn real_cmd(action: RealAction) -> Result<ExitCode> {
    match action {
        RealAction::Attach {
            interface,
            mode,
            gue_port,
            pin_dir,
        } => {
            caps::require("katran real attach", caps::DATAPLANE)?;
            let how = crate::kernel::real::attach(&interface, mode.into(), &pin_dir, gue_port)?;
            println!("decapsulating on {interface} ({how} XDP)");
        }
        RealAction::Detach { interface, pin_dir } => {
            caps::require("katran real detach", caps::DATAPLANE)?;
            crate::kernel::real::detach(&interface, &pin_dir)?;
            println!("detached from {interface}");
        }
        RealAction::Stats { interface, pin_dir } => {
            println!("{}", crate::kernel::real::stats(&interface, &pin_dir)?)
        }
        RealAction::Setup { vip } => {
            crate::kernel::real::setup(vip)?;
            println!("{vip} is on lo; rp_filter is off");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { config, file, json } => {
            let path = file.as_deref().unwrap_or(&config);
            if json {
                check_json(path)
            } else {
                Ok(check(path))
            }
        }
        Command::Apply {
            config,
            dry_run,
            json,
            detailed_exitcode,
            listing,
        } => {
            let Some((cfg, text)) = load_with_text(&config) else {
                return Ok(ExitCode::FAILURE);
            };
            let changed = if dry_run {
                dry_run_cmd(cfg, json, listing)
            } else {
                caps::require("katran apply", caps::DATAPLANE)?;
                apply_cmd(cfg, json, listing)
            };
            let changed = match changed {
                Ok(changed) => changed,
                Err(e) => return apply_failed(e, &text),
            };
            Ok(if detailed_exitcode && changed {
                ExitCode::from(EXIT_CHANGES)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Diff {
            old,
            new,
            json,
            detailed_exitcode,
            listing,
        } => {
            let (Some(a), Some(b)) = (load(&old), load(&new)) else {
                return Ok(ExitCode::FAILURE);
            };
            let p = crate::cli::filediff::plan(&a, &b)?;
            print_plan(&p, json, listing);
            Ok(if detailed_exitcode && !p.is_empty() {
                ExitCode::from(EXIT_CHANGES)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run {
            config,
            status_file,
            down_on_exit,
            metrics_address,
        } => {
            caps::require("katran run", caps::DATAPLANE)?;
            crate::daemon::run(crate::daemon::Options {
                config,
                status_file,
                down_on_exit,
                metrics_address,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            place,
            status_file,
            json,
        } => match place.resolve() {
            Some(pin_dir) => crate::views::status::show(&pin_dir, &status_file, json),
            None => Ok(ExitCode::FAILURE),
        },
        Command::Stats {
            place,
            interval,
            watch,
            json,
        } => {
            let Some(pin_dir) = place.resolve() else {
                return Ok(ExitCode::FAILURE);
            };
            crate::views::rates::run(&pin_dir, interval, watch, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            src,
            vip,
            config,
            live,
            pin_dir,
            json,
        } => {
            let live_pins = match (live, pin_dir) {
                (false, _) => None,
                (true, Some(dir)) => Some(dir),
                (true, None) => match load(&config) {
                    Some(cfg) => Some(cfg.settings.pin_dir),
                    None => return Ok(ExitCode::FAILURE),
                },
            };
            explain_cmd(&src, &vip, &config, live_pins.as_deref(), json)
        }
        Command::Real { action } => real_cmd(action),
        Command::Drain {
            config,
            timeout,
            undo,
        } => {
            let Some(cfg) = load(&config) else {
                return Ok(ExitCode::FAILURE);
            };
            caps::require("katran drain", caps::DATAPLANE)?;
            if undo {
                crate::cli::drain::undo(&cfg)
            } else {
                crate::cli::drain::drain(&cfg, std::time::Duration::from_secs(timeout))
            }
        }
        Command::Down { place, force } => {
            caps::require("katran down", caps::DATAPLANE)?;
            let Some(pin_dir) = place.resolve() else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(daemon) = crate::files::daemon_lock::holder(&pin_dir)? {
                if !force {
                    anyhow::bail!(
                        "a daemon ({daemon}) manages the dataplane at {}: stop it first \
                         (systemctl stop katran), or pass --force (its next reload brings \
                         the dataplane back)",
                        pin_dir.display()
                    );
                }
                eprintln!("taking the dataplane down under a running daemon ({daemon})");
            }
            let pins = Pins::new(&pin_dir);
            if !pin_dir.exists() {
                println!("nothing pinned at {}", pin_dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            // only a pin directory katran made, on bpffs, is removed
            crate::kernel::bpf::bpffs::check_removable(&pin_dir)?;
            let attached = pins.attached();
            live::down(&pins)?;
            println!(
                "detached from [{}] and removed {}",
                attached.join(", "),
                pin_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { target } => crate::cli::generate::run(target),
    }
}

/// Loads a file, printing every problem; `None` when it is unusable.
fn load(path: &Path) -> Option<Config> {
    load_with_text(path).map(|(cfg, _)| cfg)
}

/// [`load`], and the text, to place problems found when applying it.
fn load_with_text(path: &Path) -> Option<(Config, config::FileText)> {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{}\n", render(w, Colour::for_stderr()));
            }
            Some((loaded.config, loaded.text))
        }
        Err(errors) => {
            let file = path.display().to_string();
            eprintln!("{}", render_errors(&errors.0, &file, Colour::for_stderr()));
            None
        }
    }
}

/// An apply that failed: shown at the key of the file it comes from, like
/// the file's own problems, when it comes from one; returned as it is
/// otherwise.
fn apply_failed(e: anyhow::Error, text: &config::FileText) -> Result<ExitCode> {
    match crate::apply::errors::place(&e, text) {
        Some(d) => {
            eprintln!("{}", render(&d, Colour::for_stderr()));
            Ok(ExitCode::FAILURE)
        }
        None => Err(e),
    }
}

/// Distinct real addresses of a configuration.
fn distinct_reals(cfg: &Config) -> usize {
    cfg.state
        .vips
        .iter()
        .flat_map(|v| v.reals.iter().map(|r| r.addr))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// The memory the file pins on this machine.
fn memory_of(cfg: &Config) -> crate::views::memory::Memory {
    let cpus = libbpf_rs::num_possible_cpus().map_or(1, |n| n as u32);
    crate::views::memory::of(&live::load_options(&cfg.settings), cpus)
}

fn check(path: &Path) -> ExitCode {
    let Some((cfg, text)) = load_with_text(path) else {
        return ExitCode::FAILURE;
    };
    println!(
        "{}: ok ({} VIPs, {} reals)",
        path.display(),
        cfg.state.vips.len(),
        distinct_reals(&cfg)
    );
    let m = memory_of(&cfg);
    println!("{}: {}", path.display(), m.line());
    if m.total > crate::views::memory::WARN_ABOVE {
        let w = text.warning(
            config::Key::MaxVips,
            format!(
                "the dataplane would pin {} of kernel memory (more than {})",
                crate::views::memory::human(m.total),
                crate::views::memory::human(crate::views::memory::WARN_ABOVE)
            ),
            "lower max_vips, ring_size or conn_table_size if that is not meant".into(),
        );
        eprintln!("{}", render(&w, Colour::for_stderr()));
    }
    ExitCode::SUCCESS
}

/// `katran check --json`: exits as `check` does (1 when the file has errors).
fn check_json(path: &Path) -> Result<ExitCode> {
    use crate::views::json::check::{Check, DiagnosticDoc, Summary};
    let doc = match config::load(path) {
        Ok(loaded) => Check {
            format_version: crate::views::json::FORMAT_VERSION,
            file: path.display().to_string(),
            ok: true,
            errors: Vec::new(),
            warnings: loaded.warnings.iter().map(DiagnosticDoc::from).collect(),
            summary: Some(Summary {
                vips: loaded.config.state.vips.len(),
                reals: distinct_reals(&loaded.config),
            }),
            memory: Some(memory_of(&loaded.config)),
        },
        Err(errors) => Check {
            format_version: crate::views::json::FORMAT_VERSION,
            file: path.display().to_string(),
            ok: false,
            errors: errors.iter().map(DiagnosticDoc::from).collect(),
            warnings: Vec::new(),
            summary: None,
            memory: None,
        },
    };
    crate::views::json::print(&doc)?;
    Ok(if doc.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(p: &plan::Plan, json: bool, listing: Listing) {
    if json {
        println!("{}", p.to_json());
    } else if listing.brief(p) {
        print!("{}", p.brief());
    } else {
        print!("{p}");
    }
}

/// Prints the plan against the live maps; returns whether anything changes.
fn dry_run_cmd(cfg: Config, json: bool, listing: Listing) -> Result<bool> {
    let pin_dir = cfg.settings.pin_dir.clone();
    let p = prepare(cfg, Verdicts::KeepLive, Purpose::DryRun)?;
    if p.plan.from_empty {
        eprintln!(
            "no live configuration at {}: planning against an empty state",
            pin_dir.display()
        );
    }
    print_plan(&p.plan, json, listing);
    Ok(!p.plan.is_empty())
}

/// Applies the file; returns whether anything changed.
fn apply_cmd(cfg: Config, json: bool, listing: Listing) -> Result<bool> {
    let pin_dir = cfg.settings.pin_dir.clone();
    if let Ok(Some(daemon)) = crate::files::daemon_lock::holder(&pin_dir) {
        eprintln!(
            "note: a daemon ({daemon}) manages this dataplane; its next reload applies its own file again"
        );
    }
    let prepared = prepare(cfg, Verdicts::KeepLive, Purpose::Apply)?;
    let out = commit(prepared)?;
    if let Some(r) = &out.replaced {
        eprintln!("{}", r.summary());
    }
    if out.loaded {
        eprintln!(
            "loaded the dataplane and pinned it at {}",
            pin_dir.display()
        );
    }
    if let Some(r) = &out.report {
        eprintln!(
            "applied: generation {} live, {} map writes, {} ring slots written",
            r.gen, r.map_writes, r.ring_slots
        );
    }
    for (iface, how) in &out.attached {
        eprintln!("attached to {iface} ({how} XDP)");
    }
    for iface in &out.detached {
        eprintln!("detached from {iface} (no longer in the file)");
    }
    print_plan(&out.plan, json, listing);
    Ok(!out.plan.is_empty())
}

fn explain_cmd(
    src: &str,
    vip: &str,
    config: &Path,
    live_pins: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let flow = crate::explain::parse_flow(src, vip)?;
    let (state, ring_size, conn) = match live_pins {
        None => {
            let Some(cfg) = load(config) else {
                return Ok(ExitCode::FAILURE);
            };
            (cfg.state, cfg.settings.ring_size, None)
        }
        Some(dir) => {
            let Some(store) = live::open(&Pins::new(dir))? else {
                anyhow::bail!("no dataplane pinned at {}", dir.display());
            };
            let state = read_live(&store)?.context("nothing applied yet")?;
            let ring_size = crate::store::MapStore::limits(&store).ring_size;
            let conn = conn_entry_of(&store, &state, &flow)?;
            (state, ring_size, conn)
        }
    };
    let e = crate::explain::explain(&state, ring_size, flow);
    if json {
        crate::views::json::print(&crate::views::json::explain::Explain::new(
            &e,
            live_pins.is_some(),
            conn,
        ))?;
    } else {
        print!("{e}");
        if live_pins.is_some() {
            match conn {
                Some(real) => println!("connection table: this flow is pinned to {real}"),
                None => println!("connection table: no entry (the next packet is hashed)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The live connection-table entry of a flow, keyed as the dataplane keys it.
fn conn_entry_of(
    store: &crate::kernel::bpf::kernel_store::KernelStore,
    state: &crate::model::State,
    flow: &crate::explain::Flow,
) -> Result<Option<std::net::IpAddr>> {
    use crate::kernel::bpf::abi::{addr_words, types};
    let Some(m) = crate::explain::find_vip(state, flow) else {
        return Ok(None);
    };
    let f = m.table_flow(flow);
    let key = types::flow_key {
        src: addr_words(f.src),
        dst: addr_words(f.dst),
        sport: f.sport.to_be(),
        dport: f.dport.to_be(),
        proto: f.proto.number(),
        ..Default::default()
    };
    let reals = crate::store::MapStore::reals(store)?;
    Ok(store
        .conn_entry(&key)?
        .and_then(|idx| reals.get(&idx).map(|r| r.addr)))
}
