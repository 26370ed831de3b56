//! What this host offers a sandbox, for `omac doctor`: user namespaces (tried for real in a
//! stage process, with the cause when they fail), Landlock's ABI, seccomp, cgroup v2
//! delegation and AppArmor's user-namespace restriction.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use omac_bundle::oci::IdMapping;
use serde::{Deserialize, Serialize};

use crate::sys::{self, Forked};
use crate::userns::{self, Cause};
use crate::wire::{Msg, Plan, Reporter, Task};

/// What the stage found when it tried to build a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageProbe {
    /// Why a user namespace could not be entered (None: it could).
    pub userns: Option<Cause>,
    /// Why the mount, pid, net, ipc and uts namespaces could not be created.
    pub namespaces: Option<String>,
    /// Why a filesystem could not be mounted inside.
    pub mount: Option<String>,
    /// Why the loopback interface could not be brought up inside.
    pub loopback: Option<String>,
}

/// The probe, run in the stage.
pub fn stage(rep: &Reporter) -> i32 {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let map = |id| {
        vec![IdMapping {
            container_id: id,
            host_id: id,
            size: 1,
        }]
    };
    let mut p = StageProbe::default();
    match userns::enter(&map(uid), &map(gid), false) {
        Err(c) => p.userns = Some(c),
        Ok(()) => inside(&mut p),
    }
    rep.send(&Msg::Probe { report: p });
    0
}

fn inside(p: &mut StageProbe) {
    let Ok((r, w)) = sys::pipe() else {
        p.namespaces = Some("pipe failed".into());
        return;
    };
    let flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS) as u64;
    match sys::clone_fork(flags, None) {
        Err(e) => p.namespaces = Some(sys::errno_text(&e)),
        Ok(Forked::Child) => {
            let mount = crate::mounts::new_fs("tmpfs", "omac-probe", &[], 0).err();
            let lo = crate::netdev::loopback_up()
                .err()
                .map(|e| sys::errno_text(&e));
            let out = serde_json::to_vec(&(mount, lo)).unwrap_or_default();
            let _ = sys::write_all(w.as_raw_fd(), &out);
            // SAFETY: leaving the probe child.
            unsafe { libc::_exit(0) }
        }
        Ok(Forked::Parent(pid)) => {
            drop(w);
            let bytes = sys::read_to_end(r.as_raw_fd()).unwrap_or_default();
            // SAFETY: reaping our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            match serde_json::from_slice::<(Option<String>, Option<String>)>(&bytes) {
                Ok((m, l)) => {
                    p.mount = m;
                    p.loopback = l;
                }
                Err(_) => p.namespaces = Some("the probe process failed".into()),
            }
        }
    }
}

/// Everything `omac doctor` reports about the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The stage's attempt (Err: the stage could not run).
    pub stage: Result<StageProbe, String>,
    /// Landlock ABI (0: none).
    pub landlock_abi: u32,
    /// The kernel offers seccomp filters.
    pub seccomp_available: bool,
    /// This process's seccomp mode (2: it already runs under a filter, as in a container).
    pub seccomp_mode: u32,
    /// Where a sandbox's cgroup would go and its controllers, or why there is none.
    pub cgroups: Result<(PathBuf, Vec<String>), Cause>,
    /// `kernel.apparmor_restrict_unprivileged_userns`, when the sysctl exists.
    pub apparmor_restrict: Option<i64>,
    /// This process's AppArmor label.
    pub apparmor_label: Option<String>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<i64>,
    /// `kernel.unprivileged_userns_clone`, when the sysctl exists.
    pub unprivileged_userns_clone: Option<i64>,
}

fn read_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Probes the host; `stage_exe` is the omac binary (default: this process's own).
pub fn host(stage_exe: Option<&Path>) -> HostReport {
    HostReport {
        stage: run_stage(stage_exe.unwrap_or(Path::new("/proc/self/exe"))),
        landlock_abi: crate::landlock::abi(),
        seccomp_available: Path::new("/proc/sys/kernel/seccomp/actions_avail").exists(),
        seccomp_mode: userns::seccomp_mode(),
        cgroups: crate::cgroup::delegation(),
        apparmor_restrict: read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        apparmor_label: userns::apparmor_label(),
        max_user_namespaces: read_int("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read_int("/proc/sys/kernel/unprivileged_userns_clone"),
    }
}

fn run_stage(exe: &Path) -> Result<StageProbe, String> {
    let plan = Plan {
        // SAFETY: getpid cannot fail.
        parent: unsafe { libc::getpid() },
        verbose: false,
        t0: 0,
        task: Task::Probe,
    };
    let bytes = serde_json::to_vec(&plan).map_err(|e| e.to_string())?;
    let (plan_r, plan_w) = sys::pipe().map_err(|e| e.to_string())?;
    let (rep_r, rep_w) = sys::pipe().map_err(|e| e.to_string())?;
    let pid = crate::parent::spawn_stage(exe, &plan_r, &rep_w)
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    drop(plan_r);
    drop(rep_w);
    let _ = sys::write_all(plan_w.as_raw_fd(), &bytes);
    drop(plan_w);
    let mut out = String::new();
    let _ = std::fs::File::from(rep_r).read_to_string(&mut out);
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    for line in out.lines() {
        if let Ok(Msg::Probe { report }) = serde_json::from_str::<Msg>(line) {
            return Ok(report);
        }
    }
    Err(format!("the probe stage reported nothing: {}", out.trim()))
}

/// The controllers the cgroup v2 directory `dir` offers.
pub fn cgroup_controllers(dir: &Path) -> Vec<String> {
    crate::cgroup::available(dir)
}
