//! The host side of a session, shared by `omac start` and `omac run DIR`: the sidecars
//! (from the layer store, under their keepers), the facade on a socket bound into the
//! sandbox at `/run/omac/facade.sock`, the egress proxy at `/run/omac/egress.sock` (filtered
//! mode with kernel enforcement), open and published ports, then the runtime, and teardown
//! on every way out (the agent exits, Ctrl-C, SIGTERM, an error).
//!
//! Everything the session starts dies with omac even when omac is killed with SIGKILL:
//! sidecars run under keepers with a parent-death signal, the sandbox's stage and init have
//! one too, and the facade, the proxy and the port relays are threads of omac. What SIGKILL
//! leaves is the runtime directory, which the next session removes (see `rundir`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use omac_bundle::Loaded;
use omac_facade::{
    FacadeConfig, HealthSpec, RequestObserver, RouteConfig, RouteTable, SidecarEvent, SidecarSpec,
    Supervisor, SupervisorConfig, TcpConfig,
};
use omac_runtime::{Control, Enforcement, RunOptions};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::exit::{Code, Failure};
use crate::session::audit::Audit;
use crate::session::rundir::RunDir;
use crate::session::signals::{self, Received};
use crate::session::skills::Active;
use crate::session::values::Values;
use crate::session::{agent_env, ports, progress};

/// How long the agent has to exit after a stop signal is forwarded before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Everything the host side needs for one session.
pub struct Plan {
    /// The bundle.
    pub loaded: Arc<Loaded>,
    /// The skills whose sidecars run, and their values (same order).
    pub active: Vec<Active>,
    /// Secrets and config of each active skill.
    pub values: Vec<Values>,
    /// The session's runtime directory.
    pub rundir: RunDir,
    /// The audit log.
    pub audit: Audit,
    /// Arguments appended to the bundle's command.
    pub args: Vec<String>,
    /// False with `--no-sandbox`: the command runs on the host.
    pub sandboxed: bool,
    /// Keep the facade and sidecars up after the agent exits, until a stop signal.
    pub keep_running: bool,
    /// `--verbose`.
    pub verbose: bool,
    /// Where sidecar logs and the facade's access log go.
    pub logs_dir: PathBuf,
    /// Host variables every sidecar receives.
    pub base_env: Vec<String>,
    /// `~/.config/omac` (the egress proxy's learned decisions).
    pub user_config_dir: Option<PathBuf>,
    /// Network prompts may show dialogs (stdin is a terminal).
    pub dialogs: bool,
    /// Signals received by omac.
    pub signals: UnboundedReceiver<Received>,
    /// When omac started (`CLOCK_MONOTONIC` ns), for `--verbose`.
    pub t0: Option<u64>,
    /// Host variables never passed to the agent (secret sources).
    pub withheld: Vec<String>,
    /// Host sockets the user binds into the sandbox (`omac run --socket NAME=PATH`); one
    /// named `facade.sock` or `egress.sock` replaces omac's own.
    pub user_sockets: Vec<(String, PathBuf)>,
}

/// One sidecar's life in the session, for `--json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SidecarReport {
    /// The skill.
    pub skill: String,
    /// From spawn to healthy, the first time.
    pub healthy_ms: Option<f64>,
    /// Restarts after the first start.
    pub restarts: u32,
}

/// What a session ended with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The exit code omac passes on.
    pub exit_code: i32,
    /// The signal that killed the agent, if one did.
    pub signal: Option<i32>,
    /// Whether the agent ran sandboxed.
    pub sandboxed: bool,
    /// The enforcement achieved (none with `--no-sandbox` or when the run failed).
    pub enforcement: Option<Enforcement>,
    /// Warnings of the run.
    pub warnings: Vec<String>,
    /// Network requests the egress proxy refused.
    pub net_denied: u64,
    /// Network requests the egress proxy allowed.
    pub net_allowed: u64,
    /// Requests the facade answered.
    pub facade_requests: u64,
    /// Facade answers that were errors (4xx, 5xx).
    pub facade_errors: u64,
    /// The sidecars.
    pub sidecars: Vec<SidecarReport>,
    /// Why omac stopped the session early (a signal before the agent ran), if it did.
    pub stopped_by: Option<String>,
}

