//! The sidecar supervisor: starts each sidecar under a keeper, waits for its health probe,
//! restarts it with backoff when it dies (its route says `restarting` meanwhile), and stops
//! every one of them on shutdown: SIGTERM to the group, the grace period, SIGKILL.

mod backoff;
mod env;
mod health;
mod logfile;
mod spawner;
mod spec;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

pub use spec::{
    HealthSpec, RestartPolicy, SidecarSpec, SupervisorConfig, DEFAULT_BASE_ENV_PASSTHROUGH,
};

use crate::{Error, RouteState, RouteTable};
use logfile::{RotatingLog, SharedLog};

/// What happens to sidecars, for progress displays and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum SidecarEvent {
    /// The keeper and the sidecar were started.
    Spawned {
        /// The skill.
        skill: String,
        /// The keeper's pid.
        pid: u32,
        /// The port the sidecar was given.
        port: u16,
        /// 0 for the first start, then the restart number.
        restart: u32,
    },
    /// A health probe is about to be sent.
    Probing {
        /// The skill.
        skill: String,
        /// Probe number, from 1.
        probe: u32,
        /// Time since the sidecar was started.
        elapsed: Duration,
    },
    /// The health probe answered 2xx; the route is ready.
    Healthy {
        /// The skill.
        skill: String,
        /// The sidecar's port.
        port: u16,
        /// Time from start to healthy.
        waited: Duration,
    },
    /// The sidecar did not become healthy.
    Unhealthy {
        /// The skill.
        skill: String,
        /// Why.
        detail: String,
    },
    /// The sidecar exited while it was serving.
    Exited {
        /// The skill.
        skill: String,
        /// Its exit code (128+N when killed by signal N).
        code: Option<i32>,
    },
    /// A restart is scheduled.
    Restarting {
        /// The skill.
        skill: String,
        /// Restart number, from 1.
        attempt: u32,
        /// Delay before it.
        delay: Duration,
    },
    /// The restart limit was reached; the route is down.
    GaveUp {
        /// The skill.
        skill: String,
        /// Restarts tried.
        restarts: u32,
    },
    /// The sidecar, started at least once, was stopped by shutdown.
    Stopped {
        /// The skill.
        skill: String,
    },
}

/// A sidecar as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarStatus {
    /// The skill.
    pub skill: String,
    /// Its route.
    pub mount: String,
    /// The keeper's pid while running.
    pub keeper_pid: Option<u32>,
    /// The current port.
    pub port: Option<u16>,
    /// Restarts so far.
    pub restarts: u32,
    /// Its log file.
    pub log: PathBuf,
}

struct Ctx {
    config: SupervisorConfig,
    routes: RouteTable,
    events: broadcast::Sender<SidecarEvent>,
    status: Mutex<HashMap<String, SidecarStatus>>,
    shutdown: watch::Receiver<bool>,
}

impl Ctx {
    fn emit(&self, e: SidecarEvent) {
        tracing::debug!(event = ?e, "sidecar");
        let _ = self.events.send(e);
    }

    fn update(&self, skill: &str, f: impl FnOnce(&mut SidecarStatus)) {
        let mut m = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get_mut(skill) {
            f(s);
        }
    }
}

/// The supervisor of one session's sidecars.
pub struct Supervisor {
    ctx: Arc<Ctx>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("sidecars", &self.sidecars())
            .finish()
    }
}

impl Supervisor {
    /// A supervisor that reports route states into `routes`.
    pub fn new(config: SupervisorConfig, routes: RouteTable) -> Supervisor {
        let (shutdown, rx) = watch::channel(false);
        Supervisor {
            ctx: Arc::new(Ctx {
                config,
                routes,
                events: broadcast::channel(1024).0,
                status: Mutex::default(),
                shutdown: rx,
            }),
            shutdown,
            tasks: Mutex::default(),
        }
    }

    /// Events from now on (spawn, every probe, healthy, exits, restarts).
    pub fn events(&self) -> broadcast::Receiver<SidecarEvent> {
        self.ctx.events.subscribe()
    }

