//! Executes an omac bundle on Linux: user, mount, pid, ipc, uts, net and cgroup namespaces,
//! the bundle's view built over an empty root, an init process as pid 1 (reaper, signal
//! forwarder, loopback bridges), then Landlock, dropped capabilities, no_new_privs and the
//! seccomp filter for the agent.
//!
//! The sandbox is built by a single-threaded process. A multi-threaded caller (the tokio
//! session) gets a fresh one: [`run`] re-executes the omac binary as a hidden stage
//! (`omac __sandbox-stage`, see [`stage_main`]) that reads its plan from an inherited pipe,
//! so a multi-threaded process is never forked without exec. A caller that is verifiably
//! single-threaded (`omac run` of a plain OCI bundle) is its own stage: it enters the user
//! namespace and clones init itself. A caller that knows early that it will run a bundle
//! starts the stage ahead while it is still single-threaded ([`prestart_stage`], a fork,
//! then [`send_head`]): the user namespace, init's clone and the bundle's part of the view
//! then overlap with its own preparation; the omac binary's entry point even forks a
//! [`holder`] that makes the namespaces before its own start is done. [`start`] hands a
//! stage the rest of the plan
//! and returns (the caller starts its servers while the sandbox is built);
//! [`RunOptions::on_exit`] reports the agent's status while the kernel still takes the
//! sandbox down.

#![warn(missing_docs)]

mod agent;
mod ahead;
mod bridge;
mod caps;
mod cgroup;
mod cpus;
mod error;
pub mod fallback;
mod fold;
pub mod holder;
mod init;
mod landlock;
mod life;
mod links;
pub mod mountopts;
mod mounts;
mod netdev;
mod parent;
mod prepare;
mod prestart;
pub mod probe;
pub mod report;
mod resolve;
mod stage;
mod sys;
mod terminal;
pub mod userns;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

pub use error::Error;
pub use parent::wait_for_stages;
pub use prestart::{dismiss as dismiss_stage, prestart as prestart_stage, send_head};
pub use report::{Enforcement, LayerStatus, Level, Mode, Outcome};
pub use wire::STAGE_ARG;

/// Signals omac forwards to the agent when they are sent to it (not when the terminal sends
/// them: the agent, in the terminal's foreground process group, gets those itself).
pub const FORWARDED_SIGNALS: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGWINCH,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How to run a bundle: what the session adds at run time.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra arguments appended to the bundle's argv.
    pub args: Vec<String>,
    /// Host Unix sockets bound into the sandbox's socket directory (`/run/omac`) by name,
    /// for example `("facade.sock", "/run/user/1000/omac/abc/facade.sock")`.
    pub sockets: Vec<(String, PathBuf)>,
    /// Host executables bound read-only (and executable under Landlock) into the sandbox's
    /// `<socket dir>/bin/` by name, for example `("omac", "/usr/local/bin/omac")` for the
    /// `omac connect` that the filtered mode's `GIT_SSH_COMMAND` runs.
    pub binaries: Vec<(String, PathBuf)>,
    /// Published ports: for each port of `omac.json`'s `network.publishPorts` the session
    /// wants reachable, the host path of a Unix socket init listens on (created before the
    /// view is built, so the agent never sees it); each connection made to it is relayed to
    /// `127.0.0.1:PORT` inside the sandbox's network namespace. Ignored without a network
    /// namespace, where the agent's server listens on the host's loopback itself.
    pub publish: Vec<(u16, PathBuf)>,
    /// The host environment the agent's environment is composed from (`omac.json`'s
    /// passthrough rules decide what passes).
    pub host_env: Vec<(String, String)>,
    /// Report each step (as `tracing` debug events).
    pub verbose: bool,
    /// Forward [`FORWARDED_SIGNALS`] sent to this process to the agent. The caller must
    /// have blocked them in every thread (see [`block_forwarded_signals`]).
    pub forward_signals: bool,
    /// Re-execute this binary as the stage, always. `None`: a single-threaded caller builds
    /// the sandbox itself; any other uses the stage started ahead ([`prestart_stage`]) or
    /// re-executes `/proc/self/exe`.
    pub stage_exe: Option<PathBuf>,
    /// A handle to signal the running sandbox from another thread.
    pub control: Option<Control>,
    /// When the run started (`CLOCK_MONOTONIC` ns), for the timings of `verbose`.
    pub t0: Option<u64>,
    /// Called with the outcome as soon as the agent's status is known, while the sandbox
    /// is still being taken down ([`run`] returns once it is gone): a caller with its own
    /// teardown does it meanwhile.
    pub on_exit: Option<OnExit>,
}

