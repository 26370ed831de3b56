//! omac's init: pid 1 of the sandbox's pid namespace. It builds the view, becomes
//! non-dumpable (the agent can neither trace it nor read its memory), starts the agent, then
//! reaps zombies, forwards signals someone sends to the sandbox, runs the loopback bridges,
//! and exits with the agent's status once it has killed whatever the agent left running.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::bridge::{self, Listener, Relay};
use crate::stage::Ctx;
use crate::sys;
use crate::wire::{Msg, RunPlan};
use crate::{agent, mounts, netdev, FORWARDED_SIGNALS};

const TOKEN_SIGNALS: u64 = u64::MAX;
const TOKEN_LIFE: u64 = u64::MAX - 1;
const TOKEN_LISTENER: u64 = 1 << 62;

fn fail(ctx: &Ctx, step: &str, message: impl Into<String>, fix: impl Into<String>) -> ! {
    ctx.rep.fail(step, message, fix);
    sys::exit_now(1)
}

/// What init does in its new namespaces before it has its plan (the fallback has none):
/// enters the cgroup namespace when it does so itself, brings the loopback device of a new
/// network namespace up (unless the holder did).
pub fn prepare_namespaces(ctx: &Ctx) {
    enter_cgroup_namespace(ctx);
    if ctx.private_tmp.is_none() && ctx.netns && !ctx.loopback_up {
        if let Err(e) = netdev::loopback_up() {
            fail(ctx, "loopback up", sys::errno_text(&e), "run `omac doctor`");
        }
    }
}

/// Enters a new cgroup namespace when init does so itself (it sits in its own cgroup by
/// now), before any mount: that cgroup becomes the namespace's root.
fn enter_cgroup_namespace(ctx: &Ctx) {
    if !ctx.cgroupns_late {
        return;
    }
    // SAFETY: unshare with a namespace flag.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
        let e = io::Error::last_os_error();
        fail(
            ctx,
            "cgroup namespace",
            sys::errno_text(&e),
            "run `omac doctor`",
        );
    }
}

