//! A stage started ahead of its plan. A caller that will run a bundle calls [`prestart`]
//! as soon as it knows it will (while it is still single-threaded, so that the stage is a
//! fork of it, without the exec of the omac binary), and [`send_head`] once it has loaded
//! the bundle: the user namespace, the clone of init into the sandbox's namespaces and the
//! bundle's part of the view (mounts, masks, read-only paths: init builds them from the
//! head) then overlap with the caller's own preparation, and [`crate::run`] or
//! [`crate::start`] hands the rest of the plan to that stage instead of spawning one.
//!
//! The stage is exactly the one [`crate::run`] would spawn (empty environment, default
//! signal dispositions, descriptors 3 and 4 only), and it gets the same first line (the
//! plan's [`Head`], checked as the full plan checks it); init, in its new namespaces,
//! mounts the head's view and waits for the rest before it completes it or runs anything.
//! A head that turns out not to match the run's plan sends that stage away and a fresh one
//! is spawned. A stage never given the rest sees its plan's pipe close and exits, init
//! first (removing the mount points it created on the host); [`dismiss`] reaps it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

use omac_bundle::Loaded;

use crate::sys;
use crate::wire::{Head, Plan, Task};

/// A spawned stage waiting for (the rest of) its plan.
#[derive(Debug)]
pub(crate) struct Prestarted {
    /// The stage's pid.
    pub pid: libc::pid_t,
    /// The write end of the stage's plan pipe.
    pub plan_w: OwnedFd,
    /// The read end of the pipe the stage, init and the agent report on.
    pub report_r: OwnedFd,
    /// The head the stage was sent, with the run's verbosity, if it was sent one.
    sent: Option<(Head, bool)>,
}

impl Prestarted {
    /// Whether the stage has its plan's first line already (then only the run plan follows).
    pub fn has_head(&self) -> bool {
        self.sent.is_some()
    }
}

/// The one waiting stage of this process, if any.
static WAITING: Mutex<Option<Prestarted>> = Mutex::new(None);

/// Starts the stage now (forked when this process is single-threaded, else
/// `/proc/self/exe __sandbox-stage`), for the next [`crate::run`] of
/// this process that would spawn one; [`send_head`] lets it go on to the namespaces. Does
/// nothing when a stage is already waiting.
pub fn prestart() -> io::Result<()> {
    let mut waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner());
    if waiting.is_some() {
        return Ok(());
    }
    let (report_r, report_w) = sys::pipe()?;
    let (plan_r, plan_w) = sys::pipe()?;
    // Single-threaded callers (`omac run` calls this before any thread exists) fork it.
    let pid = match crate::parent::fork_stage(&plan_r, &report_w) {
        Ok(pid) => pid,
        Err(_) => crate::parent::spawn_stage(Path::new("/proc/self/exe"), &plan_r, &report_w)?,
    };
    // The stage has its own copies of the holder's pipes, if it can use them.
    crate::holder::let_go();
    *waiting = Some(Prestarted {
        pid,
        plan_w,
        report_r,
        sent: None,
    });
    Ok(())
}

/// Sends the waiting stage the head of `bundle`'s plan (checked as the full plan checks
/// it): it enters the user namespace and clones init into the sandbox's namespaces while
/// the caller goes on preparing. `verbose` and `t0` are the coming run's
/// ([`crate::RunOptions`]). A bundle the runtime refuses gets no head: [`crate::run`]
/// reports why.
pub fn send_head(bundle: &Loaded, verbose: bool, t0: Option<u64>) -> io::Result<()> {
    let mut waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner());
    let Some(stage) = waiting.as_mut().filter(|s| s.sent.is_none()) else {
        return Ok(());
    };
    let Ok(head) = crate::prepare::head(bundle) else {
        return Ok(());
    };
    let plan = Plan {
        // SAFETY: getpid cannot fail.
        parent: unsafe { libc::getpid() },
        verbose,
        t0: t0.unwrap_or_else(crate::wire::now),
        task: Task::Run(head.clone()),
    };
    let first = crate::wire::encode(&plan, None).map_err(io::Error::other)?;
    // A few hundred bytes into an empty pipe: this does not block.
    if let Err(e) = sys::write_all(stage.plan_w.as_raw_fd(), &first) {
        if let Some(s) = waiting.take() {
            end(s);
        }
        return Err(e);
    }
    stage.sent = Some((head, verbose));
    Ok(())
}

/// Whether a stage started ahead waits for its plan.
pub(crate) fn waiting() -> bool {
    WAITING.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Takes the waiting stage unless it was sent another head (or verbosity) than `head`'s
/// run: that one is ended.
pub(crate) fn take_for(head: &Head, verbose: bool) -> Option<Prestarted> {
    let p = WAITING.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    match &p.sent {
        Some((h, v)) if h != head || *v != verbose => {
            tracing::debug!("the stage started ahead was sent another plan; starting a fresh one");
            end(p);
            None
        }
        _ => Some(p),
    }
}

/// Ends the waiting stage, if any: closing its plan pipe makes init and then the stage
/// exit; the stage is reaped.
pub fn dismiss() {
    let p = WAITING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(p) = p {
        end(p);
    }
}

fn end(p: Prestarted) {
    // No sandbox starts from this stage: omac gets its CPUs back.
    crate::cpus::restore_process();
    drop(p.plan_w);
    let mut status = 0;
    // SAFETY: reaping our own child, which exits on the closed pipe.
    while unsafe { libc::waitpid(p.pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    drop(p.report_r);
}
