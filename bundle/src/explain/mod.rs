//! `omac bundle explain`: what a bundle lets the agent read, write, execute, reach and call,
//! as data ([`Explanation`]) and in plain words ([`text::render`]).
//!
//! It reads `config.json` alone for a plain OCI bundle and adds what `omac.json` says
//! (Landlock, the network policy, the environment passed at run time, skills, the required
//! enforcement) for an omac bundle. The JSON form (`--json`) is the [`Explanation`]
//! serialized with sorted keys; its layout is versioned by [`FORMAT`] and documented field
//! by field below. Paths are always those seen inside the sandbox.

mod build;
pub mod text;

pub use build::{explain, rule_meaning};

use serde::Serialize;

use crate::ext::{self, Bridge, Facade, NetRules, NetworkPolicy, Sidecar, SkillLayer};
use crate::oci::{Capabilities, IdMapping, Rlimit};

/// Version of the explanation's JSON layout; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

/// Namespaces a sandbox is expected to create; the ones missing are reported.
pub const EXPECTED_NAMESPACES: &[&str] =
    &["user", "mount", "pid", "ipc", "uts", "network", "cgroup"];

/// Device nodes every OCI runtime supplies by itself ("default devices" of the spec).
pub const RUNTIME_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// Everything `explain` says about one bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// [`FORMAT`].
    pub format: u32,
    /// What the bundle is and what it runs.
    pub bundle: BundleInfo,
    /// The filesystem view.
    pub filesystem: FilesystemView,
    /// Network reach.
    pub network: NetworkView,
    /// The syscall filter.
    pub syscalls: SyscallView,
    /// The environment.
    pub environment: EnvironmentView,
    /// Skill layers, sidecars and the facade.
    pub skills: SkillsView,
    /// Namespaces, ids, capabilities and limits.
    pub isolation: IsolationView,
    /// The enforcement the bundle requires.
    pub enforcement: EnforcementView,
    /// Things a reviewer should notice (weak spots, missing layers).
    pub notes: Vec<String>,
}

/// `bundle`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleInfo {
    /// The bundle directory as given.
    pub dir: String,
    /// `omac` (with `omac.json`) or `oci` (config.json alone).
    pub kind: String,
    /// `ociVersion` of config.json.
    pub oci_version: String,
    /// The profile the bundle was made from (omac bundles).
    pub profile: Option<ext::ProfileInfo>,
    /// The harness (omac bundles).
    pub harness: Option<String>,
    /// argv of the process.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: String,
    /// uid it runs as (inside).
    pub uid: u32,
    /// gid it runs as (inside).
    pub gid: u32,
    /// Whether it gets a terminal.
    pub terminal: bool,
    /// Hostname inside.
    pub hostname: Option<String>,
}

/// One host path visible inside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathGrant {
    /// Path inside the sandbox.
    pub path: String,
    /// Host path, when it is not the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// An empty filesystem made for the sandbox (tmpfs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scratch {
    /// Where it appears.
    pub path: String,
    /// Size limit (`size=` option), if any.
    pub size: Option<String>,
    /// Whether programs may run from it.
    pub exec: bool,
    /// Whether the agent may write there.
    pub writable: bool,
    /// What it is for, when known.
    pub purpose: Option<String>,
}

/// A masked path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hidden {
    /// The path.
    pub path: String,
    /// `baseline`, `profile`, `env-file` (from omac.json), `kernel` or `config`.
    pub rule: String,
    /// The rule in words.
    pub why: String,
}

/// A device node available inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    /// Path inside.
    pub path: String,
    /// `runtime` (a default device), `bind` (the host's node) or `node` (created).
    pub how: String,
}

/// A kernel filesystem mounted inside (proc, devpts, sysfs, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Special {
    /// Where.
    pub path: String,
    /// Filesystem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// `filesystem`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemView {
    /// The root directory (relative to the bundle) and whether it is read-only.
    pub root: String,
    /// Whether the root is read-only.
    pub root_readonly: bool,
    /// The work directory and its access (`none`, `read`, `write`, `readwrite`).
    pub workdir: Option<ext::WorkdirInfo>,
    /// Host paths readable but not writable.
    pub read_only: Vec<PathGrant>,
    /// Host paths readable and writable.
    pub read_write: Vec<PathGrant>,
    /// Host paths writable but not readable.
    pub write_only: Vec<PathGrant>,
    /// Host paths mounted but neither readable nor writable (Landlock grants nothing there).
    pub unusable: Vec<PathGrant>,
    /// Paths programs may be executed from (host paths and scratch).
    pub execute: Vec<String>,
    /// Empty filesystems made for the sandbox.
    pub scratch: Vec<Scratch>,
    /// Masked paths.
    pub hidden: Vec<Hidden>,
    /// Kernel paths made read-only.
    pub readonly_kernel: Vec<String>,
    /// Device nodes.
    pub devices: Vec<DeviceView>,
    /// Kernel filesystems.
    pub special: Vec<Special>,
}

