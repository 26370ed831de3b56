//! The stage: the omac binary re-executed (`omac __sandbox-stage`), single-threaded, with
//! an empty environment (or forked from omac ahead of its plan). It reads its plan, enters
//! a user namespace (or, when the bundle allows, falls back to Landlock and seccomp on the
//! host's view), places the sandbox in a cgroup, clones init into the new namespaces,
//! forwards signals to it, and exits with the agent's status once init says the run ended.
//! It outlives omac only to take the sandbox down and remove what the run left on the host
//! (see `PARENT_GONE`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::ahead::{self, Ahead};
use crate::cgroup::{self, Placement};
use crate::fallback;
use crate::mounts;
use crate::report::{LayerStatus, Level};
use crate::sys::{self, Forked};
use crate::terminal;
use crate::userns;
use crate::wire::{Head, Msg, Plan, Reporter, RunPlan, Task, View, PLAN_FD, REPORT_FD};
use crate::FORWARDED_SIGNALS;

/// What init and the agent need beyond the plan.
pub struct Ctx {
    /// Where messages go.
    pub rep: Reporter,
    /// omac runs attached to its controlling terminal (the agent stays in its group).
    pub attached: bool,
    /// init is pid 1 of a new pid namespace.
    pub pidns: bool,
    /// The sandbox has its own network namespace.
    pub netns: bool,
    /// Its loopback device is up already: the holder brought it up when it made the
    /// namespace (see `holder`).
    pub loopback_up: bool,
    /// The fallback's private temporary directory (None: namespaced run).
    pub private_tmp: Option<PathBuf>,
    /// init's end of the life channel (see `life`).
    pub life: Option<OwnedFd>,
    /// init enters a new cgroup namespace itself, after placement.
    pub cgroupns_late: bool,
    /// Bridge ports moved in the fallback (the bundle's was taken on the host): from, to.
    pub moved_ports: Vec<(u16, u16)>,
}

/// The stage's entry point. A stage forked `ahead` of its plan clones init into the usual
/// namespaces while it waits for the plan (see `ahead`).
pub fn main(ahead: bool) -> ! {
    sys::name_thread(c"omac-stage");
    let code = stage(ahead);
    sys::exit_now(code)
}

fn stage(ahead: bool) -> i32 {
    let rep = Reporter::new(REPORT_FD, false, 0);
    if sys::set_cloexec(PLAN_FD, true).is_err() || sys::set_cloexec(REPORT_FD, true).is_err() {
        eprintln!("omac: the sandbox stage is started by omac run, not by hand");
        return 2;
    }
    // Nothing the omac process had open reaches the sandbox (the holder's pipes, when
    // there is one, serve the clone ahead and are closed with it).
    let holder = if ahead { crate::holder::take() } else { None };
    let mut keep = vec![PLAN_FD, REPORT_FD];
    keep.extend(holder.iter().flat_map(|h| h.fds()));
    sys::close_all_except(&keep);
    // Killed and reaped, when dropped unclaimed, on every way out of this function.
    let ahead = if ahead { Ahead::clone(holder) } else { None };
    // The first line; a run's plan follows (see `Body`).
    let (line, rest) = match sys::read_line(PLAN_FD) {
        Ok(b) => b,
        Err(e) => {
            rep.fail("read the plan", e.to_string(), "report this as a bug");
            return 7;
        }
    };
    if line.is_empty() {
        // The omac process died, or gave up on the run, before it sent anything.
        return 1;
    }
    let plan: Plan = match serde_json::from_slice(&line) {
        Ok(p) => p,
        Err(e) => {
            rep.fail(
                "read the plan",
                e.to_string(),
                "the omac binary changed during the run; retry",
            );
            return 7;
        }
    };
    // The stage outlives omac only to take the sandbox down and clean up after it.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, PARENT_GONE as libc::c_ulong, 0);
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != plan.parent {
        return 1;
    }
    let rep = Reporter::new(REPORT_FD, plan.verbose, plan.t0);
    rep.debug(|| "stage started".to_string());
    match plan.task {
        Task::Probe => {
            drop(ahead);
            // SAFETY: the plan descriptor is ours.
            unsafe { libc::close(PLAN_FD) };
            crate::probe::stage(&rep)
        }
        Task::Run(head) => run_plan(
            plan.parent,
            &head,
            Body::Pipe {
                fd: PLAN_FD,
                buffered: rest,
            },
            rep,
            ahead.map(|a| (a, line)),
        ),
    }
}

