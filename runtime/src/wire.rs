//! What the omac process and the sandbox stage say to each other: the plan (sent once, on
//! fd 3) and the report messages (one JSON line each, on fd 4, written by the stage, init
//! and the agent before its exec).

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

use omac_bundle::ext::{Bridge, FsRule, Landlock};
use omac_bundle::oci::{IdMapping, Mount, Resources};
use serde::{Deserialize, Serialize};

use crate::report::LayerStatus;

/// The descriptor the stage reads its plan from.
pub const PLAN_FD: RawFd = 3;
/// The descriptor the stage, init and the agent write report messages to.
pub const REPORT_FD: RawFd = 4;
/// The hidden subcommand that runs the stage.
pub const STAGE_ARG: &str = "__sandbox-stage";

/// The stage's instructions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The omac process that spawned the stage (the stage exits if it is gone).
    pub parent: i32,
    /// Send debug messages about each step.
    pub verbose: bool,
    /// `CLOCK_MONOTONIC` nanoseconds when the run started (debug messages say the time since).
    pub t0: u64,
    /// What to do.
    pub task: Task,
}

/// The stage's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Task {
    /// Run a bundle: what creating its namespaces takes here; the [`RunPlan`] follows on
    /// the same descriptor, after a newline, and init reads it.
    Run(Head),
    /// Try the kernel features a sandbox needs and report (`omac doctor`).
    Probe,
}

/// The part of a [`RunPlan`] the stage needs to create the sandbox's namespaces and clone
/// init into them, and init to mount the bundle's own view. It can be sent ahead of the
/// rest (see `prestart`): init then mounts the view in its fresh namespaces while the omac
/// process prepares, and waits for the plan that completes it (the run's sockets, masks,
/// read-only paths, pivot) and starts the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Namespace kinds to create.
    pub namespaces: Vec<String>,
    /// uid mappings of the user namespace.
    pub uid_map: Vec<IdMapping>,
    /// gid mappings of the user namespace.
    pub gid_map: Vec<IdMapping>,
    /// Whether `setgroups` stays allowed.
    pub allow_setgroups: bool,
    /// Enforcement layers the bundle requires.
    pub require: Vec<String>,
    /// cgroup limits.
    pub resources: Option<Resources>,
    /// The bundle's part of the view.
    pub view: View,
}

impl Head {
    /// The head of `plan`.
    pub fn of(plan: &RunPlan) -> Head {
        Head {
            namespaces: plan.namespaces.clone(),
            uid_map: plan.uid_map.clone(),
            gid_map: plan.gid_map.clone(),
            allow_setgroups: plan.allow_setgroups,
            require: plan.require.clone(),
            resources: plan.resources.clone(),
            view: plan.view.clone(),
        }
    }
}

/// The bundle's own part of the view, which nothing at run time changes: its root, its
/// mounts (checked: each parses), masks, read-only paths and sysctls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Absolute path of the bundle's root directory.
    pub rootfs: PathBuf,
    /// The root directory is empty: a tmpfs is mounted over it.
    pub root_tmpfs: bool,
    /// The bundle's mounts, in order.
    pub mounts: Vec<Mount>,
    /// Paths hidden from the agent.
    pub masked: Vec<String>,
    /// Paths made read-only.
    pub readonly: Vec<String>,
    /// Namespaced sysctls to set.
    pub sysctl: BTreeMap<String, String>,
    /// Where the run's sockets and binaries go (its extra mounts): masks and read-only
    /// paths in or around it wait until they are mounted.
    pub socket_dir: String,
}

impl View {
    /// Whether `path` (a mask or read-only path) is in or around the socket directory.
    pub fn near_sockets(&self, path: &str) -> bool {
        let within = |a: &str, b: &str| {
            let b = b.trim_end_matches('/');
            a == b || a.starts_with(&format!("{b}/")) || b.is_empty()
        };
        within(path, &self.socket_dir) || within(&self.socket_dir, path)
    }
}

/// The stage's plan as written on its descriptor: the [`Plan`] on one line, then for a
/// run the [`RunPlan`].
pub fn encode(plan: &Plan, run: Option<&RunPlan>) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(plan)?;
    bytes.push(b'\n');
    if let Some(r) = run {
        serde_json::to_writer(&mut bytes, r)?;
    }
    Ok(bytes)
}

