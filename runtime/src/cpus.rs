//! Two CPUs for a sandbox's start. While omac prepares its session (files, listeners, the
//! plan) its stage and init build the sandbox: two chains of work that hand each other
//! data through pipes. A pipe's wakeup asks the scheduler to run the reader on the
//! writer's CPU, expecting the writer to sleep; omac goes on working instead, and on a
//! small machine the two chains then queue on one CPU while the other idles (measured on
//! 2 CPUs: about a millisecond of a run). So a stage forked ahead (see `prestart`) runs on
//! a CPU of its own and omac keeps another, until the agent is about to start: the agent
//! gets the CPUs omac had before it exec's, init before it waits for the agent, and omac
//! once the agent's last report before exec arrives (or the run ends). With fewer than two
//! CPUs allowed nothing is pinned. Placement only: no CPU is ever added to those allowed.

use std::sync::Mutex;

/// The CPUs this process may use, before any pinning here (None: never pinned).
static ORIGINAL: Mutex<Option<CpuSet>> = Mutex::new(None);

/// A CPU mask (`cpu_set_t`, which holds no pointer).
#[derive(Clone, Copy)]
struct CpuSet(libc::cpu_set_t);

// SAFETY: a plain bit array.
unsafe impl Send for CpuSet {}

/// The CPUs for a split start: omac's, the stage's, and the mask both came from.
#[derive(Clone, Copy)]
pub struct Split {
    omac: usize,
    stage: usize,
    original: CpuSet,
}

/// The CPUs the calling thread may use.
fn allowed() -> Option<CpuSet> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid mask of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(CpuSet(set))
}

/// Pins thread `tid` (0: the caller) to `set`; errors are ignored (placement is a hint).
fn pin(tid: libc::pid_t, set: &libc::cpu_set_t) {
    // SAFETY: a valid mask of the size given.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET ignores a cpu beyond the set's size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Two CPUs for a split start: the one omac runs on now and the next allowed one. None
/// with fewer than two allowed, or when omac pinned itself already (it does so once).
pub fn plan() -> Option<Split> {
    if ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return None;
    }
    let original = allowed()?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every c is below CPU_SETSIZE.
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &original.0) })
        .collect();
    if cpus.len() < 2 {
        return None;
    }
    // SAFETY: sched_getcpu takes no argument.
    let now = unsafe { libc::sched_getcpu() };
    let omac = usize::try_from(now)
        .ok()
        .filter(|c| cpus.contains(c))
        .unwrap_or(cpus[0]);
    let next = cpus.iter().position(|c| *c == omac).map_or(0, |i| i + 1);
    let stage = cpus[next % cpus.len()];
    Some(Split {
        omac,
        stage,
        original,
    })
}

impl Split {
    /// In the omac process, after the fork: omac keeps its CPU until [`restore_process`].
    pub fn pin_omac(&self) {
        *ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.original);
        pin(0, &only(self.omac));
    }

    /// In the omac process, right after the fork: the stage, most likely still waiting
    /// to run on omac's CPU (where a fork puts its child), is placed on its own before it
    /// runs. Moving a task that runs costs the kernel a stop of its CPU (about 50 us on 2
    /// CPUs here), which the stage would otherwise pay first thing, on the way to init.
    pub fn place_stage(&self, pid: libc::pid_t) {
        pin(pid, &only(self.stage));
    }

    /// In the stage: its CPU, for it, init and the agent until [`restore_self`].
    pub fn pin_stage(&self) {
        *ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.original);
        pin(0, &only(self.stage));
    }
}

/// Gives the calling thread back the CPUs it had before the split (init, the agent).
pub fn restore_self() {
    if let Some(o) = *ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()) {
        pin(0, &o.0);
    }
}

/// Gives every thread of omac back the CPUs it had before the split (threads started
/// meanwhile inherited the pinned mask); once.
pub fn restore_process() {
    let Some(o) = ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        pin(0, &o.0);
        return;
    };
    for t in tasks.flatten() {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
            pin(tid, &o.0);
        }
    }
}
