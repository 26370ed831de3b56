//! What the session code hands the supervisor for each sidecar (mapped from omac.yaml, the
//! skill config and the keychain).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::Secret;

/// The host variables every sidecar gets (the Go omac's `facade.base_env_passthrough`).
pub const DEFAULT_BASE_ENV_PASSTHROUGH: [&str; 7] = [
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR",
];

/// One sidecar to run.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    /// The skill's plain name (`SIDECAR_SKILL`, the log file's name).
    pub skill: String,
    /// The route it serves.
    pub mount: String,
    /// The directory it runs in (the skill's layer in the store).
    pub dir: PathBuf,
    /// `sidecar.command`; `${SIDECAR_PORT}` and `$SIDECAR_PORT` are expanded, any other
    /// `${VAR}` becomes empty (as the Go omac); a relative program path is taken in `dir`.
    pub command: Vec<String>,
    /// Host variables passed when set (`facade.base_env_passthrough`).
    pub base_env_passthrough: Vec<String>,
    /// The skill's `sidecar.env_passthrough` (passed when present, even empty).
    pub env_passthrough: Vec<String>,
    /// The session's work directory (`OMAC_WORKDIR`).
    pub workdir: PathBuf,
    /// `OMAC_HARNESS_SKILLS_DIR`, when known.
    pub harness_skills_dir: Option<String>,
    /// Config fields, name and canonical value.
    pub config: Vec<(String, String)>,
    /// Secrets, name and value; they win over everything else.
    pub secrets: Vec<(String, Secret)>,
    /// The health probe.
    pub health: HealthSpec,
    /// What happens when it dies.
    pub restart: RestartPolicy,
}

impl SidecarSpec {
    /// A spec with the default passthrough, health probe and restart policy.
    pub fn new(
        skill: impl Into<String>,
        mount: impl Into<String>,
        dir: impl Into<PathBuf>,
        command: Vec<String>,
        workdir: impl Into<PathBuf>,
    ) -> SidecarSpec {
        SidecarSpec {
            skill: skill.into(),
            mount: mount.into(),
            dir: dir.into(),
            command,
            base_env_passthrough: DEFAULT_BASE_ENV_PASSTHROUGH
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env_passthrough: Vec::new(),
            workdir: workdir.into(),
            harness_skills_dir: None,
            config: Vec::new(),
            secrets: Vec::new(),
            health: HealthSpec::default(),
            restart: RestartPolicy::default(),
        }
    }
}

/// `sidecar.health` of omac.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// Path probed with GET (a 2xx answer means healthy).
    pub path: String,
    /// Added to the deadline (probing starts at once; see the supervisor's schedule).
    pub initial_delay: Duration,
    /// Longest time between the starts of two probes (early probes come sooner).
    pub interval: Duration,
    /// Give up this long after the initial delay.
    pub timeout: Duration,
}

impl Default for HealthSpec {
    /// The Go omac's defaults: `/status`, 200 ms, 500 ms, 5000 ms.
    fn default() -> Self {
        HealthSpec {
            path: "/status".into(),
            initial_delay: Duration::from_millis(200),
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(5000),
        }
    }
}

/// How a sidecar that died is restarted: exponential backoff with a cap and jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// Whether it is restarted at all.
    pub enabled: bool,
    /// Delay before the first restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Random spread applied to each delay (0.2 = +-20 %).
    pub jitter: f64,
    /// A sidecar healthy this long has its backoff reset.
    pub reset_after: Duration,
    /// Give up after this many restarts in a row (none: never).
    pub max_restarts: Option<u32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            enabled: true,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            jitter: 0.2,
            reset_after: Duration::from_secs(60),
            max_restarts: None,
        }
    }
}

/// The supervisor's own settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Where `<skill>.log` files go (created 0700).
    pub log_dir: PathBuf,
    /// A sidecar log is rotated when it would grow past this size.
    pub log_max_bytes: u64,
    /// Rotated logs kept (`<skill>.log.1` ... `.N`).
    pub log_keep: u32,
    /// The command that runs the keeper (`omac __sidecar-keeper`): each sidecar runs under a
    /// small keeper process that kills its process group when omac dies, even by SIGKILL.
    pub keeper: Vec<OsString>,
    /// SIGTERM to the sidecar's group, this long, then SIGKILL.
    pub stop_grace: Duration,
}

impl SupervisorConfig {
    /// Defaults: 10 MiB logs, 3 kept, 5 s grace, the keeper being this very executable.
    pub fn new(log_dir: impl Into<PathBuf>) -> SupervisorConfig {
        let exe = std::env::current_exe()
            .map(OsString::from)
            .unwrap_or_else(|_| OsString::from("omac"));
        SupervisorConfig {
            log_dir: log_dir.into(),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
            keeper: vec![exe, OsString::from(crate::keeper::SUBCOMMAND)],
            stop_grace: Duration::from_secs(5),
        }
    }
}