/// `network`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    /// `own` (a new, empty network namespace), `host`, or `joined` (an existing one).
    pub namespace: String,
    /// The joined namespace's path.
    pub namespace_path: Option<String>,
    /// omac's network policy (omac bundles).
    pub policy: Option<NetworkPolicy>,
    /// Loopback listeners forwarded to omac's sockets.
    pub bridges: Vec<Bridge>,
    /// Landlock TCP rules (omac bundles).
    pub landlock_tcp: Option<NetRules>,
}

/// A group of omac's syscall policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// Group name (`io_uring`, `namespaces`, ...).
    pub name: String,
    /// What it refuses, in words.
    pub description: String,
    /// Whether every rule of the group is in the filter.
    pub complete: bool,
    /// The syscalls of the group the filter refuses.
    pub refused: Vec<String>,
}

/// `syscalls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallView {
    /// Whether there is a filter at all.
    pub filtered: bool,
    /// The action for syscalls no rule matches.
    pub default_action: Option<String>,
    /// Entry points admitted (`SCMP_ARCH_X86_64`, ...).
    pub architectures: Vec<String>,
    /// Groups of omac's policy the filter refuses (wholly or in part).
    pub groups: Vec<GroupView>,
    /// Groups of omac's policy the filter does not refuse at all.
    pub not_refused: Vec<GroupView>,
    /// Refusing rules that belong to no group: `name -> ERRNO`.
    pub other: Vec<String>,
}

/// `environment`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    /// `NAME=value` set by config.json.
    pub fixed: Vec<String>,
    /// Host variables copied at run time (omac bundles): names, `PREFIX*`, `*`.
    pub passthrough: Vec<String>,
    /// Host variables never copied (omac bundles).
    pub blocked: Vec<String>,
    /// Variables removed last (omac bundles).
    pub removed: Vec<String>,
}

/// `skills`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillsView {
    /// Skill layers.
    pub layers: Vec<SkillLayer>,
    /// Sidecars started on the host.
    pub sidecars: Vec<Sidecar>,
    /// The facade (omac bundles).
    pub facade: Option<Facade>,
}

/// `isolation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationView {
    /// Namespaces created (or joined, with `path`).
    pub namespaces: Vec<crate::oci::Namespace>,
    /// Of [`EXPECTED_NAMESPACES`], those not created.
    pub missing_namespaces: Vec<String>,
    /// uid mappings of the user namespace.
    pub uid_mappings: Vec<IdMapping>,
    /// gid mappings of the user namespace.
    pub gid_mappings: Vec<IdMapping>,
    /// Capability sets; `None` when config.json leaves them to the runtime.
    pub capabilities: Option<Capabilities>,
    /// Whether no_new_privs is set.
    pub no_new_privileges: bool,
    /// Resource limits (setrlimit).
    pub rlimits: Vec<Rlimit>,
    /// Memory limit in bytes (cgroup).
    pub memory_limit: Option<i64>,
    /// Process/thread limit (cgroup).
    pub pids_limit: Option<i64>,
    /// CPU limit in CPUs (cgroup quota / period).
    pub cpu_limit: Option<f64>,
    /// sysctls set inside.
    pub sysctl: Vec<String>,
}

/// `enforcement`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementView {
    /// Layers that must be present for the run to start, with their meaning.
    pub required: Vec<LayerView>,
    /// Landlock settings (omac bundles).
    pub landlock: Option<LandlockView>,
}

/// One required layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerView {
    /// Layer name.
    pub layer: String,
    /// What it means.
    pub meaning: String,
}

/// Landlock in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LandlockView {
    /// Lowest ABI the rules need.
    pub min_abi: u32,
    /// Whether a kernel below it stops the run.
    pub required: bool,
    /// Number of filesystem rules.
    pub fs_rules: usize,
    /// IPC scopes.
    pub scopes: Vec<String>,
}

/// The explanation as canonical JSON (sorted keys, final newline).
pub fn to_json(x: &Explanation) -> Vec<u8> {
    crate::render::canonical_json(x)
}