    /// Every sidecar's current status.
    pub fn sidecars(&self) -> Vec<SidecarStatus> {
        let m = self.ctx.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.values().cloned().collect();
        v.sort_by(|a, b| a.skill.cmp(&b.skill));
        v
    }

    /// Starts the sidecars (all at once) and waits until each is healthy. If one fails, all
    /// of them are stopped and its error returned (exit code 6).
    pub async fn start(&self, specs: Vec<SidecarSpec>) -> Result<(), Error> {
        let mut waits = Vec::new();
        for spec in specs {
            waits.push(self.start_one(spec)?);
        }
        let mut first_err = None;
        for w in waits {
            let r = w
                .await
                .unwrap_or_else(|_| Err(Error::config("supervisor", "stopped", "none")));
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => {
                self.stop_all().await;
                Err(e)
            }
        }
    }

    /// Starts one sidecar; the receiver says when it is healthy (or why not).
    pub fn start_one(
        &self,
        spec: SidecarSpec,
    ) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
        validate(&spec)?;
        let dir = &self.ctx.config.log_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("creating the sidecar log directory", dir, e))?;
        let log_path = dir.join(format!("{}.log", spec.skill));
        let log = RotatingLog::open(
            &log_path,
            self.ctx.config.log_max_bytes,
            self.ctx.config.log_keep,
        )
        .map_err(|e| Error::io("opening the sidecar log", &log_path, e))?;
        {
            let mut m = self.ctx.status.lock().unwrap_or_else(|p| p.into_inner());
            if m.contains_key(&spec.skill) {
                return Err(Error::config(
                    format!("sidecar {}", spec.skill),
                    "started twice",
                    "start each skill once per session",
                ));
            }
            m.insert(
                spec.skill.clone(),
                SidecarStatus {
                    skill: spec.skill.clone(),
                    mount: spec.mount.clone(),
                    keeper_pid: None,
                    port: None,
                    restarts: 0,
                    log: log_path,
                },
            );
        }
        let (tx, rx) = oneshot::channel();
        let ctx = self.ctx.clone();
        let task = tokio::spawn(run(ctx, spec, Arc::new(Mutex::new(log)), tx));
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        Ok(rx)
    }

    async fn stop_all(&self) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Stops every sidecar (SIGTERM to its group, the grace period, SIGKILL) and waits.
    pub async fn shutdown(&self) {
        self.stop_all().await;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Tasks stop their sidecars when they see this; should the runtime be gone already,
        // SIGTERM the keepers directly (each then stops its group by itself).
        let _ = self.shutdown.send(true);
        for s in self.sidecars() {
            if let Some(pid) = s.keeper_pid {
                // SAFETY: kill on a keeper pid we started and have not reaped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
    }
}

fn validate(spec: &SidecarSpec) -> Result<(), Error> {
    let field = |f: &str| format!("sidecar {}: {f}", spec.skill);
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(Error::config(
            field("command"),
            "is empty",
            "set `sidecar.command` in the skill's omac.yaml",
        ));
    }
    if spec.skill.is_empty() || spec.skill.contains('/') || spec.skill.starts_with('.') {
        return Err(Error::config(
            field("name"),
            format!("{:?} cannot name a log file", spec.skill),
            "use the skill's directory name",
        ));
    }
    if !spec.health.path.starts_with('/') {
        return Err(Error::config(
            field("health.path"),
            format!("{:?} does not start with '/'", spec.health.path),
            "write it as an absolute path such as /status",
        ));
    }
    if spec.health.interval.is_zero() {
        return Err(Error::config(
            field("health.interval_ms"),
            "is 0",
            "leave it unset for 500 ms",
        ));
    }
    Ok(())
}

