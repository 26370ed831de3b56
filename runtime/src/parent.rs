//! The omac side of a run: spawns the stage (posix_spawn, so a multi-threaded caller is
//! never forked; a single-threaded one may fork it instead), hands it the plan, forwards
//! signals, relays its report and waits.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::report::{Enforcement, Mode, Outcome};
use crate::sys;
use crate::wire::{Head, Msg, Plan, RunPlan, Task, PLAN_FD, REPORT_FD, STAGE_ARG};
use crate::{Error, RunOptions, FORWARDED_SIGNALS};

/// Spawns `exe __sandbox-stage` with an empty environment, default signal dispositions,
/// an empty signal mask, and `plan_r` / `report_w` as its descriptors 3 and 4.
pub fn spawn_stage(exe: &Path, plan_r: &OwnedFd, report_w: &OwnedFd) -> io::Result<libc::pid_t> {
    let plan_r = sys::dup_high(plan_r)?;
    let report_w = sys::dup_high(report_w)?;
    let path = sys::cpath(exe)?;
    let arg0 = CString::new("omac").map_err(io::Error::other)?;
    let arg1 = sys::cstr(STAGE_ARG)?;
    let argv = [
        arg0.as_ptr() as *mut libc::c_char,
        arg1.as_ptr() as *mut _,
        std::ptr::null_mut(),
    ];
    let envp = [std::ptr::null_mut::<libc::c_char>()];
    // SAFETY: the posix_spawn objects are initialised before use and destroyed after; every
    // pointer passed outlives the call.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut at: libc::posix_spawnattr_t = std::mem::zeroed();
        let r = libc::posix_spawn_file_actions_init(&mut fa);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let r = libc::posix_spawnattr_init(&mut at);
        if r != 0 {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(io::Error::from_raw_os_error(r));
        }
        let mut rc = libc::posix_spawn_file_actions_adddup2(&mut fa, plan_r.as_raw_fd(), PLAN_FD);
        if rc == 0 {
            rc = libc::posix_spawn_file_actions_adddup2(&mut fa, report_w.as_raw_fd(), REPORT_FD);
        }
        let all = {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut s);
            s
        };
        let empty = sys::sigset(&[]);
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigdefault(&mut at, &all);
        }
        if rc == 0 {
            rc = libc::posix_spawnattr_setsigmask(&mut at, &empty);
        }
        if rc == 0 {
            rc = libc::posix_spawnattr_setflags(
                &mut at,
                (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
            );
        }
        let mut pid = 0;
        if rc == 0 {
            rc = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &fa,
                &at,
                argv.as_ptr(),
                envp.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(pid)
    }
}

/// Forks this process into the stage: what [`spawn_stage`] starts, without the exec of the
/// omac binary and its dynamic loading (about a millisecond of a run). The child keeps only
/// descriptors 0-2 and `plan_r` / `report_w` as 3 and 4, gets an empty environment,
/// default signal dispositions and an empty mask, and runs the stage's main. The caller
/// must be single-threaded (checked: otherwise an error, and the caller spawns instead).
pub fn fork_stage(plan_r: &OwnedFd, report_w: &OwnedFd) -> io::Result<libc::pid_t> {
    if !sys::single_threaded() {
        return Err(io::Error::other("a multi-threaded process is not forked"));
    }
    let plan_r = sys::dup_high(plan_r)?;
    let report_w = sys::dup_high(report_w)?;
    let split = crate::cpus::plan();
    match sys::clone_fork(0, None)? {
        sys::Forked::Parent(pid) => {
            if let Some(s) = split {
                s.place(pid);
            }
            Ok(pid)
        }
        sys::Forked::Child => {
            if let Some(s) = split {
                s.adopt();
            }
            // SAFETY: our own descriptors; dup2 clears close-on-exec on the copies.
            let placed = unsafe {
                libc::dup2(plan_r.as_raw_fd(), PLAN_FD) == PLAN_FD
                    && libc::dup2(report_w.as_raw_fd(), REPORT_FD) == REPORT_FD
            };
            if !placed {
                sys::exit_now(7);
            }
            sys::reset_dispositions();
            if sys::set_signal_mask(&sys::sigset(&[])).is_err() {
                sys::exit_now(7);
            }
            // SAFETY: single-threaded (checked before the fork): nothing reads the
            // environment meanwhile.
            unsafe { libc::clearenv() };
            crate::stage::main(true)
        }
    }
}