/// A bundle, checked and resolved for this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// The bundle's view (sent ahead in the [`Head`]).
    pub view: View,
    /// The root is made read-only at the end.
    pub root_readonly: bool,
    /// Namespace kinds to create (`user`, `mount`, `pid`, ...).
    pub namespaces: Vec<String>,
    /// uid mappings of the user namespace.
    pub uid_map: Vec<IdMapping>,
    /// gid mappings of the user namespace.
    pub gid_map: Vec<IdMapping>,
    /// Whether `setgroups` stays allowed (root only; needed for supplementary groups).
    pub allow_setgroups: bool,
    /// Hostname in the UTS namespace.
    pub hostname: Option<String>,
    /// Domain name in the UTS namespace.
    pub domainname: Option<String>,
    /// The run's mounts after the bundle's: its sockets and binaries under the socket
    /// directory.
    pub extra_mounts: Vec<Mount>,
    /// The agent process.
    pub process: ProcessPlan,
    /// Landlock rules (absent for a plain OCI bundle).
    pub landlock: Option<Landlock>,
    /// Loopback bridges init runs.
    pub bridges: Vec<Bridge>,
    /// The compiled seccomp filter: BPF programs in installation order, 8 bytes per
    /// instruction, hex.
    pub seccomp: Vec<String>,
    /// Network mode of `omac.json` (`blocked`, `filtered`, `open`), if any.
    pub network_mode: Option<String>,
    /// Enforcement layers the bundle requires.
    pub require: Vec<String>,
    /// cgroup limits.
    pub resources: Option<Resources>,
    /// Host sockets by name (bound under the socket directory inside).
    pub sockets: Vec<(String, PathBuf)>,
    /// Published ports: the port inside and the host path of the socket init listens on.
    #[serde(default)]
    pub publish: Vec<(u16, PathBuf)>,
    /// The view used when user namespaces are unavailable.
    pub fallback: FallbackPlan,
}

/// The agent process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv (the bundle's, then the run's extra arguments).
    pub args: Vec<String>,
    /// Environment, `NAME=value`.
    pub env: Vec<String>,
    /// Working directory inside.
    pub cwd: String,
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// umask.
    pub umask: Option<u32>,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Resource limits: resource number, name, soft, hard.
    pub rlimits: Vec<(i32, String, u64, u64)>,
    /// oom_score_adj.
    pub oom_score_adj: Option<i32>,
}

/// How the run adapts when it must fall back to Landlock and seccomp on the host's view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FallbackPlan {
    /// Landlock rules for the host's view (tmpfs-only places and `/` dropped).
    pub rules: Vec<FsRule>,
    /// Protected paths that lie inside a grant: Landlock cannot hide them.
    pub unhidden: Vec<String>,
    /// Host paths of the sockets the bridges forward to, by path inside the sandbox.
    pub sockets: Vec<(String, PathBuf)>,
}

/// A report message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// Something the user should know.
    Warn {
        /// The warning.
        text: String,
    },
    /// A step, for `--verbose`.
    Debug {
        /// What happened.
        text: String,
    },
    /// A step failed; the run stops.
    Fail {
        /// The step.
        step: String,
        /// What happened.
        message: String,
        /// What to do.
        fix: String,
    },
    /// A layer's achieved status.
    Layer {
        /// `namespaces`, `landlock-fs`, ...
        name: String,
        /// The status.
        status: LayerStatus,
    },
    /// The kernel's Landlock ABI.
    Abi {
        /// The version (0: none).
        abi: u32,
    },
    /// User namespaces are unavailable; the run continues in the fallback.
    Fallback {
        /// Why.
        cause: String,
    },
    /// init is cloned, with this pid in the stage's pid namespace (the stage says so): at
    /// the end omac may reap init itself (see `parent::adopt`).
    Init {
        /// init's pid.
        pid: i32,
    },
    /// The agent ended.
    Exit {
        /// Its exit code, or 128+signal.
        code: i32,
        /// The signal that killed it.
        signal: Option<i32>,
    },
    /// The result of a probe (`omac doctor`).
    Probe {
        /// What was found.
        report: crate::probe::StageProbe,
    },
}

