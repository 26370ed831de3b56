//! `omac run DIR [-- ARGS]` and `omac sandbox [--profile P] -- CMD`.
//!
//! A bundle with an `omac.json` runs as a session (see `session::host`): its skills'
//! sidecars from the layer store, the facade, the egress proxy in filtered mode, its open
//! and published ports, the audit log. Headless by design: no prompt ever; secrets come
//! from the keychain or the environment. A plain OCI bundle (no `omac.json`) just runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use omac_runtime::{Level, Outcome, RunOptions};
use serde_json::json;

use crate::cli::{CreateArgs, RunArgs, SandboxArgs};
use crate::exit::{Code, Failure};
use crate::session::{self, host, prepare, rundir, signals, skills, values, AuditFlags};

/// Runs a plain OCI bundle with the host environment, forwarding signals.
fn execute(
    loaded: &omac_bundle::Loaded,
    sockets: Vec<(String, PathBuf)>,
    args: Vec<String>,
    verbose: bool,
) -> anyhow::Result<Outcome> {
    // Single-threaded here: blocking now covers every thread omac will have.
    omac_runtime::block_forwarded_signals().context("blocking signals")?;
    let options = RunOptions {
        args,
        sockets,
        verbose,
        forward_signals: true,
        // Tests exercise the re-executed stage that multi-threaded callers get.
        stage_exe: std::env::var_os("OMAC_STAGE_EXEC").map(|_| PathBuf::from("/proc/self/exe")),
        t0: crate::STARTED.get().copied(),
        ..RunOptions::from_env()
    };
    Ok(omac_runtime::run(loaded, &options)?)
}

/// Prints the enforcement achieved (`--verbose`).
fn report(e: Option<&omac_runtime::Enforcement>, code: i32, signal: Option<i32>) {
    if let Some(e) = e {
        eprintln!(
            "omac: sandbox mode {:?}, Landlock ABI {}",
            e.mode, e.landlock_abi
        );
        for (name, s) in e.layers() {
            let level = match s.level {
                Level::Full => "full",
                Level::Partial => "partial",
                Level::None => "none",
            };
            eprintln!("omac:   {name:<16} {level:<8} {}", s.detail);
        }
    }
    match signal {
        Some(s) => eprintln!("omac: the agent was killed by signal {s} (exit {code})"),
        None => eprintln!("omac: the agent exited with {code}"),
    }
}

