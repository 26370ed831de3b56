//! `omac start [HARNESS] [FLAGS] [-- INNER ARGS]`: the agent in a sandbox with its skills.
//!
//! The flow (reference §1.2, reshaped around the bundle): config, harness, profile, the
//! registered skills in scope (unregistered: exit 4; changed: refused unless
//! `--accept-skill-changes`), their secrets and fields (missing: exit 9), the harness's
//! state directories, the bundle generated into the session's runtime directory, then the
//! host side (sidecars, facade, proxy, ports) and the run, torn down on every way out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use omac_bundle::harness::{self, Briefing};
use omac_bundle::profile::Lookup;
use omac_bundle::{HostFacts, Session};
use serde_json::json;

use crate::cli::StartArgs;
use crate::exit::{Code, Failure};
use crate::session::{self, host, prepare, rundir, signals, skills, values, AuditFlags};

/// Checks `--open-port` / `--publish` values (exit 2).
fn check_ports(flag: &str, ports: &[u16]) -> anyhow::Result<()> {
    for p in ports {
        if *p == 0 || omac_bundle::generate::RESERVED_PORTS.contains(p) {
            return Err(Failure::new(
                Code::Misuse,
                format!(
                    "{flag} {p}: use a port from 1 to 65535 other than {} (omac's own bridges)",
                    omac_bundle::generate::RESERVED_PORTS
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Whether `prog` is found: a path that exists, or a name on `path`.
pub fn on_path(prog: &str, path: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).is_file();
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(prog).is_file())
}

/// `omac start`.
pub fn start(workdir: &Option<PathBuf>, args: StartArgs, verbose: bool) -> anyhow::Result<i32> {
    // The sandbox's stage starts now, while omac is single-threaded and holds no secret
    // (see `run::prestart`); it gets the bundle's head once the bundle is written.
    if !args.no_sandbox {
        super::run::prestart();
    }
    let code = start_session(workdir, args, verbose);
    omac_runtime::dismiss_stage();
    code
}

fn start_session(workdir: &Option<PathBuf>, args: StartArgs, verbose: bool) -> anyhow::Result<i32> {
    let started = Instant::now();
    // First: no thread exists yet, so blocking here covers every thread omac will have.
    let signals = signals::install()?;
    check_ports("--open-port", &args.open_ports)?;
    check_ports("--publish", &args.publish)?;
    let env = crate::commands::skill_env(workdir)?;
    let config_dir = crate::paths::config_dir();
    let cfg = session::config::load(config_dir.as_deref(), &env.workdir)?;
    let harness = match args.harness.clone().or(cfg.values.harness.clone()) {
        Some(t) => crate::commands::bundle::harness_named(&t)?,
        None => harness::default_harness(),
    };
    let host = HostFacts::from_process(&env.workdir)?;
    let profile_name = args
        .profile
        .clone()
        .or(cfg.values.profile.clone())
        .unwrap_or_else(|| "default".into());
    let lookup = Lookup::new(config_dir.as_deref(), &host.workdir);
    let mut profile = lookup.resolve(&profile_name)?;
    if !args.open_ports.is_empty() || !args.publish.is_empty() {
        let n = profile.profile.network.get_or_insert_with(Default::default);
        n.open_port
            .extend(args.open_ports.iter().map(|p| i64::from(*p)));
        n.publish_port
            .extend(args.publish.iter().map(|p| i64::from(*p)));
    }

    // The command: the harness's binary (with the briefing), or --inner.
    let (mut command, own_binary) = match &args.inner {
        Some(c) => {
            let v: Vec<String> = c.split_whitespace().map(str::to_string).collect();
            if v.is_empty() {
                return Err(Failure::new(Code::Misuse, "--inner is empty: name a program").into());
            }
            (v, false)
        }
        None => (vec![harness.binary.to_string()], true),
    };
    if !on_path(&command[0], &host.path) {
        let fix = if own_binary {
            format!(
                "install {} (its `{}` must be on PATH), pick another harness ({}), or run a \
                 command with --inner CMD",
                harness.name,
                harness.binary,
                harness::names()
            )
        } else {
            "check the --inner command (a program on PATH or a path)".into()
        };
        return Err(Failure::new(
            Code::Prerequisite,
            format!(
                "`{}` is not installed here (not found on PATH)\n  fix: {fix}",
                command[0]
            ),
        )
        .into());
    }

    // Skills, their approval and their values.
    let store = crate::commands::skillctx::store(&env)?;
    let active = skills::in_scope(&env, harness, &store, args.accept_skill_changes)?;
    let run_id = session::audit::new_run_id();
    let audit = session::open_audit(
        &cfg,
        &AuditFlags {
            path: args.audit_log.clone(),
            off: args.no_audit,
        },
        &run_id,
        "start",
    );
    for a in active.iter().filter(|a| a.accepted_change) {
        eprintln!(
            "omac: WARNING: skill {} CHANGED since you registered it and runs anyway \
             (--accept-skill-changes): layer {} from {}. Review it and run `omac register {} --force` \
             to approve it for good.",
            a.name,
            a.digest,
            a.source.display(),
            a.name
        );
        audit.emit(
            "skill.change_accepted",
            json!({"skill": a.name, "digest": a.digest, "source": a.source}),
        );
    }
    let interactive = crate::secrets::prompt::interactive();
    let mut vals = values::resolve(&env, &active, interactive, &|s| audit.redact(s))?;
    // The sidecars start now: their boot (tens of milliseconds for an interpreter) overlaps
    // the bundle's generation and the facade's and the proxy's bring-up.
    let logs_dir = session::logs_dir(&env.workdir);
    let (_, recorded, _) = skills::records(&active, prepare::limits(&cfg));
    let early = host::start_sidecars(host::SidecarSetup {
        active: &active,
        values: &mut vals,
        recorded: &recorded,
        workdir: &host.workdir,
        harness: Some(harness.name),
        base_env: base_env(&cfg),
        logs_dir: &logs_dir,
        audit: &audit,
    })?;
    if args.no_sandbox {
        eprintln!(
            "omac: WARNING: --no-sandbox: {} runs on your machine WITHOUT a sandbox: it can read \
             ~/.ssh, your keychain and every file you can. Use it only to debug omac itself.",
            command[0]
        );
    }

    // The bundle.
    prepare::harness_state(harness, &host.home)?;
    let env_briefing = own_binary && harness.briefing == Briefing::Environment;
    let prepared = prepare::prepare(&cfg, &profile, &host, Some(harness), &active, env_briefing)?;
    if own_binary {
        command.extend(session::briefing::args(harness, &prepared.briefing));
    }
    command.extend(args.args.iter().cloned());
    let root = rundir::root()?;
    for d in rundir::clean_stale(&root) {
        tracing::debug!("removed stale session directory {}", d.display());
    }
    let mut rd = rundir::RunDir::create(&root, &run_id)?;
    if std::env::var_os("OMAC_KEEP_RUNDIR").is_some() {
        rd.keep();
    }
    let bundle_dir = rd.join("bundle");
    let session = Session {
        profile: &profile,
        harness: Some(harness),
        command,
        host: &host,
        extras: prepared.extras,
    };
    crate::session::prepare::write_session_bundle(&session, &bundle_dir)?;
    let loaded = omac_bundle::load(&bundle_dir).context("loading the session's bundle")?;
    if !args.no_sandbox {
        super::run::send_head(&loaded, verbose);
    }
    if verbose {
        eprintln!(
            "omac: session {run_id}: harness {}, profile {}, {} skill(s), bundle {} (in {})",
            harness.name,
            profile.name,
            active.len(),
            bundle_dir.display(),
            rd.path().display()
        );
    }
    let ext = loaded.ext.as_ref();
    audit.emit(
        "session.start",
        json!({
            "workdir": host.workdir,
            "harness": harness.name,
            "profile": profile.name,
            "profile_sources": profile.sources,
            "network": ext.map(|e| e.network.mode.clone()),
            "argv": loaded.config.process.args,
            "skills": active.iter().map(|a| json!({"name": a.name, "digest": a.digest})).collect::<Vec<_>>(),
            "sandboxed": !args.no_sandbox,
            "omac_json_digest": loaded.config.annotations.get(omac_bundle::ext::ANNOTATION),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    );
    let withheld = withheld(&active);
    let plan = host::Plan {
        loaded: std::sync::Arc::new(loaded),
        active,
        values: vals,
        rundir: rd,
        audit: audit.clone(),
        args: Vec::new(),
        sandboxed: !args.no_sandbox,
        keep_running: args.keep_running,
        verbose,
        logs_dir,
        base_env: base_env(&cfg),
        user_config_dir: config_dir,
        dialogs: interactive,
        signals,
        t0: crate::STARTED.get().copied(),
        withheld,
        user_sockets: Vec::new(),
    };
    session::finish(
        host::run_with(plan, early),
        &audit,
        args.json,
        "start",
        started,
    )
}

/// The host variables every sidecar receives (config.yaml, or the Go omac's default).
pub fn base_env(cfg: &session::config::Config) -> Vec<String> {
    cfg.values
        .facade
        .base_env_passthrough
        .clone()
        .unwrap_or_else(|| {
            session::config::DEFAULT_BASE_ENV
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
}

/// Host variables that belong to sidecars and never reach the agent, whatever the profile
/// passes: every secret's name (a secret may come from the variable of that name) and the
/// skills' `env_passthrough` (except the everyday ones, `PATH`, `HOME`, `LANG`...).
/// `OMAC_SECRET_<NAME>` is withheld anyway, with every `OMAC_*`.
pub fn withheld(active: &[skills::Active]) -> Vec<String> {
    let everyday = |n: &str| {
        omac_bundle::env::BASE_ALLOW
            .iter()
            .chain(omac_bundle::env::CONVENIENCE_ALLOW)
            .any(|p| omac_bundle::env::matches(p, n))
    };
    let mut v = Vec::new();
    for a in active {
        let s = a.sidecar();
        for sec in &s.secrets {
            v.push(sec.name.clone());
        }
        for n in &s.env_passthrough {
            if !everyday(n) {
                v.push(n.clone());
            }
        }
    }
    v.sort();
    v.dedup();
    v
}