/// Messages this process keeps back (see [`Reporter::hold`]); None: each is sent at once.
static HELD: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// Writes report messages to a descriptor, one line each (short enough to be atomic), or
/// several lines in one write of at most `PIPE_BUF` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    fd: RawFd,
    verbose: bool,
    t0: u64,
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn now() -> u64 {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Reporter {
    /// A reporter writing to `fd`; debug lines tell the time since `t0`.
    pub fn new(fd: RawFd, verbose: bool, t0: u64) -> Reporter {
        Reporter { fd, verbose, t0 }
    }

    /// The descriptor it writes to.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Sends `msg` (errors are ignored: the reader may be gone), or keeps it for
    /// [`Reporter::release`] while this process holds its messages.
    pub fn send(&self, msg: &Msg) {
        if let Ok(mut line) = serde_json::to_vec(msg) {
            line.push(b'\n');
            let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
            match held.as_mut() {
                Some(buf) => {
                    // Each write stays one atomic pipe write (other processes write too).
                    if buf.len() + line.len() > libc::PIPE_BUF {
                        let _ = crate::sys::write_all(self.fd, buf);
                        buf.clear();
                    }
                    buf.extend_from_slice(&line);
                }
                None => {
                    let _ = crate::sys::write_all(self.fd, &line);
                }
            }
        }
    }

    /// From now on this process keeps its messages until [`Reporter::release`] (or a
    /// failure) sends them in one write. The agent does so until its exec: each write
    /// wakes omac's reader on another CPU, which costs the writer too.
    pub fn hold(&self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        held.get_or_insert_with(Vec::new);
    }

    /// Sends the messages held since [`Reporter::hold`], and stops holding.
    pub fn release(&self) {
        let buf = HELD.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(buf) = buf.filter(|b| !b.is_empty()) {
            let _ = crate::sys::write_all(self.fd, &buf);
        }
    }

    /// Sends a warning.
    pub fn warn(&self, text: impl Into<String>) {
        self.send(&Msg::Warn { text: text.into() });
    }

    /// Sends a debug line when verbose.
    pub fn debug(&self, text: impl FnOnce() -> String) {
        if self.verbose {
            let ms = now().saturating_sub(self.t0) as f64 / 1e6;
            self.send(&Msg::Debug {
                text: format!("[{ms:7.3} ms] {}", text()),
            });
        }
    }

    /// Sends a failure, after whatever this process held.
    pub fn fail(&self, step: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.send(&Msg::Fail {
            step: step.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
        self.release();
    }

    /// Sends a layer status.
    pub fn layer(&self, name: &str, status: LayerStatus) {
        self.send(&Msg::Layer {
            name: name.to_string(),
            status,
        });
    }
}

/// Encodes BPF programs for the plan.
pub fn encode_bpf(programs: &[Vec<seccomp_insn::Insn>]) -> Vec<String> {
    programs
        .iter()
        .map(|p| {
            let mut bytes = Vec::with_capacity(p.len() * 8);
            for i in p {
                bytes.extend_from_slice(&i.code.to_le_bytes());
                bytes.push(i.jt);
                bytes.push(i.jf);
                bytes.extend_from_slice(&i.k.to_le_bytes());
            }
            hex::encode(bytes)
        })
        .collect()
}

/// Decodes the programs of [`encode_bpf`].
pub fn decode_bpf(encoded: &[String]) -> Result<Vec<Vec<seccomp_insn::Insn>>, String> {
    encoded
        .iter()
        .map(|h| {
            let bytes = hex::decode(h).map_err(|e| e.to_string())?;
            if bytes.len() % 8 != 0 {
                return Err("truncated BPF program".to_string());
            }
            Ok(bytes
                .chunks_exact(8)
                .map(|c| seccomp_insn::Insn {
                    code: u16::from_le_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect())
        })
        .collect()
}

/// One classic BPF instruction, as the kernel reads it.
pub mod seccomp_insn {
    /// `struct sock_filter`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Insn {
        /// Opcode.
        pub code: u16,
        /// Jump if true.
        pub jt: u8,
        /// Jump if false.
        pub jf: u8,
        /// Operand.
        pub k: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccomp_insn::Insn;

    #[test]
    fn bpf_round_trips() {
        let p = vec![vec![
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            Insn {
                code: 0x06,
                jt: 1,
                jf: 2,
                k: 0x7fff_0000,
            },
        ]];
        assert_eq!(decode_bpf(&encode_bpf(&p)).unwrap(), p);
        assert!(decode_bpf(&["0011".to_string()]).is_err());
    }
}