/// The counters the audit hooks keep.
#[derive(Default)]
struct Counters {
    net_denied: AtomicU64,
    net_allowed: AtomicU64,
    facade_requests: AtomicU64,
    facade_errors: AtomicU64,
    sidecars: Mutex<HashMap<String, SidecarReport>>,
}

/// What was brought up, for teardown.
#[derive(Default)]
struct Up {
    facade: Option<omac_facade::FacadeHandle>,
    egress: Option<omac_egress::Handle>,
    supervisor: Option<Arc<Supervisor>>,
    relays: Vec<tokio::task::JoinHandle<()>>,
    /// Writes the supervisor's events to the audit log; ends once the supervisor is gone.
    events: Option<tokio::task::JoinHandle<()>>,
}

impl Up {
    async fn down(self) {
        for r in &self.relays {
            r.abort();
        }
        let facade = async {
            if let Some(f) = self.facade {
                f.shutdown().await;
            }
        };
        let egress = async {
            if let Some(e) = self.egress {
                e.shutdown().await;
            }
        };
        let sup = async {
            if let Some(s) = self.supervisor {
                s.shutdown().await;
            }
        };
        tokio::join!(facade, egress, sup);
        // The supervisor is dropped: its last events (sidecar.stop) reach the log.
        if let Some(t) = self.events {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// The name of a signal for messages.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        n => format!("signal {n}"),
    }
}

/// Runs the session: brings everything up, runs the agent, tears everything down.
pub fn run(plan: Plan) -> anyhow::Result<Report> {
    run_with(plan, None)
}

/// [`run`], taking over the sidecars `early` started while omac prepared the session.
pub fn run_with(mut plan: Plan, early: Option<Early>) -> anyhow::Result<Report> {
    signals::session_started();
    let (rt, counters, mut up, pre) = match early {
        Some(e) => {
            let p = e.into_parts();
            // From here on the supervisor's events may reach the audit log: session.start
            // is in it.
            if let Some(g) = p.gate {
                let _ = g.send(());
            }
            let up = Up {
                supervisor: Some(p.supervisor),
                events: Some(p.events),
                ..Up::default()
            };
            let pre = Pre {
                table: p.table,
                names: p.names,
                started: p.started,
            };
            (p.rt, p.counters, up, Some(pre))
        }
        None => (
            runtime()?,
            Arc::new(Counters::default()),
            Up::default(),
            None,
        ),
    };
    let result = rt.block_on(async {
        let r = bring_up_and_run(&mut plan, &mut up, &counters, pre).await;
        up.down().await;
        // While the kernel still takes the sandbox down: the servers are gone, their
        // sockets can go.
        plan.rundir.remove();
        r
    });
    // Not dropped: that would stop and join the runtime's idle threads one after the
    // other (about 0.2 ms at the end of every run), and the process exits right after
    // this, which ends them. Nothing is left on it: the servers, the sidecars and their
    // event log were shut down and awaited above. The thread that relays the sandbox's
    // reports may still be reading them; `omac_runtime::wait_for_stages`, which `main`
    // calls before it exits, waits for it and for the sandbox.
    std::mem::forget(rt);
    let mut report = result?;
    report.net_denied = counters.net_denied.load(Ordering::Relaxed);
    report.net_allowed = counters.net_allowed.load(Ordering::Relaxed);
    report.facade_requests = counters.facade_requests.load(Ordering::Relaxed);
    report.facade_errors = counters.facade_errors.load(Ordering::Relaxed);
    let mut sc: Vec<SidecarReport> = counters
        .sidecars
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    sc.sort_by(|a, b| a.skill.cmp(&b.skill));
    report.sidecars = sc;
    Ok(report)
}

/// The session's tokio runtime: one worker thread (and the blocking pool's, on demand).
/// Its tasks are I/O: the egress proxy's tunnels, the relays, the supervisor's probes, the
/// audit log; the facade serves on threads of its own. A second worker bought no throughput
/// (one tunnel is one task) and cost every run its thread's start and exit, and the tasks'
/// wakeups across threads: tunnel setup through the proxy from inside a sandbox, p50 285 ->
/// 218 us (bench/egress_sandbox.sh), with the same 1 GiB transfer rates.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("omac-session")
        .enable_all()
        .build()
        .context("starting the session's runtime")
}