/// Runs init with the view `begun` (None in the fallback, which has none): never returns.
pub fn main(plan: &RunPlan, mut ctx: Ctx, begun: Option<mounts::Begun>) -> ! {
    // With a pid namespace init dies with the stage (its death takes the namespace along).
    // Without one, init must outlive its supervisor long enough to kill the agent's
    // descendants: the life channel tells it (see `supervise`).
    if !ctx.pidns {
        let _ = sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    }
    // Nothing of the process that cloned init reaches the sandbox: no descriptor but 0, 1, 2,
    // the report pipe and the life channel; no environment; default signal actions (the
    // supervised signals stay blocked for the signalfd).
    let mut keep = vec![ctx.rep.fd()];
    keep.extend(ctx.life.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(begun.iter().flat_map(|b| b.fds()));
    sys::close_all_except(&keep);
    // SAFETY: init is single-threaded.
    unsafe { libc::clearenv() };
    sys::reset_dispositions();
    ctx.rep.debug(|| "init has its plan".to_string());
    let fallback = ctx.private_tmp.is_some();
    // Published ports: listen at host paths now, while the host's view is still there.
    let mut reverse = Vec::new();
    if !fallback && ctx.netns {
        for (port, path) in &plan.publish {
            match bridge::listen_reverse(&format!("publish-{port}"), path, *port) {
                Ok(l) => reverse.push(l),
                Err(e) => fail(
                    &ctx,
                    &format!("publish port {port}"),
                    format!("listening on {}: {}", path.display(), sys::errno_text(&e)),
                    "check that the session's runtime directory exists and is writable",
                ),
            }
        }
    }
    // Mount points created on the host, as seen in the view.
    let mut created_here = Vec::new();
    if let Some(begun) = begun {
        set_names(plan, &ctx);
        let life = ctx.life.as_ref();
        let mut created = |inside: &str, host: &str| {
            created_here.push(inside.to_string());
            if let Some(l) = life {
                crate::life::created(l, host);
            }
        };
        if let Err(e) = mounts::finish(begun, plan, &ctx.rep, &mut created) {
            fail(&ctx, &e.step, e.message, e.fix);
        }
        ctx.rep
            .debug(|| "view built; pivoted into the new root".to_string());
    }
    // The bundle's oom_score_adj, for init and the agent, which inherits it: set before
    // init stops being dumpable. A process that is not dumpable cannot write its own /proc
    // entries as an unprivileged user (they then belong to a root that the user namespace
    // does not map), and the agent, which shares init's memory until its exec, is not.
    if let Some(adj) = plan.process.oom_score_adj {
        if let Err(e) = sys::write_file("/proc/self/oom_score_adj", &adj.to_string()) {
            fail(
                &ctx,
                "oom_score_adj",
                e.to_string(),
                "remove process.oomScoreAdj or raise it",
            );
        }
    }
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0);
    if !ctx.pidns {
        let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    }
    let mut listeners = start_bridges(plan, &mut ctx);
    listeners.extend(reverse);
    let sigfd = match sys::signalfd(&signals()) {
        Ok(fd) => fd,
        Err(e) => fail(&ctx, "signalfd", e.to_string(), "run `omac doctor`"),
    };
    let agent = match agent::spawn(plan, &ctx) {
        Err(e) => fail(
            &ctx,
            "fork the agent",
            sys::errno_text(&e),
            "raise the process limit",
        ),
        Ok(pid) => {
            ctx.rep.debug(|| "agent started".to_string());
            crate::cpus::restore_self();
            pid
        }
    };
    if !ctx.attached {
        // Also here, so that a signal forwarded right away finds the group.
        // SAFETY: setpgid on our child.
        unsafe { libc::setpgid(agent, agent) };
    }
    let code = supervise(agent, &ctx, &listeners, &sigfd);
    // Every other process of the sandbox is reaped by now. The mounts on the mount points
    // created on the host are detached here, lazily: removing a mount point that is still
    // one in this namespace would cost the stage a synchronous detach (an RCU grace
    // period) on the run's way out. The report pipe closes (omac reads it to its end),
    // then the stage hears the end: it cleans up, lets init go and waits for its exit, in
    // which the kernel tears the namespaces down, while omac winds down.
    for path in created_here.iter().rev() {
        if let Ok(c) = sys::cstr(path) {
            // SAFETY: a valid C string; a lazy detach in init's own namespace.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        }
    }
    // SAFETY: init's own descriptor, not used after this.
    unsafe { libc::close(ctx.rep.fd()) };
    if let Some(l) = &ctx.life {
        crate::life::ended(l, code);
        // Until the stage has removed what the run left on the host (it closes its end),
        // if anything: otherwise the stage only waits for init's exit.
        if !created_here.is_empty() {
            let mut byte = [0u8; 1];
            while sys::read_some(l.as_raw_fd(), &mut byte).is_ok_and(|n| n > 0) {}
        }
    }
    sys::exit_now(code)
}

fn signals() -> Vec<libc::c_int> {
    let mut s = FORWARDED_SIGNALS.to_vec();
    s.push(libc::SIGCHLD);
    s
}

fn set_names(plan: &RunPlan, ctx: &Ctx) {
    if let Some(h) = &plan.hostname {
        // SAFETY: valid buffer and length.
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } < 0 {
            let e = io::Error::last_os_error();
            fail(
                ctx,
                "hostname",
                sys::errno_text(&e),
                "remove hostname or add a uts namespace",
            );
        }
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: valid buffer and length.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            let e = io::Error::last_os_error();
            fail(
                ctx,
                "domainname",
                sys::errno_text(&e),
                "remove domainname or add a uts namespace",
            );
        }
    }
}

fn start_bridges(plan: &RunPlan, ctx: &mut Ctx) -> Vec<Listener> {
    let fallback = ctx.private_tmp.is_some();
    if fallback && plan.network_mode.as_deref() != Some("filtered") {
        if !plan.bridges.is_empty() {
            ctx.rep.warn(
                "the loopback bridges are not started: without a network namespace only the \
                 filtered mode runs them (on the host's loopback)",
            );
        }
        return Vec::new();
    }
    let mut out = Vec::new();
    for b in &plan.bridges {
        let target = if fallback {
            match plan
                .fallback
                .sockets
                .iter()
                .find(|(inside, _)| *inside == b.socket)
            {
                Some((_, host)) => host.clone(),
                None => PathBuf::from(&b.socket),
            }
        } else {
            PathBuf::from(&b.socket)
        };
        let mut r = bridge::listen(&b.name, &b.listen, &target);
        if fallback {
            // On the host's loopback another session may hold the port: take a free one and
            // tell the agent through its environment.
            if let Err(e) = &r {
                if e.raw_os_error() == Some(libc::EADDRINUSE) {
                    if let Ok(a) = b.listen.parse::<std::net::SocketAddr>() {
                        let any = std::net::SocketAddr::new(a.ip(), 0).to_string();
                        r = bridge::listen(&b.name, &any, &target);
                        if let Ok(l) = &r {
                            let new = l.port();
                            ctx.moved_ports.push((a.port(), new));
                            ctx.rep.warn(format!(
                                "bridge {}: port {} is taken on the host; it listens on {new} instead                                  (the agent's environment says so)",
                                b.name,
                                a.port()
                            ));
                        }
                    }
                }
            }
        }
        match r {
            Ok(l) => out.push(l),
            Err(e) => fail(
                ctx,
                &format!("bridge {}", b.name),
                format!("listening on {}: {}", b.listen, sys::errno_text(&e)),
                "free the port, or remove the bridge from omac.json",
            ),
        }
    }
    out
}

