//! A stage started ahead of its plan. A caller that will run a bundle from a
//! multi-threaded process (the session) calls [`prestart`] as soon as it knows it will:
//! the re-executed omac binary (its exec, dynamic loading and start-up) then overlaps with
//! the caller's own preparation, and [`crate::run`] hands the plan to that stage instead
//! of spawning one. The stage is exactly the one [`crate::run`] would spawn (same binary,
//! empty environment, default signal dispositions, descriptors 3 and 4 only); it blocks
//! reading its plan, and exits quietly when the plan's pipe closes without one (the caller
//! failed before the sandbox, or exited).

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use crate::sys;

/// A spawned stage waiting for its plan.
#[derive(Debug)]
pub(crate) struct Prestarted {
    /// The stage's pid.
    pub pid: libc::pid_t,
    /// The write end of the stage's plan pipe.
    pub plan_w: OwnedFd,
    /// The read end of the pipe the stage, init and the agent report on.
    pub report_r: OwnedFd,
}

/// The one waiting stage of this process, if any.
static WAITING: Mutex<Option<Prestarted>> = Mutex::new(None);

/// Spawns the stage (`/proc/self/exe __sandbox-stage`) now, for the next [`crate::run`] of
/// this process that would spawn one. Does nothing when a stage is already waiting.
pub fn prestart() -> io::Result<()> {
    let mut waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner());
    if waiting.is_some() {
        return Ok(());
    }
    let (report_r, report_w) = sys::pipe()?;
    let (plan_r, plan_w) = sys::pipe()?;
    let pid = crate::parent::spawn_stage(Path::new("/proc/self/exe"), &plan_r, &report_w)?;
    *waiting = Some(Prestarted {
        pid,
        plan_w,
        report_r,
    });
    Ok(())
}

/// Takes the waiting stage, if one was started.
pub(crate) fn take() -> Option<Prestarted> {
    WAITING.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Ends the waiting stage, if any: closing its plan pipe makes it exit; it is reaped.
pub fn dismiss() {
    if let Some(p) = take() {
        drop(p.plan_w);
        let mut status = 0;
        // SAFETY: reaping our own child, which exits on the closed pipe.
        while unsafe { libc::waitpid(p.pid, &mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}
