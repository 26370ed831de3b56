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

/// The CPUs a split start may use: those allowed before it (at least two).
#[derive(Clone, Copy)]
pub struct Split {
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

/// A split start for this process, to be placed once the stage is forked. None with fewer
/// than two CPUs allowed, or when omac pinned itself already (it does so once).
pub fn plan() -> Option<Split> {
    if ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return None;
    }
    let original = allowed()?;
    // SAFETY: a valid mask.
    let count = unsafe { libc::CPU_COUNT(&original.0) };
    (count >= 2).then_some(Split { original })
}

impl Split {
    /// In the omac process, right after the fork: omac keeps the CPU it runs on now, and
    /// the stage gets the next allowed one. Both are chosen here, after the fork, because
    /// either may have moved during it (the new stage often runs first, on omac's CPU,
    /// while the idle CPU takes omac). Neither move then costs a stop of a CPU (about
    /// 50 us on 2 CPUs here): omac stays where it is, and the stage either already runs on
    /// the other CPU or waits, not running, on this one.
    pub fn place(&self, stage: libc::pid_t) {
        *ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.original);
        // SAFETY: sched_getcpu takes no argument.
        let now = unsafe { libc::sched_getcpu() };
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: every c is below CPU_SETSIZE.
            .filter(|c| unsafe { libc::CPU_ISSET(*c, &self.original.0) })
            .collect();
        let Some(at) = usize::try_from(now)
            .ok()
            .and_then(|c| cpus.iter().position(|x| *x == c))
        else {
            return;
        };
        pin(stage, &only(cpus[(at + 1) % cpus.len()]));
        pin(0, &only(cpus[at]));
    }

    /// In the stage: remembers the CPUs to give back (see [`restore_self`]); omac places it.
    pub fn adopt(&self) {
        *ORIGINAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.original);
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
