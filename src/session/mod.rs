//! Sessions: what `omac start` and `omac run DIR` share on the host side. `prepare` and
//! `skills` turn a profile and the registered skills into a bundle's inputs; `values`
//! resolves secrets and config; `host` brings up sidecars, facade, proxy and ports, runs
//! the bundle and tears everything down; `audit` records it all.

pub mod agent_env;
pub mod audit;
pub mod briefing;
pub mod cache;
pub mod config;
pub mod host;
pub mod ports;
pub mod prepare;
pub mod progress;
pub mod rundir;
pub mod signals;
pub mod skills;
pub mod values;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

use audit::Audit;
use host::Report;

/// Where a workdir's sidecar logs and facade access log go:
/// `~/.local/state/omac/logs/<first 12 hex of sha256(workdir)>/` (kept between sessions,
/// rotated by size).
pub fn logs_dir(workdir: &Path) -> PathBuf {
    let hex = hex::encode(Sha256::digest(workdir.display().to_string().as_bytes()));
    crate::paths::state_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("omac-state"))
        .join("logs")
        .join(&hex[..12])
}

/// `--audit-log PATH` and `--no-audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFlags {
    /// Where to write.
    pub path: Option<PathBuf>,
    /// Write nothing.
    pub off: bool,
}

/// Opens the audit log for a run (flags first, then config.yaml, then the default path). A
/// log that cannot be opened is reported and the session goes on without one.
pub fn open_audit(cfg: &config::Config, flags: &AuditFlags, run_id: &str, mode: &str) -> Audit {
    if flags.off || (flags.path.is_none() && cfg.values.audit.enabled == Some(false)) {
        return Audit::disabled();
    }
    let path = flags
        .path
        .clone()
        .or_else(|| cfg.values.audit.path.clone())
        .or_else(audit::default_path);
    let Some(path) = path else {
        eprintln!("omac: warning: no audit log (neither XDG_STATE_HOME nor HOME is set)");
        return Audit::disabled();
    };
    match Audit::open(&path, run_id, mode) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "omac: warning: cannot open the audit log {}: {e}; this session is not audited \
                 (fix the path, or pass --audit-log PATH / --no-audit)",
                path.display()
            );
            Audit::disabled()
        }
    }
}

/// Ends a session: `session.stop` in the audit log, the `--json` summary on stdout, and the
/// exit code (the agent's, or the failure's).
pub fn finish(
    result: anyhow::Result<Report>,
    audit: &Audit,
    json_summary: bool,
    mode: &str,
    started: Instant,
) -> anyhow::Result<i32> {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (code, summary) = match &result {
        Ok(r) => (r.exit_code, summary(r, audit, mode, duration_ms, None)),
        Err(e) => {
            let code = crate::exit::code_for(e) as i32;
            (code, failed(audit, mode, duration_ms, code, e))
        }
    };
    audit.emit(
        "session.stop",
        json!({
            "exit_code": code,
            "duration_ms": duration_ms.round() as u64,
            "error": result.as_ref().err().map(|e| format!("{e:#}")),
            "stopped_by": result.as_ref().ok().and_then(|r| r.stopped_by.clone()),
        }),
    );
    if json_summary {
        println!("{summary}");
    }
    result.map(|r| r.exit_code)
}

fn summary(
    r: &Report,
    audit: &Audit,
    mode: &str,
    ms: f64,
    error: Option<String>,
) -> serde_json::Value {
    json!({
        "omac": env!("CARGO_PKG_VERSION"),
        "mode": mode,
        "run_id": audit.run_id(),
        "exit_code": r.exit_code,
        "signal": r.signal,
        "duration_ms": (ms * 10.0).round() / 10.0,
        "sandboxed": r.sandboxed,
        "enforcement": r.enforcement,
        "denials": {"network": r.net_denied},
        "network": {"allowed": r.net_allowed, "denied": r.net_denied},
        "facade": {"requests": r.facade_requests, "errors": r.facade_errors},
        "sidecars": r.sidecars,
        "warnings": r.warnings,
        "stopped_by": r.stopped_by,
        "error": error,
    })
}

fn failed(audit: &Audit, mode: &str, ms: f64, code: i32, e: &anyhow::Error) -> serde_json::Value {
    json!({
        "omac": env!("CARGO_PKG_VERSION"),
        "mode": mode,
        "run_id": audit.run_id(),
        "exit_code": code,
        "signal": null,
        "duration_ms": (ms * 10.0).round() / 10.0,
        "sandboxed": null,
        "enforcement": null,
        "denials": {"network": 0},
        "error": format!("{e:#}"),
    })
}