/// A callback for [`RunOptions::on_exit`].
#[derive(Clone)]
pub struct OnExit(pub Arc<dyn Fn(&Outcome) + Send + Sync>);

impl std::fmt::Debug for OnExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnExit")
    }
}

impl RunOptions {
    /// Options with the current process's environment as the host environment.
    pub fn from_env() -> RunOptions {
        RunOptions {
            host_env: std::env::vars().collect(),
            ..RunOptions::default()
        }
    }
}

/// A handle on a running sandbox, usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pid: Arc<AtomicI32>,
}

impl Control {
    /// A handle, attached once [`run`] has started the sandbox.
    pub fn new() -> Control {
        Control::default()
    }

    /// Sends `signal` to the sandbox, which forwards it to the agent. False when the
    /// sandbox is not running.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        let pid = self.pid.load(Ordering::SeqCst);
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        pid > 0 && unsafe { libc::kill(pid, signal) } == 0
    }

    pub(crate) fn attach(&self, pid: i32) {
        self.pid.store(pid, Ordering::SeqCst);
    }
}

/// Blocks [`FORWARDED_SIGNALS`] in the calling thread (and the threads it creates later), so
/// that [`run`] with `forward_signals` receives them. Call it first thing in `main`.
pub fn block_forwarded_signals() -> std::io::Result<()> {
    sys::block_signals(FORWARDED_SIGNALS)
}

/// Runs the bundle and waits for the agent: builds the sandbox in a fresh stage process,
/// reports warnings and steps through `tracing`, and returns the agent's exit status and
/// the enforcement achieved.
///
/// Blocking. The stage dies with the thread that calls this (`PR_SET_PDEATHSIG`), so call
/// it from a thread that lives until it returns (from async code: a blocking task).
pub fn run(bundle: &omac_bundle::Loaded, options: &RunOptions) -> Result<Outcome, Error> {
    let (plan, warnings, options) = planned(bundle, options)?;
    parent::run(plan, warnings, &options)
}

/// The bundle checked and planned, and the options with the run's start time.
fn planned(
    bundle: &omac_bundle::Loaded,
    options: &RunOptions,
) -> Result<(wire::RunPlan, Vec<String>, RunOptions), Error> {
    let begun = wire::now();
    let (plan, warnings) = prepare::plan(bundle, options)?;
    let t0 = options.t0.unwrap_or(begun);
    if options.verbose {
        tracing::debug!(
            "[{:7.3} ms] bundle checked and planned",
            wire::now().saturating_sub(t0) as f64 / 1e6
        );
    }
    let options = RunOptions {
        t0: Some(t0),
        ..options.clone()
    };
    Ok((plan, warnings, options))
}

/// Checks and plans the bundle as [`run`] does, hands the plan to a stage (the one started
/// ahead, see [`prestart_stage`], or a fresh one) and returns at once: the sandbox gets
/// built while the caller goes on (it starts the servers the agent will talk to, whose
/// sockets must exist by now). [`Started::finish`] waits for the agent; dropping the
/// handle instead kills the sandbox.
///
/// Call it from a thread that lives until the sandbox is gone: a stage spawned now dies
/// with it (`PR_SET_PDEATHSIG`).
pub fn start(bundle: &omac_bundle::Loaded, options: &RunOptions) -> Result<Started, Error> {
    let (plan, warnings, options) = planned(bundle, options)?;
    let sent = parent::start(plan, warnings, &options)?;
    Ok(Started { sent, options })
}

/// A sandbox [`start`] set going.
pub struct Started {
    sent: parent::Sent,
    options: RunOptions,
}

impl Started {
    /// Relays the sandbox's report and waits until it is gone: the agent's outcome (given
    /// to `on_exit` as soon as it is known). Blocking.
    pub fn finish(self) -> Result<Outcome, Error> {
        self.sent.finish(&self.options)
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started")
    }
}

/// The stage's entry point: the omac binary calls it, before anything else, when its first
/// argument is [`STAGE_ARG`]. Never returns.
pub fn stage_main() -> ! {
    stage::main(false)
}