/// A free loopback port (bound, read, released: the Go omac's way; the sidecar binds it
/// next). Drawn at random below the kernel's ephemeral range: every outgoing connection on
/// the machine takes its local port from that range, so a port found free there can be
/// busy again before the sidecar binds it (seen with parallel sessions: the sidecar died
/// with EADDRINUSE before its health probe). The kernel's own choice is the last resort.
fn free_port() -> std::io::Result<u16> {
    const LOWEST: u32 = 10_000;
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if first_ephemeral > LOWEST + 1_000 {
        for _ in 0..32 {
            let mut r = [0u8; 4];
            // SAFETY: a valid buffer of the length given.
            let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
            if n != 4 {
                break;
            }
            let port = LOWEST + u32::from_ne_bytes(r) % (first_ephemeral - LOWEST);
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                return Ok(l.local_addr()?.port());
            }
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

fn code_of(st: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    st.code().or_else(|| st.signal().map(|s| 128 + s))
}

/// Starts the keeper for `spec` on `port`.
async fn spawn(ctx: &Ctx, spec: &SidecarSpec, port: u16, log: &SharedLog) -> Result<Child, Error> {
    let argv = env::argv(&spec.command, &spec.dir, port);
    let keeper = &ctx.config.keeper;
    let mut cmd = tokio::process::Command::new(&keeper[0]);
    cmd.args(&keeper[1..])
        .arg("--grace-ms")
        .arg(ctx.config.stop_grace.as_millis().to_string())
        .arg("--")
        .args(&argv)
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    env::apply(&mut cmd, spec, port, &|k| std::env::var_os(k));
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook only makes async-signal-safe calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    logfile::note(
        log,
        &format!(
            "--- omac: starting sidecar {} at {}: argv {:?}, SIDECAR_PORT={port}, PATH={}, cwd {}",
            spec.skill,
            crate::access_log::rfc3339(std::time::SystemTime::now()),
            argv,
            path_var.to_string_lossy(),
            spec.dir.display()
        ),
    );
    let mut child = spawner::spawn(cmd).await.map_err(|e| Error::Spawn {
        skill: spec.skill.clone(),
        command: format!("{:?}", keeper),
        log: log_path(log),
        source: e,
    })?;
    if let Some(out) = child.stdout.take() {
        logfile::pump(out, log.clone());
    }
    if let Some(err) = child.stderr.take() {
        logfile::pump(err, log.clone());
    }
    Ok(child)
}

fn log_path(log: &SharedLog) -> PathBuf {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .path()
        .to_path_buf()
}

/// The pause before the next probe: a twentieth of the time waited so far, between 1 ms
/// and the skill's `interval_ms`. A sidecar that becomes healthy after T waits at most about
/// T/20 more (no fixed sleep), while one that takes seconds is probed every `interval_ms`;
/// an unanswered probe on loopback is a refused connect, which costs microseconds.
fn next_gap(elapsed: Duration, interval: Duration) -> Duration {
    (elapsed / 20).clamp(
        Duration::from_millis(1),
        interval.max(Duration::from_millis(1)),
    )
}

/// Waits for the health probe to answer 2xx; Err says why not. Probing starts at once:
/// `initial_delay_ms` only extends the deadline (the Go omac slept it first, which added
/// its whole length to every start).
async fn wait_healthy(
    ctx: &Ctx,
    spec: &SidecarSpec,
    child: &mut Child,
    port: u16,
) -> Result<Duration, String> {
    let h = &spec.health;
    let started = Instant::now();
    let deadline = started + h.initial_delay + h.timeout;
    let exited = |st: std::io::Result<ExitStatus>| match st {
        Ok(s) => format!(
            "it exited ({}) before answering its health probe",
            code_of(&s).map_or("unknown status".to_string(), |c| format!("code {c}"))
        ),
        Err(e) => format!("waiting for it failed: {e}"),
    };
    let mut n = 0;
    loop {
        n += 1;
        let probe_start = Instant::now();
        ctx.emit(SidecarEvent::Probing {
            skill: spec.skill.clone(),
            probe: n,
            elapsed: probe_start - started,
        });
        let left = deadline.saturating_duration_since(probe_start);
        let t = left
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(50));
        let last_err = tokio::select! {
            r = health::probe(port, &h.path, t) => match r {
                Ok(code) if (200..300).contains(&code) => return Ok(started.elapsed()),
                Ok(code) => format!("GET {} answered {code}", h.path),
                Err(e) => e,
            },
            st = child.wait() => return Err(exited(st)),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "no 2xx from GET {} within {} ms (last: {last_err})",
                h.path,
                (h.initial_delay + h.timeout).as_millis()
            ));
        }
        let next = (probe_start + next_gap(probe_start - started, h.interval)).min(deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            st = child.wait() => return Err(exited(st)),
        }
    }
}