fn epoll_add(epoll: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: valid epoll descriptor and event.
    sys::cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// The exit code for a wait status: the code, or 128+signal.
fn code_of(status: i32) -> (i32, Option<i32>) {
    if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        (128 + s, Some(s))
    } else {
        (libc::WEXITSTATUS(status), None)
    }
}

/// Watches over the agent until it exits; returns the exit code.
fn supervise(agent: libc::pid_t, ctx: &Ctx, listeners: &[Listener], sigfd: &OwnedFd) -> i32 {
    // SAFETY: plain epoll creation.
    let ep = match sys::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }) {
        // SAFETY: just created.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(e) => fail(ctx, "epoll", e.to_string(), "run `omac doctor`"),
    };
    let epoll = ep.as_raw_fd();
    let mut ok = epoll_add(epoll, sigfd.as_raw_fd(), TOKEN_SIGNALS).is_ok();
    if let Some(l) = &ctx.life {
        ok &= epoll_add(epoll, l.as_raw_fd(), TOKEN_LIFE).is_ok();
    }
    for (i, l) in listeners.iter().enumerate() {
        ok &= epoll_add(epoll, l.fd.as_raw_fd(), TOKEN_LISTENER | i as u64).is_ok();
    }
    if !ok {
        kill_all(agent, ctx);
        fail(
            ctx,
            "epoll",
            "registering descriptors failed",
            "run `omac doctor`",
        );
    }
    let mut relay = Relay::default();
    let mut warned = false;
    // SAFETY: epoll_event is plain data.
    let mut events: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid buffer of 64 events.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, -1) };
        if n < 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == TOKEN_SIGNALS {
                while let Some((sig, code, _)) = sys::read_signal(sigfd.as_raw_fd()) {
                    if sig == libc::SIGCHLD {
                        if let Some(status) = reap(agent) {
                            ctx.rep.debug(|| "agent exited".to_string());

                            let (code, signal) = code_of(status);
                            ctx.rep.send(&Msg::Exit { code, signal });
                            kill_all(agent, ctx);
                            return code;
                        }
                    } else if code != libc::SI_KERNEL {
                        // Sent by someone (the stage forwarding omac's signals), not by the
                        // terminal, which has already signalled the agent's process group.
                        let target = if ctx.attached { agent } else { -agent };
                        // SAFETY: signalling the agent.
                        unsafe { libc::kill(target, sig) };
                    }
                }
            } else if token == TOKEN_LIFE {
                // The stage is gone: omac was killed. Nothing may outlive it.
                kill_all(agent, ctx);
                sys::exit_now(137);
            } else if token & TOKEN_LISTENER != 0 {
                let i = (token & !TOKEN_LISTENER) as usize;
                if let Some(l) = listeners.get(i) {
                    if let Some(e) = relay.accept(l, epoll) {
                        if !warned {
                            warned = true;
                            ctx.rep.debug(|| e.clone());
                        }
                    }
                }
            } else if relay.owns(token as RawFd) {
                relay.service_fd(token as RawFd);
            }
        }
    }
}

/// Reaps every exited child; returns the agent's status if it is among them.
fn reap(agent: libc::pid_t) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: reaping our own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == agent {
            found = Some(status);
        }
    }
}

/// Kills every process the agent left and reaps it: the whole pid namespace, or without
/// one, every descendant (they were reparented to init, a subreaper).
fn kill_all(agent: libc::pid_t, ctx: &Ctx) {
    if ctx.pidns {
        // SAFETY: pid 1 signalling every other process of its namespace.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        // Every process of the namespace is init's child by now (orphans are reparented
        // to it), so no child left means no process left.
        loop {
            // SAFETY: reaping; blocks until one exits.
            if unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::__WALL) } < 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
            {
                return;
            }
        }
    }
    // SAFETY: signalling the agent's group (it may be gone).
    unsafe { libc::kill(-agent, libc::SIGKILL) };
    for _ in 0..100 {
        let children = children();
        if children.is_empty() {
            break;
        }
        for c in children {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
        // SAFETY: reaping; blocks until one exits.
        unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
    }
}

/// The pids of init's children, from /proc.
fn children() -> Vec<libc::pid_t> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    s.split_whitespace()
                        .filter_map(|p| p.parse::<libc::pid_t>().ok()),
                );
            }
        }
    }
    out
}
