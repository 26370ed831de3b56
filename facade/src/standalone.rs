//! The facade run on its own from a JSON file (`omac __facade --config FILE`, or the
//! crate's `omac-facade serve --config FILE`): for tests, benchmarks and debugging. The
//! session code calls the library directly instead.
//!
//! ```json
//! {
//!   "socket": "/tmp/omac-x/bridge.sock",
//!   "tcp": {"port": 0},
//!   "access_log": "/tmp/omac-x/logs/facade.log",
//!   "routes": [{"mount": "static", "port": 8080}],
//!   "sidecars": [{"skill": "echo-rest", "mount": "echo", "dir": "skills/examples/echo-rest",
//!                 "command": ["python3", "scripts/sidecar.py"],
//!                 "secrets_from_env": {"ECHO_API_KEY": "MY_KEY"}}]
//! }
//! ```
//! Optional: `workers` (threads), `fast_path` (false: every request through hyper, for
//! comparisons), `allowed_uids`, `header_read_timeout_ms`, `max_connections`, `log_dir`,
//! `workdir`, `keeper`, `stop_grace_ms`.
//! Once everything listens, one JSON line goes to stdout:
//! `{"ready":true,"socket":...,"tcp":"127.0.0.1:PORT"|null,"token":...|null,"pid":N}`.
//! SIGTERM or SIGINT shut it down gracefully.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{
    Error, FacadeConfig, HealthSpec, RestartPolicy, RouteConfig, RouteState, RouteTable, Secret,
    SidecarSpec, Supervisor, SupervisorConfig, TcpConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    socket: PathBuf,
    #[serde(default)]
    tcp: Option<FileTcp>,
    #[serde(default)]
    allowed_uids: Vec<u32>,
    #[serde(default)]
    access_log: Option<PathBuf>,
    #[serde(default)]
    header_read_timeout_ms: Option<u64>,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    workers: Option<usize>,
    #[serde(default)]
    fast_path: Option<bool>,
    #[serde(default)]
    log_dir: Option<PathBuf>,
    #[serde(default)]
    workdir: Option<PathBuf>,
    #[serde(default)]
    keeper: Option<Vec<String>>,
    #[serde(default)]
    stop_grace_ms: Option<u64>,
    #[serde(default)]
    routes: Vec<FileRoute>,
    #[serde(default)]
    sidecars: Vec<FileSidecar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTcp {
    #[serde(default)]
    port: u16,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    mount: String,
    port: u16,
    #[serde(default)]
    skill_dir: Option<PathBuf>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSidecar {
    skill: String,
    #[serde(default)]
    mount: Option<String>,
    dir: PathBuf,
    command: Vec<String>,
    #[serde(default)]
    base_env_passthrough: Option<Vec<String>>,
    #[serde(default)]
    env_passthrough: Vec<String>,
    #[serde(default)]
    harness_skills_dir: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Secret name -> the variable of this process's environment holding its value.
    #[serde(default)]
    secrets_from_env: BTreeMap<String, String>,
    #[serde(default)]
    health: Option<FileHealth>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    restart: Option<FileRestart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    initial_delay_ms: Option<u64>,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRestart {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    initial_ms: Option<u64>,
    #[serde(default)]
    max_ms: Option<u64>,
    #[serde(default)]
    jitter: Option<f64>,
    #[serde(default)]
    max_restarts: Option<u32>,
}

/// Everything the JSON file describes, ready to start.
struct Plan {
    facade: FacadeConfig,
    routes: Vec<RouteConfig>,
    supervisor: SupervisorConfig,
    sidecars: Vec<SidecarSpec>,
}

fn ms(v: Option<u64>, default: Duration) -> Duration {
    v.map(Duration::from_millis).unwrap_or(default)
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn plan(path: &Path) -> Result<Plan, Error> {
    let path = &std::path::absolute(path)
        .map_err(|e| Error::io("resolving the facade config path", path, e))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("reading the facade config", path, e))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let file: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        Error::config(
            format!("{}: {}", path.display(), e.path()),
            e.inner().to_string(),
            "correct or remove that field (the format is described in facade/src/standalone.rs)",
        )
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let socket = absolute(&base, &file.socket);
    let mut facade = FacadeConfig::new(&socket);
    facade.tcp = file.tcp.map(|t| TcpConfig {
        port: t.port,
        token: t.token,
    });
    facade.allowed_uids = file.allowed_uids;
    facade.access_log = file.access_log.map(|p| absolute(&base, &p));
    facade.header_read_timeout = ms(file.header_read_timeout_ms, facade.header_read_timeout);
    facade.max_connections = file.max_connections.unwrap_or(facade.max_connections);
    if let Some(n) = file.workers.filter(|n| *n > 0) {
        facade.workers = n;
    }
    if let Some(f) = file.fast_path {
        facade.fast_path = f;
    }

    let log_dir = match file.log_dir {
        Some(d) => absolute(&base, &d),
        None => socket
            .parent()
            .map(|d| d.join("logs"))
            .unwrap_or_else(|| PathBuf::from("logs")),
    };
    let mut supervisor = SupervisorConfig::new(log_dir);
    if let Some(k) = file.keeper.filter(|k| !k.is_empty()) {
        supervisor.keeper = k.into_iter().map(Into::into).collect();
    }
    supervisor.stop_grace = ms(file.stop_grace_ms, supervisor.stop_grace);
    let workdir = match file.workdir {
        Some(w) => absolute(&base, &w),
        None => std::env::current_dir()
            .map_err(|e| Error::io("reading the current directory", ".", e))?,
    };

    let mut routes = Vec::new();
    for r in file.routes {
        let mut rc = RouteConfig::new(&r.mount, &r.mount);
        rc.skill_dir = r.skill_dir.map(|d| absolute(&base, &d));
        rc.max_body_bytes = r.max_body_bytes.unwrap_or(rc.max_body_bytes);
        rc.idle_timeout = ms(r.idle_timeout_ms, rc.idle_timeout);
        rc.state = RouteState::Ready { port: r.port };
        routes.push(rc);
    }
    let mut sidecars = Vec::new();
    for s in file.sidecars {
        let mount = s.mount.clone().unwrap_or_else(|| s.skill.clone());
        let dir = absolute(&base, &s.dir);
        let mut spec = SidecarSpec::new(&s.skill, &mount, &dir, s.command, &workdir);
        if let Some(b) = s.base_env_passthrough {
            spec.base_env_passthrough = b;
        }
        spec.env_passthrough = s.env_passthrough;
        spec.harness_skills_dir = s.harness_skills_dir;
        spec.config = s.config.into_iter().collect();
        for (name, var) in s.secrets_from_env {
            let value = std::env::var(&var).map_err(|_| {
                Error::config(
                    format!("sidecars[{}].secrets_from_env.{name}", s.skill),
                    format!("the environment variable {var} is not set"),
                    format!("export {var} before starting the facade"),
                )
            })?;
            spec.secrets.push((name, Secret::new(value)));
        }
        if let Some(h) = s.health {
            let d = HealthSpec::default();
            spec.health = HealthSpec {
                path: h.path.unwrap_or(d.path),
                initial_delay: ms(h.initial_delay_ms, d.initial_delay),
                interval: ms(h.interval_ms, d.interval),
                timeout: ms(h.timeout_ms, d.timeout),
            };
        }
        if let Some(r) = s.restart {
            let d = RestartPolicy::default();
            spec.restart = RestartPolicy {
                enabled: r.enabled.unwrap_or(d.enabled),
                initial: ms(r.initial_ms, d.initial),
                max: ms(r.max_ms, d.max),
                jitter: r.jitter.unwrap_or(d.jitter),
                max_restarts: r.max_restarts.or(d.max_restarts),
                ..d
            };
        }
        let mut rc = RouteConfig::new(&mount, &s.skill);
        rc.skill_dir = Some(dir);
        rc.max_body_bytes = s.max_body_bytes.unwrap_or(rc.max_body_bytes);
        rc.idle_timeout = ms(s.idle_timeout_ms, rc.idle_timeout);
        routes.push(rc);
        sidecars.push(spec);
    }
    Ok(Plan {
        facade,
        routes,
        supervisor,
        sidecars,
    })
}

/// Runs the facade and its sidecars from the JSON file at `config` until SIGTERM or SIGINT;
/// returns the process exit code (0, 3 config invalid, 5 I/O, 6 sidecar health).
pub fn run(config: &Path) -> i32 {
    let plan = match plan(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("omac: {e}");
            return e.exit_code();
        }
    };
    // The facade runs on its own worker threads; this runtime only supervises.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omac: starting the async runtime: {e}");
            return 5;
        }
    };
    rt.block_on(serve(plan))
}