/// Stops a keeper: SIGTERM (it stops the sidecar's group: SIGTERM, grace, SIGKILL), and
/// should it not be done after the grace period and a margin, SIGKILL to its children's
/// groups and to itself.
async fn stop(ctx: &Ctx, child: &mut Child) -> Option<ExitStatus> {
    let Some(pid) = child.id() else {
        return child.wait().await.ok();
    };
    // SAFETY: kill on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let margin = ctx.config.stop_grace + Duration::from_secs(2);
    if let Ok(st) = tokio::time::timeout(margin, child.wait()).await {
        return st.ok();
    }
    tracing::warn!(pid, "a sidecar keeper did not stop in time; killing it");
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children
        .split_whitespace()
        .filter_map(|c| c.parse::<libc::pid_t>().ok())
    {
        // SAFETY: the sidecar leads its own group; kill the whole group.
        unsafe { libc::kill(-c, libc::SIGKILL) };
    }
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// The life of one sidecar: start, health, serve, restart, stop.
async fn run(
    ctx: Arc<Ctx>,
    spec: SidecarSpec,
    log: SharedLog,
    first: oneshot::Sender<Result<(), Error>>,
) {
    let mut first = Some(first);
    let mut shutdown = ctx.shutdown.clone();
    let mut restarts: u32 = 0;
    let mut jitter = backoff::Jitter::new();
    let skill = spec.skill.clone();
    // Stopped answers a Spawned: a sidecar shut down before it ever started reports neither.
    let mut spawned = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let port = match free_port() {
            Ok(p) => p,
            Err(e) => {
                let err = Error::io("finding a free loopback port", "127.0.0.1", e);
                if let Some(f) = first.take() {
                    let _ = f.send(Err(err));
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut child = match spawn(&ctx, &spec, port, &log).await {
            Ok(c) => c,
            Err(e) => {
                logfile::note(&log, &format!("--- omac: {e}"));
                if let Some(f) = first.take() {
                    ctx.routes.set_state(
                        &spec.mount,
                        RouteState::Down {
                            detail: e.to_string(),
                        },
                    );
                    let _ = f.send(Err(e));
                    return;
                }
                restarts += 1;
                if !schedule_restart(&ctx, &spec, restarts, &mut jitter, &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        ctx.update(&skill, |s| {
            s.keeper_pid = Some(pid);
            s.port = Some(port);
            s.restarts = restarts;
        });
        ctx.emit(SidecarEvent::Spawned {
            skill: skill.clone(),
            pid,
            port,
            restart: restarts,
        });
        spawned = true;
        let health = tokio::select! {
            h = wait_healthy(&ctx, &spec, &mut child, port) => Some(h),
            _ = crate::server::stopped(&mut shutdown) => None,
        };
        let waited = match health {
            None => {
                stop(&ctx, &mut child).await;
                break;
            }
            Some(Ok(w)) => w,
            Some(Err(detail)) => {
                stop(&ctx, &mut child).await;
                ctx.update(&skill, |s| s.keeper_pid = None);
                logfile::note(&log, &format!("--- omac: sidecar not healthy: {detail}"));
                ctx.emit(SidecarEvent::Unhealthy {
                    skill: skill.clone(),
                    detail: detail.clone(),
                });
                if let Some(f) = first.take() {
                    // Give the log pumps a moment to write the sidecar's last words.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let path = log_path(&log);
                    ctx.routes.set_state(
                        &spec.mount,
                        RouteState::Down {
                            detail: detail.clone(),
                        },
                    );
                    let _ = f.send(Err(Error::Health {
                        skill: skill.clone(),
                        waited: spec.health.initial_delay + spec.health.timeout,
                        detail,
                        tail: logfile::tail(&path, 10),
                        log: path,
                    }));
                    return;
                }
                restarts += 1;
                if !schedule_restart(&ctx, &spec, restarts, &mut jitter, &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        ctx.routes
            .set_state(&spec.mount, RouteState::Ready { port });
        ctx.emit(SidecarEvent::Healthy {
            skill: skill.clone(),
            port,
            waited,
        });
        if let Some(f) = first.take() {
            let _ = f.send(Ok(()));
        }
        let healthy_at = Instant::now();
        let st = tokio::select! {
            st = child.wait() => st,
            _ = crate::server::stopped(&mut shutdown) => {
                stop(&ctx, &mut child).await;
                break;
            }
        };
        let code = st.as_ref().ok().and_then(code_of);
        ctx.update(&skill, |s| {
            s.keeper_pid = None;
            s.port = None;
        });
        logfile::note(
            &log,
            &format!(
                "--- omac: sidecar exited with {}",
                code.map_or("unknown status".into(), |c| format!("code {c}"))
            ),
        );
        ctx.emit(SidecarEvent::Exited {
            skill: skill.clone(),
            code,
        });
        if healthy_at.elapsed() >= spec.restart.reset_after {
            restarts = 0;
        }
        restarts += 1;
        if !schedule_restart(&ctx, &spec, restarts, &mut jitter, &mut shutdown).await {
            break;
        }
    }
    ctx.update(&skill, |s| {
        s.keeper_pid = None;
        s.port = None;
    });
    if !matches!(ctx.routes.state(&spec.mount), Some(RouteState::Down { .. })) {
        ctx.routes.set_state(
            &spec.mount,
            RouteState::Down {
                detail: "stopped".into(),
            },
        );
    }
    if spawned {
        ctx.emit(SidecarEvent::Stopped { skill });
    }
}

/// Marks the route `restarting` and waits the backoff; false when the sidecar should not come
/// back (restarts off, limit reached, shutdown).
async fn schedule_restart(
    ctx: &Ctx,
    spec: &SidecarSpec,
    attempt: u32,
    jitter: &mut backoff::Jitter,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let p = &spec.restart;
    if !p.enabled || p.max_restarts.is_some_and(|m| attempt > m) {
        ctx.routes.set_state(
            &spec.mount,
            RouteState::Down {
                detail: format!(
                    "the sidecar died and was not restarted ({} restarts)",
                    attempt - 1
                ),
            },
        );
        ctx.emit(SidecarEvent::GaveUp {
            skill: spec.skill.clone(),
            restarts: attempt - 1,
        });
        return false;
    }
    let delay = backoff::delay(p, attempt, jitter);
    ctx.routes
        .set_state(&spec.mount, RouteState::Restarting { attempt });
    ctx.emit(SidecarEvent::Restarting {
        skill: spec.skill.clone(),
        attempt,
        delay,
    });
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = crate::server::stopped(shutdown) => false,
    }
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn probes_follow_the_wait_not_a_fixed_period() {
        let i = Duration::from_millis(500);
        assert_eq!(next_gap(Duration::ZERO, i), Duration::from_millis(1));
        assert_eq!(
            next_gap(Duration::from_millis(100), i),
            Duration::from_millis(5)
        );
        assert_eq!(next_gap(Duration::from_secs(60), i), i);
        assert_eq!(
            next_gap(Duration::from_secs(60), Duration::ZERO),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn sidecar_ports_come_from_below_the_ephemeral_range() {
        let first: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for _ in 0..20 {
            let p = free_port().unwrap();
            if first > 11_000 {
                assert!(
                    (10_000..first).contains(&p),
                    "port {p}, ephemeral from {first}"
                );
            }
            // Free: the sidecar can bind it.
            std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }
}