/// What the sidecars of a session are made from, known before its bundle is written.
pub struct SidecarSetup<'a> {
    /// The skills in scope (those without a sidecar are skipped).
    pub active: &'a [Active],
    /// Their secrets and config, same order; taken.
    pub values: &'a mut [Values],
    /// The sidecar plan the bundle records for them (`omac.json` `sidecars`).
    pub recorded: &'a [omac_bundle::ext::Sidecar],
    /// The session's workdir.
    pub workdir: &'a std::path::Path,
    /// The harness, whose skills directory sidecars are told about.
    pub harness: Option<&'a str>,
    /// Host variables every sidecar receives.
    pub base_env: Vec<String>,
    /// Where sidecar logs go.
    pub logs_dir: &'a std::path::Path,
    /// The audit log (their events wait until [`run_with`] takes them over).
    pub audit: &'a Audit,
}

/// Sidecars started ahead of the session (`omac start` starts them as soon as their values
/// are known, so that their boot overlaps the bundle's generation and the facade's and the
/// proxy's bring-up). [`run_with`] takes them over; dropped instead (the preparation
/// failed), it stops them and waits until they are gone.
pub struct Early {
    parts: Option<EarlyParts>,
}

struct EarlyParts {
    rt: tokio::runtime::Runtime,
    supervisor: Arc<Supervisor>,
    table: RouteTable,
    counters: Arc<Counters>,
    names: Vec<String>,
    started: tokio::task::JoinHandle<Result<(), omac_facade::Error>>,
    events: tokio::task::JoinHandle<()>,
    gate: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The sidecars' part of the session when they were started early.
struct Pre {
    table: RouteTable,
    names: Vec<String>,
    started: tokio::task::JoinHandle<Result<(), omac_facade::Error>>,
}

impl Early {
    fn into_parts(mut self) -> EarlyParts {
        match self.parts.take() {
            Some(p) => p,
            None => unreachable!("Early is taken over once"),
        }
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        let Some(mut p) = self.parts.take() else {
            return;
        };
        if let Some(g) = p.gate.take() {
            let _ = g.send(());
        }
        p.started.abort();
        let sup = p.supervisor;
        let events = p.events;
        let started = p.started;
        p.rt.block_on(async move {
            // Once the aborted start has ended, every sidecar it started has its task in
            // the supervisor, which the shutdown waits for.
            let _ = started.await;
            sup.shutdown().await;
            drop(sup);
            let _ = tokio::time::timeout(Duration::from_secs(2), events).await;
        });
    }
}

/// Starts the sidecars of `s` now (none: `Ok(None)`); they become healthy while omac goes
/// on preparing the session, and [`run_with`] waits for them.
pub fn start_sidecars(s: SidecarSetup<'_>) -> anyhow::Result<Option<Early>> {
    let workdir = s.workdir.display().to_string();
    let (specs, routes) = specs_and_routes(
        s.active,
        s.values,
        s.recorded,
        &workdir,
        s.harness,
        &s.base_env,
    );
    if specs.is_empty() {
        return Ok(None);
    }
    let table = RouteTable::new(routes).context("building the facade's routes")?;
    // A stop signal from now on goes to the session, which stops the sidecars.
    signals::session_started();
    let rt = runtime()?;
    let counters = Arc::new(Counters::default());
    let names: Vec<String> = specs.iter().map(|s| s.skill.clone()).collect();
    let (gate, gated) = tokio::sync::oneshot::channel();
    let _guard = rt.enter();
    let supervisor = Arc::new(Supervisor::new(
        supervisor_config(s.logs_dir),
        table.clone(),
    ));
    let events = spawn_event_log(&supervisor, s.audit, &counters, Some(gated));
    let sup = supervisor.clone();
    let started = rt.spawn(async move { sup.start(specs).await });
    drop(_guard);
    Ok(Some(Early {
        parts: Some(EarlyParts {
            rt,
            supervisor,
            table,
            counters,
            names,
            started,
            events,
            gate: Some(gate),
        }),
    }))
}

fn supervisor_config(logs_dir: &std::path::Path) -> SupervisorConfig {
    let mut c = SupervisorConfig::new(logs_dir);
    if let Ok(exe) = std::env::current_exe() {
        c.keeper = vec![exe.into(), omac_facade::keeper::SUBCOMMAND.into()];
    }
    c
}

/// The sidecar specs and routes of the active skills, from the bundle's record.
fn sidecars(plan: &mut Plan) -> (Vec<SidecarSpec>, Vec<RouteConfig>) {
    let ext = plan.loaded.ext.as_ref();
    let workdir = ext.map(|e| e.workdir.path.clone()).unwrap_or_default();
    let harness = ext.and_then(|e| e.harness.clone());
    let recorded = ext.map(|e| e.sidecars.clone()).unwrap_or_default();
    specs_and_routes(
        &plan.active,
        &mut plan.values,
        &recorded,
        &workdir,
        harness.as_deref(),
        &plan.base_env,
    )
}

/// The sidecar specs and routes of `active` (values taken from `values`, same order).
fn specs_and_routes(
    active: &[Active],
    values: &mut [Values],
    recorded: &[omac_bundle::ext::Sidecar],
    workdir: &str,
    harness: Option<&str>,
    base_env: &[String],
) -> (Vec<SidecarSpec>, Vec<RouteConfig>) {
    let workdir = PathBuf::from(workdir);
    let mut specs = Vec::new();
    let mut routes = Vec::new();
    for (a, v) in active.iter().zip(values.iter_mut()) {
        let s = a.sidecar();
        let mount = a.mount();
        let recorded = recorded.iter().find(|x| x.skill == a.name);
        let h = s.health();
        let mut spec = SidecarSpec::new(
            a.name.clone(),
            mount.clone(),
            a.layer.clone(),
            s.command.clone(),
            workdir.clone(),
        );
        spec.base_env_passthrough = base_env.to_vec();
        spec.env_passthrough = s.env_passthrough.clone();
        spec.harness_skills_dir = harness
            .and_then(omac_bundle::harness::find)
            .map(|h| format!(".{}/skills", h.skills_base));
        spec.config = std::mem::take(&mut v.config);
        spec.secrets = std::mem::take(&mut v.secrets);
        spec.health = HealthSpec {
            path: h.path,
            initial_delay: Duration::from_millis(h.initial_delay_ms),
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
        };
        specs.push(spec);
        let mut r = RouteConfig::new(mount, a.name.clone());
        r.skill_dir = Some(a.layer.clone());
        if let Some(rec) = recorded {
            r.max_body_bytes = rec.max_body_bytes;
            r.idle_timeout = Duration::from_secs(rec.idle_timeout_secs);
        }
        routes.push(r);
    }
    (specs, routes)
}

async fn bring_up_and_run(
    plan: &mut Plan,
    up: &mut Up,
    counters: &Arc<Counters>,
    pre: Option<Pre>,
) -> anyhow::Result<Report> {
    let loaded = plan.loaded.clone();
    let ext = loaded.ext.as_ref();
    let network = ext.map(|e| e.network.clone());
    let mode = network
        .as_ref()
        .map_or("blocked".to_string(), |n| n.mode.clone());
    let kernel = network.as_ref().is_none_or(|n| n.enforcement == "kernel");
    let bridged = plan.sandboxed && mode != "open" && kernel;
    // The sidecars: started early by the caller, or now, before the facade and the proxy
    // come up, so that their boot overlaps that work.
    let (table, sidecars_up) = match pre {
        Some(p) => (p.table, Some((p.names, p.started))),
        None => {
            let (specs, routes) = sidecars(plan);
            let table = RouteTable::new(routes).context("building the facade's routes")?;
            if specs.is_empty() {
                // Nothing to supervise: no supervisor (its event channel alone is 80 KB of
                // memory written at every run) and no task logging its events.
                (table, None)
            } else {
                let supervisor = Arc::new(Supervisor::new(
                    supervisor_config(&plan.logs_dir),
                    table.clone(),
                ));
                up.supervisor = Some(supervisor.clone());
                up.events = Some(spawn_event_log(&supervisor, &plan.audit, counters, None));
                let names: Vec<String> = specs.iter().map(|s| s.skill.clone()).collect();
                let started = tokio::spawn(async move { supervisor.start(specs).await });
                (table, Some((names, started)))
            }
        }
    };

    // The facade.
    let facade_sock = plan.rundir.join("facade.sock");
    let mut fc = FacadeConfig::new(&facade_sock);
    std::fs::create_dir_all(&plan.logs_dir)
        .with_context(|| format!("creating the log directory {}", plan.logs_dir.display()))?;
    fc.access_log = Some(plan.logs_dir.join("facade.log"));
    if !bridged {
        // No bridge inside: the agent reaches the facade on the host's loopback, with the
        // session's token (a path prefix of OMAC_BASE) so that no other local user can.
        fc.tcp = Some(TcpConfig {
            port: 0,
            token: None,
        });
    }
    {
        let audit = plan.audit.clone();
        let c = counters.clone();
        fc.observer = Some(RequestObserver::new(move |e| {
            c.facade_requests.fetch_add(1, Ordering::Relaxed);
            if e.status >= 400 {
                c.facade_errors.fetch_add(1, Ordering::Relaxed);
            }
            audit.emit(
                "facade.request",
                json!({
                    "transport": e.transport, "method": e.method, "mount": e.mount,
                    "path": e.path, "status": e.status, "bytes_in": e.bytes_in,
                    "bytes_out": e.bytes_out, "duration_ms": (e.duration_ms * 1000.0).round() / 1000.0,
                    "reason": e.reason,
                }),
            );
        }));
    }
    if plan.sandboxed {
        // The agent asks the facade why a path is out of reach; the bundle knows. The
        // classifier is built at the first question, not at every start.
        let bundle = Arc::clone(&plan.loaded);
        let paths = std::sync::OnceLock::new();
        fc.denied = Some(omac_facade::DeniedChecker::new(move |p| {
            let v = paths
                .get_or_init(|| omac_bundle::denied::DeniedPaths::of(&bundle))
                .check(p)?;
            Some((v.denied, serde_json::to_value(&v).ok()?))
        }));
    }
    let user = |n: &str| plan.user_sockets.iter().any(|(x, _)| x == n);
    let mut sockets: Vec<(String, PathBuf)> = plan.user_sockets.clone();
    let mut tcp = None;
    // Listeners are bound now and served once the sandbox is on its way (see `serve`):
    // what can fail fails before the agent starts.
    let mut facade = None;
    if !user("facade.sock") {
        let bound = omac_facade::bind(fc, table.clone()).context("starting the facade")?;
        tcp = bound.tcp_addr().zip(bound.token().map(str::to_string));
        facade = Some(bound);
        sockets.push(("facade.sock".into(), facade_sock.clone()));
    }

    // The egress proxy.
    let mut proxy = None;
    if let (Some(e), true) = (ext, bridged && mode == "filtered" && !user("egress.sock")) {
        let env: HashMap<String, String> = std::env::vars().collect();
        let audit = plan.audit.clone();
        let c = counters.clone();
        let mut b = omac_egress::Builder::from_extension(e, plan.user_config_dir.as_deref())
            .environment(env.clone())
            .audit(Arc::new(move |d: &omac_egress::audit::NetDecision| {
                if d.allow {
                    c.net_allowed.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.net_denied.fetch_add(1, Ordering::Relaxed);
                }
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("event");
                }
                audit.emit("net.decision", v);
            }));
        if !plan.dialogs && !omac_egress::prompt::truthy(env.get("OMAC_PROMPT_STUB")) {
            b = b.prompter(Arc::new(progress::NoDialogs));
        }
        let b = b
            .test_hooks_from_env(&env)
            .map_err(|m| Failure::new(Code::Misuse, m))?;
        let path = plan.rundir.join("egress.sock");
        proxy = Some(b.bind(&path).context("starting the egress proxy")?);
        sockets.push(("egress.sock".into(), path));
    }

