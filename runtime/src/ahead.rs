//! init cloned ahead. A stage forked before omac has read its bundle (see `prestart`) sits
//! idle until the plan's head arrives, and creating the namespaces is then the longest
//! step (a network namespace alone costs about half a millisecond). So the stage clones
//! init at once into a new user namespace and the usual ones (mount, pid, network, ipc,
//! uts, cgroup), unmapped and waiting. When omac's entry point forked a holder, the user,
//! network, mount, ipc, uts and cgroup namespaces are those it made while omac started
//! (see `holder`), and only the pid namespace is new. The head decides: when it asks for
//! exactly these namespaces and no cgroup, the stage maps init's ids and hands it the
//! head, and init goes on as if it had been cloned then; otherwise init is killed and
//! reaped, and the stage goes the usual way. Until it has its head init does nothing but
//! wait, and it dies with the stage.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::holder::Holder;
use crate::stage::{self, Body};
use crate::sys::{self, Forked};
use crate::userns;
use crate::wire::{Head, Plan, Reporter, Task, PLAN_FD, REPORT_FD};

/// The namespaces init is cloned into ahead (with a new user namespace): those of the
/// bundles omac generates.
pub const FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

/// init, cloned ahead and waiting for its head; killed and reaped when dropped unclaimed.
#[derive(Debug)]
pub struct Ahead {
    /// init's pid; 0 once claimed.
    pid: libc::pid_t,
    /// The stage's end of the socket init reads its head from.
    go: Option<OwnedFd>,
    /// The stage's end of init's life channel.
    life: Option<OwnedFd>,
    /// init joined the namespaces of omac's holder (see `holder`).
    held: bool,
}

impl Ahead {
    /// Clones init ahead, into the `holder`'s namespaces when it has them (see `holder`).
    /// None when it cannot be done here; the usual way then meets the same obstacle and
    /// names it.
    pub fn clone(holder: Option<Holder>) -> Option<Ahead> {
        if userns::apparmor_restricts() {
            return None;
        }
        let (stage_end, init_end) = crate::life::pair().ok()?;
        let (go_r, go_w) = sys::socketpair().ok()?;
        let flags = libc::CLONE_NEWUSER as u64 | FLAGS;
        // The namespaces made while omac started, when it made them; else new ones.
        let (forked, held) = match holder.and_then(|h| h.clone_init(flags)) {
            Some(f) => (f, true),
            None => (sys::clone_fork(flags, None).ok()?, false),
        };
        match forked {
            Forked::Child => {
                drop(stage_end);
                drop(go_w);
                wait_for_head(init_end, go_r, held)
            }
            Forked::Parent(pid) => Some(Ahead {
                pid,
                go: Some(go_w),
                life: Some(stage_end),
                held,
            }),
        }
    }

    /// Whether init joined the namespaces made while omac started (see `holder`).
    pub fn made_at_start(&self) -> bool {
        self.held
    }

    /// Takes init for `head`, whose line (`line`) and the bytes read past it (`rest`) it
    /// gets: writes its id maps (as its parent may, for a child in a new user namespace),
    /// hands them over. Returns init's pid and the stage's end of its life channel; on
    /// failure the reason (init is then killed when `self` drops).
    pub fn claim(
        mut self,
        head: &Head,
        line: &[u8],
        rest: &[u8],
    ) -> Result<(libc::pid_t, OwnedFd), String> {
        userns::map(
            &self.pid.to_string(),
            &head.uid_map,
            &head.gid_map,
            head.allow_setgroups,
        )
        .map_err(|c| c.message)?;
        let mut msg = Vec::with_capacity(line.len() + 1 + rest.len());
        msg.extend_from_slice(line);
        msg.push(b'\n');
        msg.extend_from_slice(rest);
        let (Some(go), Some(life)) = (self.go.take(), self.life.take()) else {
            return Err("claimed twice".into());
        };
        sys::send_all(go.as_raw_fd(), &msg).map_err(|e| format!("handing init its head: {e}"))?;
        // Closed: init reads to its end.
        drop(go);
        Ok((std::mem::replace(&mut self.pid, 0), life))
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // The helper that cloned init from the holder's namespaces, if one did.
        crate::holder::reap_helper();
        if self.pid <= 0 {
            return;
        }
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = sys::wait_for(self.pid);
    }
}

/// init's side: waits for the head on `go`, then is init for it (see `stage::init_child`).
/// Exits when the stage goes away or calls the run off (closes `go` without a word). `held`:
/// init joined the holder's namespaces.
fn wait_for_head(life: OwnedFd, go: OwnedFd, held: bool) -> ! {
    sys::name_thread(c"omac-init");
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0);
    if stage::stage_gone(&life) {
        sys::exit_now(1);
    }
    // Idle until the head arrives: the agent's bounding set is emptied now (see
    // `caps::drop_bounding`; the agent it forks finds it done).
    let _ = crate::caps::drop_bounding();
    // As if cloned after the stage blocked them (init keeps them blocked for its signalfd).
    if sys::block_signals(&stage::supervised(true)).is_err() {
        sys::exit_now(7);
    }
    let bytes = match sys::read_to_end(go.as_raw_fd()) {
        Ok(b) if !b.is_empty() => b,
        _ => sys::exit_now(1),
    };
    drop(go);
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let rest = bytes.get(nl + 1..).unwrap_or_default().to_vec();
    let Ok(Plan {
        verbose,
        t0,
        task: Task::Run(head),
        ..
    }) = serde_json::from_slice::<Plan>(&bytes[..nl])
    else {
        sys::exit_now(7)
    };
    // As the stage builds it for a claimed init: no cgroup placement.
    let mut ctx = stage::namespace_ctx(&head, Reporter::new(REPORT_FD, verbose, t0), false);
    ctx.life = Some(life);
    // The holder says it is ready only once its loopback device is up.
    ctx.loopback_up = held;
    stage::init_child(
        Body::Pipe {
            fd: PLAN_FD,
            buffered: rest,
        },
        Some(&head.view),
        ctx,
    )
}