async fn serve(plan: Plan) -> i32 {
    let fail = |e: Error| {
        eprintln!("omac: {e}");
        e.exit_code()
    };
    let routes = match RouteTable::new(plan.routes) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let (mut term, mut int) = match (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("omac: cannot install signal handlers");
            return 5;
        }
    };
    let sup = Supervisor::new(plan.supervisor, routes.clone());
    let mut events = sup.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            tracing::info!(event = ?e, "sidecar");
        }
    });
    if let Err(e) = sup.start(plan.sidecars).await {
        return fail(e);
    }
    let facade = match crate::start(plan.facade, routes).await {
        Ok(f) => f,
        Err(e) => {
            sup.shutdown().await;
            return fail(e);
        }
    };
    let ready = serde_json::json!({
        "ready": true,
        "socket": facade.socket_path(),
        "tcp": facade.tcp_addr().map(|a| a.to_string()),
        "token": facade.token(),
        "pid": std::process::id(),
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}");
        let _ = out.flush();
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    facade.shutdown().await;
    sup.shutdown().await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        std::fs::write(
            &p,
            r#"{"socket": "s.sock", "routes": [{"mount": "a", "port": 1, "prot": 2}]}"#,
        )
        .unwrap();
        let e = plan(&p).err().unwrap();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("routes[0]"), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        std::fs::write(
            &p,
            r#"{"socket": "run/s.sock", "routes": [{"mount": "a", "port": 7, "idle_timeout_ms": 1500}],
               "sidecars": [{"skill": "x", "dir": "skill", "command": ["true"], "config": {"A": "1"}}]}"#,
        )
        .unwrap();
        let plan = plan(&p).unwrap();
        assert_eq!(plan.facade.socket, dir.path().join("run/s.sock"));
        assert_eq!(plan.supervisor.log_dir, dir.path().join("run/logs"));
        assert_eq!(plan.routes[0].state, RouteState::Ready { port: 7 });
        assert_eq!(plan.routes[0].idle_timeout, Duration::from_millis(1500));
        assert_eq!(
            plan.routes[1].skill_dir.as_deref(),
            Some(dir.path().join("skill").as_path())
        );
        assert_eq!(
            plan.sidecars[0].config,
            vec![("A".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn a_missing_secret_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        std::fs::write(
            &p,
            r#"{"socket": "s.sock", "sidecars": [{"skill": "x", "dir": ".", "command": ["true"],
               "secrets_from_env": {"K": "OMAC_TEST_SURELY_UNSET_VARIABLE"}}]}"#,
        )
        .unwrap();
        let e = plan(&p).err().unwrap().to_string();
        assert!(e.contains("OMAC_TEST_SURELY_UNSET_VARIABLE"), "{e}");
    }
}