/// Stages whose run has ended, still to be reaped (see [`wait_for_stages`]).
static ENDED: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());
/// inits this process reaps itself (see [`adopt`]).
static ADOPTED: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());
/// How many threads still relay a stage's reports (see [`Relaying`]).
static RELAYING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A thread relaying a stage's reports, until dropped: [`wait_for_stages`] waits for it,
/// since the stage is known to have ended (and is to be reaped) only once its reports end.
/// A caller may have gone on as soon as the agent's status arrived (`on_exit`).
struct Relaying;

impl Relaying {
    fn start() -> Relaying {
        *RELAYING.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Relaying
    }
}

impl Drop for Relaying {
    fn drop(&mut self) {
        *RELAYING.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        RELAYING.1.notify_all();
    }
}

/// Once the agent has ended, takes over the reaping of `init` from `stage`: this process
/// becomes a child subreaper (so init, orphaned by the stage's exit, becomes its child)
/// and tells the stage (`stage::TAKEOVER`), which then exits without waiting for init's
/// exit, in which the kernel tears the sandbox's namespaces down. That teardown then
/// overlaps the stage's exit, and [`wait_for_stages`] waits for init too, so that nothing
/// of the run outlives this process. Without the subreaper the stage waits as before.
/// Only after the agent's end: a subreaper for the whole session would collect its
/// sidecars' orphans as zombies.
fn adopt(stage: libc::pid_t, init: libc::pid_t) {
    if sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).is_err() {
        return;
    }
    ADOPTED.lock().unwrap_or_else(|p| p.into_inner()).push(init);
    // SAFETY: signalling our own child (still unreaped: this process reaps it later).
    unsafe { libc::kill(stage, crate::stage::TAKEOVER) };
}

/// Waits for the stages whose runs have ended. A stage closes its end of the report pipe
/// once init has said the run ended, then removes what the run left on the host and
/// exits: that overlaps the caller's own wind-down, and the caller calls this before it
/// exits (omac's `main` does), so that nothing of the run outlives it. Threads still
/// relaying a stage's reports are waited for first (their stages are known once they are
/// done); the inits taken over from their stages (see [`adopt`]) are waited for last (one
/// the stage reaped after all is no child: ECHILD).
pub fn wait_for_stages() {
    let mut relaying = RELAYING.0.lock().unwrap_or_else(|p| p.into_inner());
    while *relaying > 0 {
        relaying = RELAYING.1.wait(relaying).unwrap_or_else(|p| p.into_inner());
    }
    drop(relaying);
    for list in [&ENDED, &ADOPTED] {
        let pids = std::mem::take(&mut *list.lock().unwrap_or_else(|p| p.into_inner()));
        for pid in pids {
            let _ = sys::wait_for(pid);
        }
    }
}

/// Runs `plan` and waits for the agent. A single-threaded caller builds the sandbox itself
/// (it is the stage: no extra process, no exec); any other gets a re-executed stage.
pub fn run(plan: RunPlan, mut warnings: Vec<String>, opts: &RunOptions) -> Result<Outcome, Error> {
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let plan = stage_plan(plan, opts);
    // A stage started ahead is used (it may have init cloned already); otherwise a
    // single-threaded caller is its own stage.
    let result =
        if opts.stage_exe.is_none() && !crate::prestart::waiting() && sys::single_threaded() {
            inline(&plan.0, &plan.1, opts, &mut warnings)
        } else {
            send(&plan.0, &plan.1, opts).and_then(|s| s.wait(opts, &mut warnings))
        };
    conclude(result, warnings, plan.0.t0, opts)
}