    // Open and published ports.
    let mut publish = Vec::new();
    if let (Some(n), true) = (&network, bridged) {
        for p in n.open_ports.iter().copied().filter(|p| *p != 0) {
            let name = ports::open_port_name(p);
            let path = plan.rundir.join(&name);
            let t = ports::open_port(&path, p)
                .with_context(|| format!("open port {p}: listening on {}", path.display()))?;
            up.relays.push(t);
            sockets.push((name, path));
        }
        for p in n.publish_ports.iter().copied() {
            let path = plan.rundir.join(&ports::publish_name(p));
            let t = ports::publish(p, path.clone()).await.map_err(|e| {
                Failure::new(
                    Code::Io,
                    format!(
                        "publish port {p}: cannot listen on the host's 127.0.0.1:{p}: {e}\n  \
                         fix: stop what listens there, or publish another port"
                    ),
                )
            })?;
            up.relays.push(t);
            publish.push((p, path));
        }
    }

    // Wait for the sidecars to be healthy.
    if let (Some((names, mut started)), Some(supervisor)) = (sidecars_up, up.supervisor.clone()) {
        let show = progress::Progress::start(&supervisor, names.clone());
        let outcome = loop {
            tokio::select! {
                r = &mut started => break Some(r),
                s = plan.signals.recv() => match s {
                    Some(s) if signals::is_stop(s.signal) => break None,
                    Some(_) => {}
                    None => break None,
                },
            }
        };
        show.finish(matches!(outcome, Some(Ok(Ok(())))));
        match outcome {
            Some(Ok(r)) => r.map_err(|e| {
                anyhow::Error::new(e)
                    .context("starting the sidecars failed (the agent did not start)")
            })?,
            Some(Err(e)) => {
                return Err(anyhow::Error::new(e).context("the task starting the sidecars failed"))
            }
            None => {
                started.abort();
                let _ = started.await;
                eprintln!("omac: interrupted while the sidecars were starting; stopping");
                return Ok(aborted(plan, libc::SIGINT));
            }
        }
        health_logged(counters, &names).await;
    }