fn parse_sockets(sockets: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    sockets
        .iter()
        .map(|s| match s.split_once('=') {
            Some((name, path)) if !name.is_empty() && path.starts_with('/') => {
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ => Err(Failure::new(
                Code::Misuse,
                format!("--socket {s:?}: write NAME=/absolute/path"),
            )
            .into()),
        })
        .collect()
}

/// `omac run`.
pub fn run(args: RunArgs, verbose: bool) -> anyhow::Result<i32> {
    let started = Instant::now();
    let sockets = parse_sockets(&args.sockets)?;
    // The stage was started before the command line was parsed (see `main`), unless
    // options came before `run`; a plain OCI bundle uses it too.
    prestart();
    let loaded = match omac_bundle::load(&args.dir) {
        Ok(l) => l,
        Err(e) => {
            omac_runtime::dismiss_stage();
            return Err(e.into());
        }
    };
    let flags = AuditFlags {
        path: args.audit_log.clone(),
        off: args.no_audit,
    };
    send_head(&loaded, verbose);
    let code = session_run(
        loaded,
        sockets,
        args.args,
        &flags,
        args.json,
        verbose,
        started,
        Some(&args.dir),
    );
    omac_runtime::dismiss_stage();
    code
}

/// A session runs its sandbox from a multi-threaded process, which must not fork: its
/// stage is forked now, while omac is still single-threaded (and holds no secret), and
/// (see [`send_head`]) the user namespace, init's clone into the sandbox's namespaces and
/// the bundle's view overlap with the session's own preparation (the facade, the proxy,
/// the audit log) instead of following them. (`OMAC_STAGE_EXEC` keeps the stage
/// re-executed at run time, for the tests of that path.)
pub(crate) fn prestart() {
    if std::env::var_os("OMAC_STAGE_EXEC").is_none() {
        if let Err(e) = omac_runtime::prestart_stage() {
            tracing::debug!("starting the sandbox stage ahead: {e}");
        }
    }
}

/// Lets the stage started ahead create the sandbox's namespaces and view for `loaded`.
pub(super) fn send_head(loaded: &omac_bundle::Loaded, verbose: bool) {
    make_control_dirs(loaded);
    let t0 = crate::STARTED.get().copied();
    if let Err(e) = omac_runtime::send_head(loaded, verbose, t0) {
        tracing::debug!("starting the sandbox's namespaces ahead: {e}");
    }
}

/// Makes omac's missing control directories (the workdir's `.omac`, the user's
/// `~/.config/omac`: profiles and config) that the bundle covers. A bundle hides a missing
/// one inside a writable grant behind an empty read-only tmpfs so that the agent cannot
/// create it. Its mount point would otherwise be made by init and removed after the run,
/// and two runs would race on it: a mount point removed on the host is unmounted in every
/// namespace, so one run's removal would take the other's cover away, or make its mount
/// fail. They stay, as crun and runc leave the mount points they make.
fn make_control_dirs(loaded: &omac_bundle::Loaded) {
    let Some(ext) = &loaded.ext else {
        return;
    };
    let Ok(host) = omac_bundle::HostFacts::from_process(std::path::Path::new(&ext.workdir.path))
    else {
        return;
    };
    for dir in omac_bundle::grants::control_dirs(&host) {
        let covered = loaded
            .config
            .mounts
            .iter()
            .any(|m| std::path::Path::new(&m.destination) == dir);
        if covered && std::fs::symlink_metadata(&dir).is_err() {
            // A failure leaves the mount point to the runtime, which says what is wrong.
            let _ = std::fs::create_dir_all(&dir);
        }
    }
}

/// Runs a loaded bundle: as a session when it has an `omac.json`, plainly otherwise.
#[allow(clippy::too_many_arguments)]
fn session_run(
    loaded: omac_bundle::Loaded,
    sockets: Vec<(String, PathBuf)>,
    extra_args: Vec<String>,
    flags: &AuditFlags,
    json_summary: bool,
    verbose: bool,
    started: Instant,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let Some(ext) = loaded.ext.clone() else {
        let o = execute(&loaded, sockets, extra_args, verbose)?;
        if verbose {
            report(Some(&o.enforcement), o.exit_code, o.signal);
        }
        if json_summary {
            println!(
                "{}",
                json!({
                    "omac": env!("CARGO_PKG_VERSION"), "mode": "run", "exit_code": o.exit_code,
                    "signal": o.signal, "duration_ms": started.elapsed().as_millis() as u64,
                    "sandboxed": true, "enforcement": o.enforcement, "denials": {"network": 0},
                    "warnings": o.warnings,
                })
            );
        }
        return Ok(o.exit_code);
    };
    // First: no thread exists yet, so blocking here covers every thread omac will have.
    let signals = signals::install()?;
    let env = omac_skills::Env::from_process(Some(std::path::Path::new(&ext.workdir.path)))?;
    let config_dir = crate::paths::config_dir();
    let cfg = session::config::load(config_dir.as_deref(), &env.workdir)?;
    let active = if ext.sidecars.is_empty() {
        Vec::new()
    } else {
        let store = crate::commands::skillctx::store(&env)?;
        skills::from_bundle(&env, &ext, &store, prepare::limits(&cfg))?
    };
    for (name, _) in &sockets {
        if name == "facade.sock" && !active.is_empty() {
            return Err(Failure::new(
                Code::Misuse,
                "--socket facade.sock=...: this bundle runs skills, whose facade omac provides\n  \
                 fix: drop the option",
            )
            .into());
        }
    }
    let run_id = session::audit::new_run_id();
    let audit = session::open_audit(&cfg, flags, &run_id, "run");
    // Headless by design: never a prompt, whatever stdin is.
    let vals = values::resolve(&env, &active, false, &|s| audit.redact(s))?;
    let root = rundir::root()?;
    rundir::clean_stale(&root);
    let mut rd = rundir::RunDir::create(&root, &run_id)?;
    if std::env::var_os("OMAC_KEEP_RUNDIR").is_some() {
        rd.keep();
    }
    audit.emit(
        "session.start",
        json!({
            "bundle": dir,
            "workdir": ext.workdir.path,
            "harness": ext.harness,
            "profile": ext.profile.name,
            "network": ext.network.mode,
            "argv": loaded.config.process.args,
            "args": extra_args,
            "skills": active.iter().map(|a| json!({"name": a.name, "digest": a.digest})).collect::<Vec<_>>(),
            "sandboxed": true,
            "omac_json_digest": loaded.config.annotations.get(omac_bundle::ext::ANNOTATION),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    );
    let withheld = crate::commands::start::withheld(&active);
    let plan = host::Plan {
        loaded: std::sync::Arc::new(loaded),
        active,
        values: vals,
        rundir: rd,
        audit: audit.clone(),
        args: extra_args,
        sandboxed: true,
        keep_running: false,
        verbose,
        logs_dir: session::logs_dir(&env.workdir),
        base_env: crate::commands::start::base_env(&cfg),
        user_config_dir: config_dir,
        dialogs: false,
        signals,
        t0: crate::STARTED.get().copied(),
        withheld,
        user_sockets: sockets,
    };
    let result = host::run(plan);
    if verbose {
        if let Ok(r) = &result {
            report(r.enforcement.as_ref(), r.exit_code, r.signal);
        }
    }
    session::finish(result, &audit, json_summary, "run", started)
}

/// `omac sandbox`: a bundle in a temporary directory, run, then removed.
pub fn sandbox(workdir: &std::path::Path, args: SandboxArgs, verbose: bool) -> anyhow::Result<i32> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("omac-sandbox-")
        .tempdir()
        .context("creating a temporary directory for the bundle")?;
    let out = tmp.path().join("bundle");
    super::bundle::create_with(
        workdir,
        CreateArgs {
            profile: args.profile,
            harness: None,
            out: out.clone(),
            command: args.command,
        },
        false,
    )?;
    prestart();
    let loaded = match omac_bundle::load(&out) {
        Ok(l) => l,
        Err(e) => {
            omac_runtime::dismiss_stage();
            return Err(e.into());
        }
    };
    send_head(&loaded, verbose);
    let code = session_run(
        loaded,
        Vec::new(),
        Vec::new(),
        &AuditFlags::default(),
        false,
        verbose,
        started,
        None,
    );
    omac_runtime::dismiss_stage();
    drop(tmp);
    code
}