/// The stage's plan for `run`.
fn stage_plan(run: RunPlan, opts: &RunOptions) -> (Plan, RunPlan) {
    let plan = Plan {
        // SAFETY: getpid cannot fail.
        parent: unsafe { libc::getpid() },
        verbose: opts.verbose,
        t0: opts.t0.unwrap_or_else(crate::wire::now),
        task: Task::Run(Head::of(&run)),
    };
    (plan, run)
}

/// A plan handed to its stage, which builds the sandbox while the caller goes on.
pub struct Sent {
    pid: libc::pid_t,
    report_r: OwnedFd,
    sigfd: Option<OwnedFd>,
    t0: u64,
    warnings: Vec<String>,
    reaped: bool,
}

/// Hands `plan` to a stage and returns at once (see [`Sent::finish`]).
pub fn start(plan: RunPlan, warnings: Vec<String>, opts: &RunOptions) -> Result<Sent, Error> {
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let (plan, run) = stage_plan(plan, opts);
    let mut sent = send(&plan, &run, opts)?;
    sent.warnings = warnings;
    Ok(sent)
}

impl Sent {
    /// Relays the stage's report and waits until the sandbox is gone: the agent's outcome.
    pub fn finish(mut self, opts: &RunOptions) -> Result<Outcome, Error> {
        let mut warnings = std::mem::take(&mut self.warnings);
        let t0 = self.t0;
        let result = self.wait(opts, &mut warnings);
        conclude(result, warnings, t0, opts)
    }

    fn wait(mut self, opts: &RunOptions, warnings: &mut Vec<String>) -> Result<Ran, Error> {
        let _relaying = Relaying::start();
        let pid = self.pid;
        let result = relay(
            &self.report_r,
            self.sigfd.as_ref(),
            &mut |fd| forward(fd.as_raw_fd(), pid),
            Some(pid),
            opts,
            warnings,
        );
        self.reaped = true;
        if let Ok(r @ (_, Some(_), None)) = result {
            // The agent's status is in: the stage finishes on its own (see
            // `wait_for_stages`).
            ENDED.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
            return Ok((r, String::new()));
        }
        let status = sys::wait_for(pid).map_err(Error::Spawn)?;
        result
            .map_err(Error::Spawn)
            .map(|r| (r, describe(status, "the sandbox stage")))
    }
}

impl Drop for Sent {
    /// A sandbox given up before [`Sent::finish`] (its caller failed) is killed: the stage
    /// takes init, and init's pid namespace everything in it, along.
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = sys::wait_for(self.pid);
        }
    }
}

/// The outcome of a run that ended with `result`.
fn conclude(
    result: Result<Ran, Error>,
    warnings: Vec<String>,
    t0: u64,
    opts: &RunOptions,
) -> Result<Outcome, Error> {
    if opts.verbose {
        let ms = crate::wire::now().saturating_sub(t0) as f64 / 1e6;
        tracing::debug!("[{ms:7.3} ms] the sandbox has ended");
    }
    if let Some(c) = &opts.control {
        c.attach(0);
    }
    let ((enforcement, exit, fail), status) = result?;
    if let Some(e) = fail {
        return Err(e);
    }
    match exit {
        Some((code, signal)) => Ok(Outcome {
            exit_code: code,
            signal,
            enforcement,
            warnings,
        }),
        None => Err(Error::Abnormal(status)),
    }
}

/// The sandbox's end as text, for when it ended without reporting the agent's status.
fn describe(status: i32, who: &str) -> String {
    if libc::WIFSIGNALED(status) {
        format!("{who} was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!(
            "{who} exited with code {} without the agent's status",
            libc::WEXITSTATUS(status)
        )
    }
}

type Ran = (Relayed, String);