/// The rest of a run's plan: in memory, or still on the stage's plan descriptor (init
/// reads it there, once it sits in its namespaces).
pub enum Body<'a> {
    /// The plan, at hand.
    Ready(&'a RunPlan),
    /// The plan, read from the descriptor (the stage's fallback needs it).
    Owned(Box<RunPlan>),
    /// The plan still to be read from `fd`, after the bytes already `buffered`.
    Pipe {
        /// The descriptor.
        fd: RawFd,
        /// What was read past the first line.
        buffered: Vec<u8>,
    },
}

impl Body<'_> {
    /// The plan, reading it if it is still on the descriptor (which is then closed).
    /// `Ok(None)`: the descriptor closed without a plan (omac gave up on the run).
    fn read(self) -> Result<Option<Box<RunPlan>>, String> {
        match self {
            Body::Ready(p) => Ok(Some(Box::new(p.clone()))),
            Body::Owned(p) => Ok(Some(p)),
            Body::Pipe { fd, mut buffered } => {
                let r = sys::read_to_end(fd);
                // SAFETY: the plan descriptor is ours and read to its end.
                unsafe { libc::close(fd) };
                buffered.extend(r.map_err(|e| e.to_string())?);
                if buffered.is_empty() {
                    return Ok(None);
                }
                serde_json::from_slice(&buffered)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// A body read in full (for the stage's own use), reporting failures.
    fn materialize(self, rep: &Reporter) -> Result<Body<'static>, i32> {
        match self.read() {
            Ok(Some(p)) => Ok(Body::Owned(p)),
            Ok(None) => Err(1),
            Err(e) => {
                rep.fail(
                    "read the plan",
                    e,
                    "the omac binary changed during the run; retry",
                );
                Err(7)
            }
        }
    }

    fn plan(&self) -> Option<&RunPlan> {
        match self {
            Body::Ready(p) => Some(p),
            Body::Owned(p) => Some(p),
            Body::Pipe { .. } => None,
        }
    }
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

/// The signal the stage gets when omac dies (its parent-death signal): it then lets init
/// go (init kills everything the agent started), waits until the sandbox is gone and
/// cleans up (mount points created on the host, the cgroup, the fallback's temporary
/// directory), which omac can no longer do.
const PARENT_GONE: libc::c_int = libc::SIGPWR;

/// The signal omac sends the stage once the agent has ended, when it has made itself a
/// subreaper to reap init itself (see `parent::adopt`): the stage then need not wait for
/// init's exit, in which the kernel tears the sandbox's namespaces down. init, reparented to
/// omac when the stage exits, is still waited for before omac exits, so nothing of the run
/// outlives omac, and the stage's own exit overlaps that teardown instead of following it.
/// Ignored by default (SIGURG), so a stage that has not blocked it is not harmed.
pub(crate) const TAKEOVER: libc::c_int = libc::SIGURG;

/// The stage's whole job: launch init, forward signals to it until the run ends, clean up.
fn run_plan(
    parent: libc::pid_t,
    head: &Head,
    body: Body,
    rep: Reporter,
    ahead: Option<(Ahead, Vec<u8>)>,
) -> i32 {
    let sigfd = match block_for_supervision(true, &[PARENT_GONE, TAKEOVER]) {
        Ok(fd) => fd,
        Err(e) => {
            rep.fail("signals", e.to_string(), "report this as a bug");
            return 7;
        }
    };
    let launched = match launch(head, body, rep, ahead) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // init is on its way; the stage only waits from here. omac learns init's pid, to take
    // init over at the end (see `TAKEOVER`).
    rep.send(&Msg::Init { pid: launched.init });
    crate::cpus::restore_self();
    // Without a cgroup to remove, the run ends when init says so (every other process of
    // the sandbox reaped), not when init has exited: see `life`.
    let early = launched.placement.is_none();
    let mut listening = true;
    let code = loop {
        let mut fds = [
            libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if listening { launched.life_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let ended = launched.hear();
            if let (true, Some(code)) = (early, ended) {
                break code;
            }
            // init closed its end (it is exiting): only its SIGCHLD is left to wait for.
            listening = fds[1].revents & libc::POLLHUP == 0;
        }
        if let Some(code) = launched.on_signals(&sigfd, Some(parent)) {
            break code;
        }
    };
    // The report pipe ends here for omac, which then winds down while the stage cleans up
    // (it waits for the stage before it exits).
    // SAFETY: the stage's report descriptor; nothing reports after this.
    unsafe { libc::close(REPORT_FD) };
    launched.finish(Some((&sigfd, parent)));
    code
}

/// Blocks the forwarded signals, SIGCHLD and `also` (init inherits the mask) and returns a
/// signalfd for them.
pub fn block_for_supervision(forward: bool, also: &[libc::c_int]) -> io::Result<OwnedFd> {
    let mut signals = supervised(forward);
    signals.extend_from_slice(also);
    sys::block_signals(&signals)?;
    sys::signalfd(&signals)
}

/// The signals [`block_for_supervision`] blocks.
pub(crate) fn supervised(forward: bool) -> Vec<libc::c_int> {
    let mut signals = if forward {
        FORWARDED_SIGNALS.to_vec()
    } else {
        Vec::new()
    };
    signals.push(libc::SIGCHLD);
    signals
}

/// A started sandbox: init's pid and what to clean up once it is gone.
pub struct Launched {
    /// init's pid (in the caller's pid namespace).
    pub init: libc::pid_t,
    /// init's status once reaped.
    status: std::cell::Cell<Option<i32>>,
    /// The stage's end of the life channel, until init is let go (see `wait`).
    life: std::cell::RefCell<Option<OwnedFd>>,
    /// What init said on it.
    heard: std::cell::RefCell<crate::life::Heard>,
    /// omac reaps init itself (see [`TAKEOVER`]).
    taken: std::cell::Cell<bool>,
    placement: Option<Placement>,
    private_tmp: Option<PathBuf>,
}

impl Launched {
    fn new(
        init: libc::pid_t,
        life: OwnedFd,
        placement: Option<Placement>,
        private_tmp: Option<PathBuf>,
    ) -> Launched {
        Launched {
            init,
            status: std::cell::Cell::new(None),
            life: std::cell::RefCell::new(Some(life)),
            heard: Default::default(),
            taken: std::cell::Cell::new(false),
            placement,
            private_tmp,
        }
    }

    /// Reads what init has said; returns the run's code once init has said it ended.
    fn hear(&self) -> Option<i32> {
        let mut h = self.heard.borrow_mut();
        if let Some(life) = self.life.borrow().as_ref() {
            h.take_from(life);
        }
        h.ended
    }

    /// The stage's end of the life channel (-1 once closed).
    fn life_fd(&self) -> RawFd {
        self.life.borrow().as_ref().map_or(-1, |l| l.as_raw_fd())
    }

    /// Lets init go: once it has said the run ended it waits for this, so that its exit
    /// (the namespaces' teardown) does not compete with the stage's last steps.
    fn let_go(&self) {
        self.hear();
        self.life.borrow_mut().take();
    }

    /// Handles pending signals: forwards those someone sent, reaps init. Returns init's exit
    /// code (the agent's, or 128+signal) once it has exited. With the stage's `parent`
    /// given, that parent's death (omac was killed) kills init and ends the run.
    pub fn on_signals(&self, sigfd: &OwnedFd, parent: Option<libc::pid_t>) -> Option<i32> {
        while let Some((sig, code, sender)) = sys::read_signal(sigfd.as_raw_fd()) {
            // SAFETY: getppid cannot fail.
            if sig == PARENT_GONE && parent.is_some_and(|p| unsafe { libc::getppid() } != p) {
                // init sees its supervisor gone and kills everything it started (without
                // a pid namespace only init knows them all); `finish` waits for it.
                self.let_go();
                return Some(128 + libc::SIGKILL);
            }
            if sig == TAKEOVER {
                // Only omac's counts; anyone else's is ignored, as SIGURG is by default.
                if parent.is_some_and(|p| u32::try_from(p) == Ok(sender)) {
                    self.taken.set(true);
                }
            } else if sig == libc::SIGCHLD {
                let mut status = 0;
                // SAFETY: reaping our own child.
                if unsafe { libc::waitpid(self.init, &mut status, libc::WNOHANG) } == self.init {
                    self.status.set(Some(if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        libc::WEXITSTATUS(status)
                    }));
                }
            } else if code != libc::SI_KERNEL {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(self.init, sig) };
            }
        }
        self.status.get()
    }

    /// Waits until init is reaped or omac, still alive, has taken it over.
    fn wait_unless_taken(&self, sigfd: &OwnedFd, parent: libc::pid_t) {
        loop {
            if self.status.get().is_some() {
                return;
            }
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } != parent {
                // omac is gone: nobody else will reap init.
                self.wait();
                return;
            }
            if self.taken.get() {
                return;
            }
            let mut fds = [libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
            self.on_signals(sigfd, Some(parent));
        }
    }

    /// Waits for init (if not yet reaped) and returns its raw wait status.
    pub fn wait(&self) -> i32 {
        if let Some(code) = self.status.get() {
            return if code > 128 { code - 128 } else { code << 8 };
        }
        self.let_go();
        let mut status = 0;
        loop {
            // SAFETY: reaping our own child.
            let r = unsafe { libc::waitpid(self.init, &mut status, 0) };
            if r == self.init
                || (r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
            {
                return status;
            }
        }
    }

    /// Removes what the run left on the host: the mount points init created, the run's
    /// cgroup, the fallback's temporary directory. Waits for init first unless it has said
    /// the run ended (then only its own exit is left, which leaves nothing behind), and
    /// after: nothing of the run outlives the stage (and omac waits for the stage), unless
    /// omac takes init over (see [`TAKEOVER`]; only told on `signals`, the stage's signalfd
    /// and omac's pid, and never with a cgroup to remove, which must wait for init's exit).
    pub fn finish(self, signals: Option<(&OwnedFd, libc::pid_t)>) {
        let ended = self.hear().is_some();
        if !ended || self.placement.is_some() {
            self.wait();
        }
        crate::mounts::remove_created(self.heard.borrow().created.iter().map(String::as_str));
        self.let_go();
        if let Some(t) = &self.private_tmp {
            let _ = std::fs::remove_dir_all(t);
        }
        match signals {
            Some((fd, parent)) if self.placement.is_none() => self.wait_unless_taken(fd, parent),
            _ => {
                self.wait();
            }
        }
        if let Some(p) = self.placement {
            p.remove();
        }
    }
}

/// Everything up to a running init: the cgroup, the user namespace (or the fallback),
/// init cloned into the new namespaces. The caller must be single-threaded and must have
/// called [`block_for_supervision`]. Only `head` is needed up to the clone (the fallback
/// reads `body` first); init gets `body`. init cloned `ahead` is taken when it suits `head`
/// (and killed otherwise). On failure the report says why; the exit code is returned.
pub fn launch(
    head: &Head,
    body: Body,
    rep: Reporter,
    ahead: Option<(Ahead, Vec<u8>)>,
) -> Result<Launched, i32> {
    // SAFETY: getpid cannot fail.
    let tag = unsafe { libc::getpid() }.to_string();
    let (placement, cg_status) = match cgroup::setup(head.resources.as_ref(), &tag) {
        Ok(p) => p,
        Err(cause) => {
            if has(&head.require, "cgroups") {
                rep.fail("require cgroups", cause.message, cause.fix);
                return Err(7);
            }
            rep.warn(format!(
                "memory, pids and cpu limits are NOT enforced: {}",
                cause.message
            ));
            (None, LayerStatus::none(cause.message))
        }
    };
    rep.layer("cgroups", cg_status);
    let body = match ahead {
        Some((init, line))
            if placement.is_none() && namespace_flags(head, false).0 == ahead::FLAGS =>
        {
            match claim(init, head, &line, body, &rep) {
                Ok(launched) => return Ok(launched),
                Err(body) => body,
            }
        }
        // Dropped: killed.
        _ => body,
    };
    let (ctx, flags, body) = match userns::enter(&head.uid_map, &head.gid_map, head.allow_setgroups)
    {
        Ok(()) => {
            rep.debug(|| "user namespace entered".to_string());
            let (ctx, flags) = namespaced(head, rep, placement.is_some());
            (ctx, flags, body)
        }
        Err(cause) => {
            if has(&head.require, "namespaces") {
                rep.fail("user namespace", cause.message, cause.fix);
                return Err(7);
            }
            let body = match body.materialize(&rep) {
                Ok(b) => b,
                Err(code) => {
                    if let Some(p) = placement {
                        p.remove();
                    }
                    return Err(code);
                }
            };
            let Some(plan) = body.plan() else {
                return Err(7);
            };
            (fallback_ctx(plan, rep, cause)?, 0, body)
        }
    };
    let private_tmp = ctx.private_tmp.clone();
    // In the fallback there is no view to build: Landlock restricts the host's.
    let view = private_tmp.is_none().then_some(&head.view);
    match clone_init(body, view, ctx, flags, placement.as_ref()) {
        Ok((init, life)) => Ok(Launched::new(init, life, placement, private_tmp)),
        Err(code) => {
            if let Some(p) = placement {
                p.remove();
            }
            if let Some(t) = &private_tmp {
                let _ = std::fs::remove_dir_all(t);
            }
            Err(code)
        }
    }
}

/// The clone flags for `head`'s namespaces (the cgroup namespace is entered by init itself
/// once it sits in its cgroup, when `placed`) and their names, the user namespace first.
fn namespace_flags(head: &Head, placed: bool) -> (u64, Vec<&'static str>) {
    let mut flags = 0u64;
    let mut names = vec!["user"];
    for (kind, flag) in [
        ("mount", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("network", libc::CLONE_NEWNET),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", libc::CLONE_NEWTIME),
    ] {
        if has(&head.namespaces, kind) {
            names.push(kind);
            if !(kind == "cgroup" && placed) {
                flags |= flag as u64;
            }
        }
    }
    (flags, names)
}

fn namespaced(head: &Head, rep: Reporter, placed: bool) -> (Ctx, u64) {
    let flags = report_namespaces(head, &rep, placed);
    (namespace_ctx(head, rep, placed), flags)
}

/// Reports the namespaces `head` gets (all, or those shared with the host) and returns
/// their clone flags.
fn report_namespaces(head: &Head, rep: &Reporter, placed: bool) -> u64 {
    let ns = |k: &str| has(&head.namespaces, k);
    let (flags, names) = namespace_flags(head, placed);
    let missing: Vec<&str> = ["pid", "network", "ipc", "uts", "cgroup"]
        .into_iter()
        .filter(|k| !ns(k))
        .collect();
    let (level, detail) = if missing.is_empty() {
        (Level::Full, names.join(", "))
    } else {
        (
            Level::Partial,
            format!(
                "{}; shared with the host: {}",
                names.join(", "),
                missing.join(", ")
            ),
        )
    };
    rep.layer("namespaces", LayerStatus::new(level, detail));
    flags
}

/// What init and the agent need in `head`'s namespaces (no life channel yet).
pub(crate) fn namespace_ctx(head: &Head, rep: Reporter, placed: bool) -> Ctx {
    let ns = |k: &str| has(&head.namespaces, k);
    Ctx {
        rep,
        attached: terminal::attached(),
        pidns: ns("pid"),
        netns: ns("network"),
        loopback_up: false,
        private_tmp: None,
        life: None,
        cgroupns_late: ns("cgroup") && placed,
        moved_ports: Vec::new(),
    }
}

/// Takes init cloned ahead for `head` (which asks for its namespaces and no cgroup): maps
/// its ids, hands it the head and what followed it. When that fails, init is killed and
/// the body given back: the usual way then says why, or falls back, as it would have.
fn claim<'a>(
    init: Ahead,
    head: &Head,
    line: &[u8],
    body: Body<'a>,
    rep: &Reporter,
) -> Result<Launched, Body<'a>> {
    let Body::Pipe { fd, buffered } = body else {
        return Err(body);
    };
    let made_at_start = init.made_at_start();
    match init.claim(head, line, &buffered) {
        Ok((pid, life)) => {
            // init reads the rest of the plan; the stage has no use for the descriptor.
            // SAFETY: the plan descriptor is ours.
            unsafe { libc::close(fd) };
            // The report of the usual way (init builds its Ctx itself).
            report_namespaces(head, rep, false);
            rep.debug(|| {
                let made = if made_at_start {
                    " (namespaces made while omac started)"
                } else {
                    ""
                };
                format!("init cloned ahead{made}; ids mapped")
            });
            Ok(Launched::new(pid, life, None, None))
        }
        Err(why) => {
            rep.debug(|| format!("init cloned ahead not taken: {why}"));
            Err(Body::Pipe { fd, buffered })
        }
    }
}

fn fallback_ctx(plan: &RunPlan, rep: Reporter, cause: userns::Cause) -> Result<Ctx, i32> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if plan.process.uid != uid || plan.process.gid != gid {
        rep.fail(
            "fallback",
            format!(
                "without a user namespace the agent runs as uid {uid} gid {gid}, but process.user asks for {} {}",
                plan.process.uid, plan.process.gid
            ),
            "regenerate the bundle as this user",
        );
        return Err(7);
    }
    if plan.landlock.is_none() {
        rep.fail(
            "user namespace",
            cause.message,
            format!(
                "{} (a plain OCI bundle has no Landlock rules to fall back on)",
                cause.fix
            ),
        );
        return Err(7);
    }
    rep.send(&Msg::Fallback {
        cause: cause.message.clone(),
    });
    // Only what this user could actually read is worth a warning.
    let unhidden: Vec<String> = plan
        .fallback
        .unhidden
        .iter()
        .filter(|p| {
            sys::cstr(p).is_ok_and(|c| {
                // SAFETY: valid C string.
                unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
            })
        })
        .cloned()
        .collect();
    let weaker = fallback::weaker(plan.network_mode.as_deref(), &unhidden);
    rep.warn(format!(
        "user namespaces are unavailable: {}. Running with Landlock and seccomp only, which is \
         weaker: {}. To get the full sandbox: {}",
        cause.message,
        weaker.join("; "),
        cause.fix
    ));
    rep.layer("namespaces", LayerStatus::none(cause.message));
    let tmp = match private_tmp() {
        Ok(t) => t,
        Err(e) => {
            rep.fail(
                "private temporary directory",
                e.to_string(),
                "make /tmp writable",
            );
            return Err(7);
        }
    };
    Ok(Ctx {
        rep,
        attached: terminal::attached(),
        pidns: false,
        netns: false,
        loopback_up: false,
        private_tmp: Some(tmp),
        life: None,
        cgroupns_late: false,
        moved_ports: Vec::new(),
    })
}

