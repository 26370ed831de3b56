//! `omac.json`: what a bundle needs that OCI cannot say.
//!
//! Landlock rules, the network policy, the loopback bridges init runs, the facade, the
//! environment passed at run time, the protected paths and why, the skill layers and their
//! sidecar plan, and the enforcement the policy requires. `config.json` records the sha256
//! of this file in the [`ANNOTATION`] annotation, so neither file can be swapped alone.

use serde::{Deserialize, Serialize};

/// Version of the `omac.json` format; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The `config.json` annotation that holds `sha256:<hex>` of `omac.json`.
pub const ANNOTATION: &str = "org.omac.extension.digest";

/// The whole `omac.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Extension {
    /// Format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The profile the bundle was made from.
    pub profile: ProfileInfo,
    /// Canonical name of the harness the bundle runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// The work directory and how it is granted.
    pub workdir: WorkdirInfo,
    /// Landlock rules applied to the agent.
    pub landlock: Landlock,
    /// Network mode and domain policy.
    pub network: NetworkPolicy,
    /// Loopback TCP listeners that init forwards to Unix sockets.
    #[serde(default)]
    pub bridges: Vec<Bridge>,
    /// The facade: where its socket appears and which mounts route to which skill.
    pub facade: Facade,
    /// Host environment variables passed at run time (names and patterns, never values).
    pub environment: EnvironmentPolicy,
    /// Paths masked inside the sandbox, and the rule behind each.
    #[serde(default)]
    pub protected: Vec<Protected>,
    /// Skill layers the session uses.
    #[serde(default)]
    pub skills: Vec<SkillLayer>,
    /// Sidecars to start on the host before the agent runs.
    #[serde(default)]
    pub sidecars: Vec<Sidecar>,
    /// Enforcement layers the run requires.
    pub enforcement: Enforcement,
}

impl Extension {
    /// The first name given twice where each must name one thing: a skill layer, a
    /// sidecar's skill or mount, a facade mount, a bridge's name or address. Returns the
    /// field and the repeated value. Two layers of one name would leave the runtime to pick
    /// one, and a review (`omac bundle diff`) to report changes that are not there.
    pub fn duplicate(&self) -> Option<(&'static str, String)> {
        fn first_repeat<'a>(
            field: &'static str,
            values: impl Iterator<Item = &'a String>,
        ) -> Option<(&'static str, String)> {
            let mut seen = std::collections::BTreeSet::new();
            values
                .into_iter()
                .find(|v| !seen.insert(*v))
                .map(|v| (field, v.clone()))
        }
        first_repeat("skills[].name", self.skills.iter().map(|l| &l.name))
            .or_else(|| first_repeat("sidecars[].skill", self.sidecars.iter().map(|s| &s.skill)))
            .or_else(|| first_repeat("sidecars[].mount", self.sidecars.iter().map(|s| &s.mount)))
            .or_else(|| {
                first_repeat(
                    "facade.mounts[].mount",
                    self.facade.mounts.iter().map(|m| &m.mount),
                )
            })
            .or_else(|| first_repeat("bridges[].name", self.bridges.iter().map(|b| &b.name)))
            .or_else(|| first_repeat("bridges[].listen", self.bridges.iter().map(|b| &b.listen)))
    }
}

/// `profile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileInfo {
    /// The profile's name.
    pub name: String,
    /// The files it was resolved from, child first (`builtin:NAME` for embedded ones).
    pub sources: Vec<String>,
}

/// `workdir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdirInfo {
    /// Absolute host path, identical inside the sandbox.
    pub path: String,
    /// `none`, `read`, `write` or `readwrite`.
    pub access: String,
}

/// `landlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Landlock {
    /// Lowest Landlock ABI that provides what the policy needs.
    pub min_abi: u32,
    /// If true, a kernel below `minAbi` stops the run; otherwise it is reported.
    pub required: bool,
    /// Filesystem rules: rights beneath each path (paths as seen inside the sandbox).
    pub fs: Vec<FsRule>,
    /// TCP port rules; a `None` list leaves that operation unrestricted.
    pub net: NetRules,
    /// IPC scopes (`abstract_unix_socket`, `signal`).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// One Landlock filesystem rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FsRule {
    /// Path inside the sandbox.
    pub path: String,
    /// Rights granted beneath it (`read_file`, `write_file`, `execute`, ...).
    pub access: Vec<String>,
}

/// Landlock TCP rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetRules {
    /// Ports the agent may bind; absent means unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_tcp: Option<Vec<u16>>,
    /// Ports the agent may connect to; absent means unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_tcp: Option<Vec<u16>>,
}