/// This single-threaded process is the stage: it clones init itself.
fn inline(
    plan: &Plan,
    run: &RunPlan,
    opts: &RunOptions,
    warnings: &mut Vec<String>,
) -> Result<Ran, Error> {
    let Task::Run(head) = &plan.task else {
        return Err(Error::Abnormal("not a run plan".into()));
    };
    let old = sys::signal_mask().map_err(Error::Spawn)?;
    let sigfd =
        crate::stage::block_for_supervision(opts.forward_signals, &[]).map_err(Error::Spawn)?;
    let (report_r, report_w) = sys::pipe().map_err(Error::Spawn)?;
    let rep = crate::wire::Reporter::new(report_w.as_raw_fd(), plan.verbose, plan.t0);
    let launched = crate::stage::launch(head, crate::stage::Body::Ready(run), rep, None);
    // From here only init and the agent write reports: their end of the pipe is the end.
    drop(report_w);
    let result = match launched {
        Err(code) => relay(&report_r, None, &mut |_| {}, None, opts, warnings)
            .map_err(Error::Spawn)
            .map(|r| (r, format!("the sandbox could not start (code {code})"))),
        Ok(l) => {
            if let Some(c) = &opts.control {
                c.attach(l.init);
            }
            let r = relay(
                &report_r,
                Some(&sigfd),
                &mut |fd| {
                    l.on_signals(fd, None);
                },
                None,
                opts,
                warnings,
            );
            let status = l.wait();
            l.finish(None);
            r.map_err(Error::Spawn)
                .map(|r| (r, describe(status, "the sandbox's init")))
        }
    };
    let _ = sys::set_signal_mask(&old);
    result
}

/// Hands the plan to a stage on a pipe: the one started ahead for it (see `prestart`), or
/// the omac binary re-executed now.
fn send(plan: &Plan, run: &RunPlan, opts: &RunOptions) -> Result<Sent, Error> {
    let sigfd = if opts.forward_signals {
        // Blocking here covers a caller that forgot to; other threads must block them too.
        sys::block_signals(FORWARDED_SIGNALS).map_err(Error::Spawn)?;
        Some(sys::signalfd(FORWARDED_SIGNALS).map_err(Error::Spawn)?)
    } else {
        None
    };
    let encoded = |head_sent: bool| {
        let r = if head_sent {
            serde_json::to_vec(run)
        } else {
            crate::wire::encode(plan, Some(run))
        };
        r.map_err(|e| Error::Spawn(io::Error::other(e)))
    };
    // A stage started ahead (see `prestart`) is the same process this would spawn; it has
    // the head of this plan already (or, were it another, is sent away).
    let ready = match (&opts.stage_exe, &plan.task) {
        (None, Task::Run(head)) => crate::prestart::take_for(head, plan.verbose),
        _ => None,
    };
    let (pid, plan_w, report_r, bytes) = match ready {
        Some(p) => {
            let bytes = encoded(p.has_head())?;
            (p.pid, p.plan_w, p.report_r, bytes)
        }
        None => {
            let exe = opts
                .stage_exe
                .clone()
                .unwrap_or_else(|| "/proc/self/exe".into());
            let (report_r, report_w) = sys::pipe().map_err(Error::Spawn)?;
            let (plan_r, plan_w) = sys::pipe().map_err(Error::Spawn)?;
            let pid = spawn_stage(&exe, &plan_r, &report_w).map_err(|e| {
                Error::Spawn(io::Error::new(e.kind(), format!("{}: {e}", exe.display())))
            })?;
            (pid, plan_w, report_r, encoded(false)?)
        }
    };
    if let Some(c) = &opts.control {
        c.attach(pid);
    }
    // A stage that died early closes its end: the report says why, so EPIPE is not fatal.
    let _ = sys::write_all(plan_w.as_raw_fd(), &bytes);
    drop(plan_w);
    Ok(Sent {
        pid,
        report_r,
        sigfd,
        t0: plan.t0,
        warnings: Vec::new(),
        reaped: false,
    })
}