    // The agent.
    let host_env = agent_env::host_env(
        &plan.withheld,
        if bridged { None } else { tcp.as_ref() },
        &table,
        if plan.sandboxed {
            None
        } else {
            Some(&facade_sock)
        },
    );
    plan.audit.emit(
        "process.exec",
        json!({
            "argv": argv_of(&plan.loaded, &plan.args),
            "cwd": plan.loaded.config.process.cwd,
            "sandboxed": plan.sandboxed,
        }),
    );
    let started = Instant::now();
    let ran = if plan.sandboxed {
        run_sandboxed(plan, sockets, publish, host_env, || {
            serve(up, facade, proxy)
        })
        .await
    } else {
        serve(up, facade, proxy)?;
        run_on_host(plan, host_env).await
    };
    let (exit_code, signal, enforcement, warnings) = match ran {
        Ok(r) => r,
        Err(e) => {
            plan.audit.emit(
                "process.exit",
                json!({"error": format!("{e:#}"), "duration_ms": started.elapsed().as_millis() as u64}),
            );
            return Err(e);
        }
    };
    plan.audit.emit(
        "process.exit",
        json!({
            "code": exit_code, "signal": signal,
            "duration_ms": started.elapsed().as_millis() as u64,
            "enforcement": enforcement,
        }),
    );
    if plan.keep_running {
        keep_running(plan, exit_code, &facade_sock, tcp.as_ref()).await;
    }
    Ok(Report {
        exit_code,
        signal,
        sandboxed: plan.sandboxed,
        enforcement,
        warnings,
        net_denied: 0,
        net_allowed: 0,
        facade_requests: 0,
        facade_errors: 0,
        sidecars: Vec::new(),
        stopped_by: None,
    })
}