/// `network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    /// `blocked`, `filtered` or `open`.
    pub mode: String,
    /// `kernel` or `env-only`.
    pub enforcement: String,
    /// Domains allowed through the proxy.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Domains refused by the proxy (deny beats allow).
    #[serde(default)]
    pub deny_domains: Vec<String>,
    /// Ports the agent may listen on.
    #[serde(default)]
    pub listen_ports: Vec<u16>,
    /// Ports the agent may connect to directly on any host.
    #[serde(default)]
    pub allow_tcp_connect: Vec<u16>,
    /// Host loopback ports the agent may reach.
    #[serde(default)]
    pub open_ports: Vec<u16>,
    /// Ports a server inside listens on, published on the host's `127.0.0.1` (init relays
    /// each connection the host side accepts to the port inside the network namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_ports: Vec<u16>,
    /// The prompt for undecided hosts.
    pub prompt: Prompt,
    /// Corporate proxy to chain through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// Hosts reached directly rather than through the upstream proxy.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Extra proxy settings injected (`jvm`, `node`).
    #[serde(default)]
    pub proxy_injection: Vec<String>,
    /// Private ranges (CIDR) the proxy may connect to; other private addresses are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
}

/// `network.prompt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prompt {
    /// Whether undecided hosts are asked about.
    pub enabled: bool,
    /// Seconds a dialog waits before the request is denied.
    pub timeout_secs: u32,
    /// `deny` or `allow` when no dialog can be shown.
    pub on_unavailable: String,
}

/// A loopback listener inside the sandbox forwarding to a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bridge {
    /// What it is for (`facade`, `egress`).
    pub name: String,
    /// `127.0.0.1:PORT` inside the sandbox's network namespace.
    pub listen: String,
    /// The Unix socket (path inside the sandbox) each connection is forwarded to.
    pub socket: String,
}

/// `facade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Facade {
    /// Directory inside the sandbox where omac's sockets appear.
    pub socket_dir: String,
    /// The facade socket inside the sandbox.
    pub socket: String,
    /// The egress proxy socket inside the sandbox (filtered mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_socket: Option<String>,
    /// URL mounts and the skill each routes to.
    #[serde(default)]
    pub mounts: Vec<FacadeMount>,
}

/// One facade route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FacadeMount {
    /// The first path segment (`/echo/...`).
    pub mount: String,
    /// The skill serving it.
    pub skill: String,
}

/// `environment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentPolicy {
    /// Host variables copied at run time: names, `PREFIX*`, or `*`.
    pub passthrough: Vec<String>,
    /// Variables never copied, whatever `passthrough` says (code injection vectors).
    pub blocked: Vec<String>,
    /// Variables removed last, including ones `config.json` sets.
    pub deny: Vec<String>,
}

/// A masked path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Protected {
    /// The path, identical on the host and inside.
    pub path: String,
    /// `baseline` (omac's list), `profile` (`filesystem.deny`) or `env-file` (`.env`-like).
    pub rule: String,
}

/// A skill as an OCI layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillLayer {
    /// Skill name.
    pub name: String,
    /// `sha256:<hex>` of the skill's reproducible tar.
    pub digest: String,
    /// The skill directory it was made from.
    pub source: String,
}

/// How to start one skill's sidecar on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Skill name.
    pub skill: String,
    /// Facade mount routed to it.
    pub mount: String,
    /// argv, run from the skill's layer in the store.
    pub command: Vec<String>,
    /// Health probe.
    pub health: Health,
    /// Names of host variables passed to it (values are read at run time).
    #[serde(default)]
    pub env: Vec<String>,
    /// Names of the secrets injected (values come from the keychain at run time).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Names of the config fields injected.
    #[serde(default)]
    pub config: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Idle timeout of a route connection, in seconds.
    pub idle_timeout_secs: u64,
}

/// A sidecar's health probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// Path probed with GET.
    pub path: String,
    /// Delay before the first probe.
    pub initial_delay_ms: u64,
    /// Time between probes.
    pub interval_ms: u64,
    /// Give up after this long.
    pub timeout_ms: u64,
}

/// `enforcement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enforcement {
    /// Layers that must be present for the run to start (see [`LAYERS`]).
    pub require: Vec<String>,
}

/// Enforcement layers a profile can require, with what each means.
pub const LAYERS: &[(&str, &str)] = &[
    (
        "namespaces",
        "user, mount, pid, ipc and uts namespaces (and net unless the network is open)",
    ),
    (
        "landlock-fs",
        "Landlock filesystem rules at the bundle's minimum ABI",
    ),
    ("landlock-net", "Landlock TCP port rules (ABI 4)"),
    ("seccomp", "the syscall filter"),
    (
        "cgroups",
        "memory, pids and cpu limits through a delegated cgroup v2",
    ),
];

/// The layers required when a profile does not say: the full sandbox, no fallback.
pub const DEFAULT_REQUIRE: &[&str] = &["namespaces", "landlock-fs", "seccomp"];