/// A fresh directory only this user can enter.
fn private_tmp() -> io::Result<PathBuf> {
    let mut template = *b"/tmp/omac-run-XXXXXX\0";
    // SAFETY: a writable NUL-terminated template.
    let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(PathBuf::from(
        std::str::from_utf8(&template[..template.len() - 1]).map_err(io::Error::other)?,
    ))
}

/// Whether the stage's end of the life channel is closed (the stage is gone).
pub(crate) fn stage_gone(life: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: life.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    ready > 0 && pfd.revents & libc::POLLHUP != 0
}

/// Clones init with `flags` (into the cgroup when there is one); returns its pid and the
/// stage's end of the life channel (see `life`). init mounts `view` first (when
/// namespaced), then reads `body` if it is still on its descriptor: a plan sent ahead of
/// its body has the view built while the omac process prepares.
fn clone_init(
    body: Body,
    view: Option<&View>,
    mut ctx: Ctx,
    flags: u64,
    placement: Option<&Placement>,
) -> Result<(libc::pid_t, OwnedFd), i32> {
    let (stage_end, init_end) = match crate::life::pair() {
        Ok(p) => p,
        Err(e) => {
            ctx.rep
                .fail("socketpair", e.to_string(), "raise the open file limit");
            return Err(7);
        }
    };
    let cg = placement.map(|p| p.fd.as_raw_fd());
    let mut moved = false;
    let forked = match (sys::clone_fork(flags, cg), placement) {
        // No clone3 (a container's seccomp profile): the stage enters the cgroup itself and
        // its child starts there.
        (Err(e), Some(p)) if e.raw_os_error() == Some(libc::ENOSYS) => match p.enter_self() {
            Ok(()) => {
                moved = true;
                sys::clone_fork(flags, None)
            }
            Err(e) => Err(e),
        },
        (r, _) => r,
    };
    if moved {
        if let Ok(Forked::Parent(_)) = forked {
            if let Some(p) = placement {
                let _ = p.leave_self();
            }
        }
    }
    match forked {
        Ok(Forked::Child) => {
            sys::name_thread(c"omac-init");
            drop(stage_end);
            ctx.life = Some(init_end);
            init_child(body, view, ctx)
        }
        Ok(Forked::Parent(pid)) => {
            if let Body::Pipe { fd, .. } = body {
                // init reads the plan; the stage has no use for the descriptor.
                // SAFETY: the plan descriptor is ours.
                unsafe { libc::close(fd) };
            }
            ctx.rep.debug(|| "init cloned".to_string());
            Ok((pid, stage_end))
        }
        Err(e) => {
            let fix = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    "the kernel refused to create the namespaces; run `omac doctor`"
                }
                Some(libc::ENOSPC) => "a namespace limit (user.max_*_namespaces) is reached",
                _ => "run `omac doctor`",
            };
            ctx.rep.fail("create namespaces", sys::errno_text(&e), fix);
            Err(7)
        }
    }
}

