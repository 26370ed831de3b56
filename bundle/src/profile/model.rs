//! The profile file format: every field the Go omac's policy profiles have, plus omac's
//! additions (`extends`, `seccomp`, `resources`, `devices`, `enforcement`).
//!
//! Scalars are `Option`s so that a child profile overrides only what it sets; lists are
//! merged parent-first (see `merge.rs`). Unknown fields are refused.

use serde::{Deserialize, Serialize};

/// One profile file, as written (before `extends` is resolved).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A parent profile, by name or path, whose settings this one extends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Informational data about the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// How the agent sees its work directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<Workdir>,
    /// Host paths granted, denied and protected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// Network mode and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Which host environment variables reach the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// How refusals are explained to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// Changes to the default syscall policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<Seccomp>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Host device nodes made available (opt-in), such as a GPU's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Which enforcement layers must be present for the run to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
}

/// `meta`: informational only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The profile's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A sentence on what the profile is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `workdir`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workdir {
    /// `none`, `read`, `write` or `readwrite` (empty means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// `filesystem`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Paths granted read and write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Paths granted read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Paths granted write-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Directories whose Unix sockets the agent may connect to (granted read-write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_unix_dir: Vec<String>,
    /// Exact paths (with a `/`, `~` or `$`) or basename globs to hide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Entries removed from the built-in protected list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_deny: Vec<String>,
}

/// `network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `filtered` (default), `blocked` or `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Domains allowed through the proxy: exact hosts or `*.suffix`, optional `:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_domain: Vec<String>,
    /// Domains refused by the proxy, same grammar; deny beats allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_domain: Vec<String>,
    /// TCP ports the agent may listen on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen_port: Vec<i64>,
    /// TCP ports the agent may connect to directly, on any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tcp_connect: Vec<i64>,
    /// Host loopback ports the agent may reach (0: any loopback port, macOS only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_port: Vec<i64>,
    /// TCP ports a server inside listens on that the host reaches at `127.0.0.1:PORT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_port: Vec<i64>,
    /// The interactive prompt for hosts no rule decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_prompt: Option<NetworkPrompt>,
    /// `kernel` (default) or `env-only` (proxy variables only, advisory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<String>,
    /// A corporate proxy to chain through (`http://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// Hosts reached directly rather than through `upstream_proxy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
    /// Extra proxy settings for clients that ignore the variables: `jvm`, `node`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_injection: Vec<String>,
    /// Private address ranges (`10.1.0.0/16`, `fd12::/16`) the egress proxy may connect to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
}

/// `network.network_prompt`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPrompt {
    /// Whether to ask (true when the object is present and this is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long a dialog waits before denying (0 means 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_timeout_secs: Option<i64>,
    /// `deny` (default) or `allow` when no dialog can be shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unavailable: Option<String>,
}

/// `environment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Variables passed through: exact names, `PREFIX*`, or `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_vars: Vec<String>,
    /// Variables removed last, same syntax; wins over everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_vars: Vec<String>,
}

/// `denial`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// Text of the marker file shown in place of a protected file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_file: Option<String>,
    /// Name of the marker placed in protected directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_dir_name: Option<String>,
    /// Note the facade adds to its answers about denied paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facade_note: Option<String>,
}

/// `seccomp`: edits on the default syscall policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seccomp {
    /// Groups (`@name`) or syscall names whose default rules are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lift: Vec<String>,
    /// Groups (`@name`), syscall names, or `name:ERRNO` refused in addition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// `resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit: bytes, or a number with K, M, G or T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_json::Value>,
    /// Maximum number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// CPU time, in CPUs (1.5 = one and a half cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Maximum open files per process (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<i64>,
}

/// `enforcement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enforcement {
    /// Layers that must be present for the run to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Vec<String>>,
}
