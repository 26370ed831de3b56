//! What a run achieved: the agent's exit status and, per enforcement layer, how completely
//! the host enforced it (for `--verbose` and the audit record).

use serde::{Deserialize, Serialize};

/// How completely a layer is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything the bundle asks for.
    Full,
    /// Some of it (the detail says what is missing).
    Partial,
    /// Not at all.
    None,
}

/// One layer's achieved status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStatus {
    /// How completely.
    pub level: Level,
    /// What was applied, or what is missing and why.
    pub detail: String,
}

impl LayerStatus {
    /// A layer with `level` and `detail`.
    pub fn new(level: Level, detail: impl Into<String>) -> LayerStatus {
        LayerStatus {
            level,
            detail: detail.into(),
        }
    }

    /// A layer that was not applied, with the reason.
    pub fn none(detail: impl Into<String>) -> LayerStatus {
        LayerStatus::new(Level::None, detail)
    }
}

/// How the sandbox was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Namespaces, the bundle's mounts, Landlock and seccomp.
    Namespaced,
    /// No user namespace available: Landlock and seccomp only, on the host's view.
    Fallback,
}

/// The enforcement achieved by a run, layer by layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// How the sandbox was built.
    pub mode: Mode,
    /// User, mount, pid, ipc, uts, net and cgroup namespaces.
    pub namespaces: LayerStatus,
    /// Landlock filesystem rules.
    pub landlock_fs: LayerStatus,
    /// Landlock TCP port rules.
    pub landlock_net: LayerStatus,
    /// Landlock IPC scopes (abstract Unix sockets, signals).
    pub landlock_scopes: LayerStatus,
    /// The Landlock ABI of the kernel (0: no Landlock).
    pub landlock_abi: u32,
    /// The syscall filter.
    pub seccomp: LayerStatus,
    /// Memory, pids and cpu limits through cgroup v2.
    pub cgroups: LayerStatus,
}

impl Default for Enforcement {
    fn default() -> Enforcement {
        let unknown = || LayerStatus::none("not reported");
        Enforcement {
            mode: Mode::Namespaced,
            namespaces: unknown(),
            landlock_fs: unknown(),
            landlock_net: unknown(),
            landlock_scopes: unknown(),
            landlock_abi: 0,
            seccomp: unknown(),
            cgroups: unknown(),
        }
    }
}

impl Enforcement {
    /// The layers with their names, in the order omac reports them.
    pub fn layers(&self) -> [(&'static str, &LayerStatus); 6] {
        [
            ("namespaces", &self.namespaces),
            ("landlock-fs", &self.landlock_fs),
            ("landlock-net", &self.landlock_net),
            ("landlock-scopes", &self.landlock_scopes),
            ("seccomp", &self.seccomp),
            ("cgroups", &self.cgroups),
        ]
    }

    pub(crate) fn set(&mut self, layer: &str, status: LayerStatus) {
        match layer {
            "namespaces" => self.namespaces = status,
            "landlock-fs" => self.landlock_fs = status,
            "landlock-net" => self.landlock_net = status,
            "landlock-scopes" => self.landlock_scopes = status,
            "seccomp" => self.seccomp = status,
            "cgroups" => self.cgroups = status,
            _ => {}
        }
    }
}

/// The result of a run whose agent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The exit code to pass on: the agent's code, or 128+signal when a signal killed it.
    pub exit_code: i32,
    /// The signal that killed the agent, if one did.
    pub signal: Option<i32>,
    /// The enforcement achieved.
    pub enforcement: Enforcement,
    /// Warnings printed during the run.
    pub warnings: Vec<String>,
}