type Relayed = (Enforcement, Option<(i32, Option<i32>)>, Option<Error>);

/// Reads report messages until every writer is gone; `on_signal` handles the signalfd.
/// The agent's status goes to `opts.on_exit` as soon as it arrives; then, with the `stage`
/// (a child of this process) given, init is taken over from it (see [`adopt`]).
fn relay(
    report: &OwnedFd,
    sigfd: Option<&OwnedFd>,
    on_signal: &mut dyn FnMut(&OwnedFd),
    stage: Option<libc::pid_t>,
    opts: &RunOptions,
    warnings: &mut Vec<String>,
) -> io::Result<Relayed> {
    let verbose = opts.verbose;
    let mut init = None;
    let mut enforcement = Enforcement::default();
    let mut exit = None;
    let mut fail = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: report.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd.map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(s) = sigfd {
            if fds[1].revents & libc::POLLIN != 0 {
                on_signal(s);
            }
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            continue;
        }
        let n = sys::read_some(report.as_raw_fd(), &mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Ok(msg) = serde_json::from_slice::<Msg>(&line[..line.len() - 1]) else {
                continue;
            };
            let exited = matches!(msg, Msg::Exit { .. });
            if let Msg::Init { pid } = msg {
                init = Some(pid);
            }
            handle(
                msg,
                &mut enforcement,
                &mut exit,
                &mut fail,
                verbose,
                warnings,
            );
            if exited {
                if let (Some(stage), Some(init)) = (stage, init.take()) {
                    adopt(stage, init);
                }
            }
            if let (true, Some(f), Some((exit_code, signal)), None) =
                (exited, &opts.on_exit, exit, &fail)
            {
                (f.0)(&Outcome {
                    exit_code,
                    signal,
                    enforcement: enforcement.clone(),
                    warnings: warnings.clone(),
                });
            }
        }
    }
    crate::cpus::restore_process();
    Ok((enforcement, exit, fail))
}

/// Forwards pending signals that someone sent (not the terminal's) to the stage.
fn forward(sigfd: RawFd, pid: libc::pid_t) {
    while let Some((sig, code, _)) = sys::read_signal(sigfd) {
        if code != libc::SI_KERNEL {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

fn handle(
    msg: Msg,
    enforcement: &mut Enforcement,
    exit: &mut Option<(i32, Option<i32>)>,
    fail: &mut Option<Error>,
    verbose: bool,
    warnings: &mut Vec<String>,
) {
    match msg {
        Msg::Warn { text } => {
            tracing::warn!("{text}");
            warnings.push(text);
        }
        Msg::Debug { text } => {
            if verbose {
                tracing::debug!("{text}");
            }
        }
        Msg::Fail { step, message, fix } => {
            if fail.is_none() {
                *fail = Some(if step == "user namespace" {
                    Error::Unavailable {
                        layer: "namespaces".into(),
                        message,
                        fix,
                    }
                } else if let Some(layer) = step.strip_prefix("require ") {
                    Error::Unavailable {
                        layer: layer.to_string(),
                        message,
                        fix,
                    }
                } else {
                    Error::Setup { step, message, fix }
                });
            }
        }
        Msg::Layer { name, status } => {
            // The agent's last report before it exec's: the sandbox's start is done.
            if name == "seccomp" {
                crate::cpus::restore_process();
            }
            if verbose {
                tracing::info!("{name}: {:?} ({})", status.level, status.detail);
            }
            enforcement.set(&name, status);
        }
        Msg::Abi { abi } => enforcement.landlock_abi = abi,
        Msg::Fallback { cause } => {
            enforcement.mode = Mode::Fallback;
            tracing::debug!("fallback: {cause}");
        }
        Msg::Exit { code, signal } => *exit = Some((code, signal)),
        Msg::Probe { .. } | Msg::Init { .. } => {}
    }
}