/// init, cloned: dies with the stage until it has its plan, builds the bundle's `view`
/// (when namespaced) while the rest of the plan is on its way, reads it from `body`, then
/// runs (see `init::main`).
pub(crate) fn init_child(body: Body, view: Option<&View>, ctx: Ctx) -> ! {
    // Until it has its plan, init dies with the stage: a run called off after the plan was
    // sent (omac killed the stage) must not go on unsupervised. The life channel tells whether
    // the stage died before this.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0);
    if ctx.life.as_ref().is_none_or(stage_gone) {
        sys::exit_now(1);
    }
    crate::init::prepare_namespaces(&ctx);
    let begun = view.map(|v| match mounts::begin(v, &ctx.rep) {
        Ok(b) => b,
        Err(e) => {
            ctx.rep.fail(&e.step, e.message, e.fix);
            sys::exit_now(1)
        }
    });
    let plan = match body.read() {
        Ok(Some(p)) => Some(p),
        // omac gave up on the run before sending it: nothing to run.
        Ok(None) => None,
        Err(e) => {
            ctx.rep.fail(
                "read the plan",
                e,
                "the omac binary changed during the run; retry",
            );
            None
        }
    };
    let plan = match (plan, view) {
        (Some(p), Some(v)) if *v != p.view => {
            ctx.rep.fail(
                "read the plan",
                "the plan's view is not the one its head announced",
                "report this as a bug",
            );
            None
        }
        (p, _) => p,
    };
    let Some(plan) = plan else {
        if let Some(b) = begun {
            b.abandon();
        }
        sys::exit_now(1)
    };
    crate::init::main(&plan, ctx, begun)
}