/// Starts serving the facade and the proxy bound earlier.
fn serve(
    up: &mut Up,
    facade: Option<omac_facade::Bound>,
    proxy: Option<omac_egress::Egress>,
) -> anyhow::Result<()> {
    if let Some(f) = facade {
        up.facade = Some(f.serve().context("starting the facade")?);
    }
    if let Some(p) = proxy {
        up.egress = Some(p.spawn());
    }
    Ok(())
}

fn aborted(plan: &Plan, sig: i32) -> Report {
    Report {
        exit_code: 128 + sig,
        signal: None,
        sandboxed: plan.sandboxed,
        enforcement: None,
        warnings: Vec::new(),
        net_denied: 0,
        net_allowed: 0,
        facade_requests: 0,
        facade_errors: 0,
        sidecars: Vec::new(),
        stopped_by: Some(signal_name(sig)),
    }
}

fn argv_of(loaded: &Loaded, args: &[String]) -> Vec<String> {
    let mut v = loaded.config.process.args.clone();
    v.extend(args.iter().cloned());
    v
}

/// Waits (at most 1 s) until the event log has written every sidecar's `sidecar.healthy`:
/// the events reach it through a channel, and the audit log must show them before the
/// agent's `process.exec` (the agent does start only after they are healthy).
async fn health_logged(counters: &Counters, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let done = {
            let r = counters.sidecars.lock().unwrap_or_else(|p| p.into_inner());
            names
                .iter()
                .all(|n| r.get(n).is_some_and(|x| x.healthy_ms.is_some()))
        };
        if done || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Audit events (and the `--json` figures) from the supervisor's events.
/// With a `gate`, nothing is written until it opens (or its sender is dropped); the events
/// wait in the channel meanwhile.
fn spawn_event_log(
    sup: &Supervisor,
    audit: &Audit,
    counters: &Arc<Counters>,
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
) -> tokio::task::JoinHandle<()> {
    let mut rx = sup.events();
    let audit = audit.clone();
    let c = counters.clone();
    tokio::spawn(async move {
        if let Some(g) = gate {
            let _ = g.await;
        }
        loop {
            let e = match rx.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            let mut reports = c.sidecars.lock().unwrap_or_else(|p| p.into_inner());
            match e {
                SidecarEvent::Spawned {
                    skill,
                    pid,
                    port,
                    restart,
                } => {
                    let r = reports.entry(skill.clone()).or_default();
                    r.skill = skill.clone();
                    r.restarts = restart;
                    let kind = if restart == 0 {
                        "sidecar.start"
                    } else {
                        "sidecar.restart"
                    };
                    audit.emit(kind, json!({"skill": skill, "keeper_pid": pid, "port": port, "restart": restart}));
                }
                SidecarEvent::Healthy {
                    skill,
                    port,
                    waited,
                } => {
                    let r = reports.entry(skill.clone()).or_default();
                    if r.healthy_ms.is_none() {
                        r.healthy_ms = Some(waited.as_secs_f64() * 1000.0);
                    }
                    audit.emit(
                        "sidecar.healthy",
                        json!({"skill": skill, "port": port, "waited_ms": waited.as_millis() as u64}),
                    );
                }
                SidecarEvent::Unhealthy { skill, detail } => {
                    audit.emit(
                        "sidecar.unhealthy",
                        json!({"skill": skill, "detail": detail}),
                    );
                }
                SidecarEvent::Exited { skill, code } => {
                    audit.emit("sidecar.exit", json!({"skill": skill, "code": code}));
                }
                SidecarEvent::Restarting {
                    skill,
                    attempt,
                    delay,
                } => {
                    audit.emit(
                        "sidecar.restarting",
                        json!({"skill": skill, "attempt": attempt, "delay_ms": delay.as_millis() as u64}),
                    );
                }
                SidecarEvent::GaveUp { skill, restarts } => {
                    audit.emit(
                        "sidecar.gave_up",
                        json!({"skill": skill, "restarts": restarts}),
                    );
                }
                SidecarEvent::Stopped { skill } => {
                    audit.emit("sidecar.stop", json!({"skill": skill}));
                }
                SidecarEvent::Probing { .. } => {}
            }
        }
    })
}

type Ran = (i32, Option<i32>, Option<Enforcement>, Vec<String>);

/// Runs the agent in the sandbox: hands the plan to the sandbox's stage, calls `serve`
/// (the servers start while the sandbox is built), waits for the agent's status.
async fn run_sandboxed(
    plan: &mut Plan,
    sockets: Vec<(String, PathBuf)>,
    publish: Vec<(u16, PathBuf)>,
    host_env: Vec<(String, String)>,
    serve: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Ran> {
    let filtered = plan
        .loaded
        .ext
        .as_ref()
        .is_some_and(|e| e.network.mode == "filtered");
    let binaries = match std::env::current_exe() {
        Ok(exe) if filtered && exe.is_file() => vec![("omac".to_string(), exe)],
        _ => Vec::new(),
    };
    let control = Control::new();
    // The agent's status arrives while the kernel still takes the sandbox's namespaces
    // down: the session's own teardown goes on meanwhile, and the runtime's thread, which
    // the session's runtime joins when it is dropped, waits for the rest.
    let (early_tx, mut early_rx) = tokio::sync::oneshot::channel();
    let early_tx = std::sync::Mutex::new(Some(early_tx));
    let options = RunOptions {
        args: plan.args.clone(),
        sockets,
        binaries,
        publish,
        host_env,
        verbose: plan.verbose,
        forward_signals: false,
        stage_exe: None,
        control: Some(control.clone()),
        t0: plan.t0,
        on_exit: Some(omac_runtime::OnExit(Arc::new(move |o| {
            if let Some(tx) = early_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(o.clone());
            }
        }))),
    };
    // From this thread, which outlives the sandbox (a stage spawned now dies with it).
    let sandbox = match omac_runtime::start(&plan.loaded, &options) {
        Ok(s) => s,
        Err(e) => return Err(anyhow::Error::new(e).context("running the sandbox")),
    };
    // Dropped on failure, the sandbox is killed.
    serve()?;
    let mut task = tokio::task::spawn_blocking(move || sandbox.finish());
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut killed = false;
    let mut early_open = true;
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            r = &mut early_rx, if early_open => match r {
                Ok(o) => break Ok(Ok(o)),
                // No status before the run ended: the task says why.
                Err(_) => early_open = false,
            },
            s = plan.signals.recv() => {
                let Some(s) = s else { continue };
                if s.from_terminal {
                    // The terminal signalled the agent's process group, which is omac's.
                    continue;
                }
                control.signal(s.signal);
                if signals::is_stop(s.signal) && kill_at.is_none() {
                    kill_at = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
            }
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                eprintln!(
                    "omac: the agent did not exit within {} s of the stop signal; killing the sandbox",
                    STOP_GRACE.as_secs()
                );
                control.signal(libc::SIGKILL);
                kill_at = None;
                killed = true;
            }
        }
    };
    let outcome = result.context("the sandbox thread failed")?;
    match outcome {
        Ok(o) => Ok((o.exit_code, o.signal, Some(o.enforcement), o.warnings)),
        Err(omac_runtime::Error::Abnormal(_)) if killed => {
            Ok((128 + libc::SIGKILL, Some(libc::SIGKILL), None, Vec::new()))
        }
        Err(e) => Err(anyhow::Error::new(e).context("running the sandbox")),
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `--no-sandbox`: the command on the host, with the session's variables.
async fn run_on_host(plan: &mut Plan, host_env: Vec<(String, String)>) -> anyhow::Result<Ran> {
    use std::os::unix::process::CommandExt;
    let argv = argv_of(&plan.loaded, &plan.args);
    let Some((prog, rest)) = argv.split_first() else {
        return Err(Failure::new(Code::Config, "the bundle's command is empty").into());
    };
    // The bundle's OMAC_* variables (skills, harness, version) that the host side does not
    // set itself, and a TMPDIR of the session's own.
    let mut env = host_env;
    for kv in &plan.loaded.config.process.env {
        if let Some((k, v)) = kv.split_once('=') {
            if k.starts_with("OMAC_") && !env.iter().any(|(x, _)| x == k) {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    let tmp = plan.rundir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    env.retain(|(k, _)| k != "TMPDIR");
    env.push(("TMPDIR".into(), tmp.display().to_string()));
    let mut cmd = std::process::Command::new(prog);
    cmd.args(rest)
        .env_clear()
        .envs(env)
        .current_dir(&plan.loaded.config.process.cwd);
    // SAFETY: the hook only calls sigemptyset and sigprocmask (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            // omac blocks the signals it forwards; the command starts with none blocked.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Failure::new(
                Code::Prerequisite,
                format!("cannot run {prog}: {e}\n  fix: install it or pass --inner CMD"),
            )
        })?;
    let pid = child.id().unwrap_or(0) as libc::pid_t;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.context("waiting for the command")?,
            s = plan.signals.recv() => {
                let Some(s) = s else { continue };
                if s.from_terminal || pid <= 0 {
                    continue;
                }
                // SAFETY: signalling our child.
                unsafe { libc::kill(pid, s.signal) };
                if signals::is_stop(s.signal) && kill_at.is_none() {
                    kill_at = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
            }
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                // SAFETY: signalling our child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                kill_at = None;
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let (code, sig) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        _ => (1, None),
    };
    Ok((code, sig, None, Vec::new()))
}

/// `--keep-running`: the facade and sidecars stay up after the agent exits, until a stop
/// signal (Ctrl-C, SIGTERM); omac then exits with the agent's code.
async fn keep_running(
    plan: &mut Plan,
    code: i32,
    socket: &std::path::Path,
    tcp: Option<&(std::net::SocketAddr, String)>,
) {
    let mut msg = format!(
        "omac: the agent exited with {code}; the facade and sidecars keep running (--keep-running) \
         at {}",
        socket.display()
    );
    if let Some((addr, token)) = tcp {
        msg.push_str(&format!(" and http://{addr}/{token}/"));
    }
    msg.push_str(": press Ctrl-C (or send SIGTERM) to stop");
    eprintln!("{msg}");
    plan.audit
        .emit("session.keep_running", json!({"socket": socket}));
    while let Some(s) = plan.signals.recv().await {
        if signals::is_stop(s.signal) {
            break;
        }
    }
}
