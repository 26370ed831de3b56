//! `omac bundle create|explain|diff|verify`.

use std::path::{Path, PathBuf};

use omac_bundle::profile::Lookup;
use omac_bundle::{harness, HostFacts, Session};

use crate::cli::CreateArgs;
use crate::exit::{Code, Failure};

/// Resolves a harness token or refuses it with the list of known ones.
pub fn harness_named(token: &str) -> anyhow::Result<&'static harness::Harness> {
    harness::find(token).ok_or_else(|| {
        Failure::new(
            Code::Misuse,
            format!(
                "unknown harness {token:?}; use one of: {}",
                harness::names()
            ),
        )
        .into()
    })
}

/// `omac bundle create`: the bundle `omac start` would run, with the registered skills in
/// scope as layers and their sidecar plan (unregistered skills: exit 4; changed: exit 3).
pub fn create(workdir: &Path, args: CreateArgs) -> anyhow::Result<i32> {
    create_with(workdir, args, true)
}

/// Writes a bundle; `with_skills` false leaves skills out (`omac sandbox`).
pub fn create_with(workdir: &Path, args: CreateArgs, with_skills: bool) -> anyhow::Result<i32> {
    let host = HostFacts::from_process(workdir)?;
    let config_dir = crate::paths::config_dir();
    let env = omac_skills::Env::from_process(Some(workdir))?;
    let cfg = crate::session::config::load(config_dir.as_deref(), &env.workdir)?;
    let lookup = Lookup::new(config_dir.as_deref(), &host.workdir);
    let profile_name = args
        .profile
        .clone()
        .or(cfg.values.profile.clone())
        .unwrap_or_else(|| "default".into());
    let profile = lookup.resolve(&profile_name)?;
    let harness = match &args.harness {
        Some(h) => Some(harness_named(h)?),
        None if args.command.is_empty() => Some(harness::default_harness()),
        None => None,
    };
    // Skills are in the scope of the harness (the default one when only a command is given).
    let scope_harness = harness.unwrap_or_else(harness::default_harness);
    let active = if with_skills {
        let store = crate::commands::skillctx::store(&env)?;
        crate::session::skills::in_scope(&env, scope_harness, &store, false)?
    } else {
        Vec::new()
    };
    let own_binary = args.command.is_empty();
    if let Some(h) = harness {
        crate::session::prepare::harness_state(h, &host.home)?;
    }
    let env_briefing = own_binary
        && harness.is_some_and(|h| h.briefing == omac_bundle::harness::Briefing::Environment);
    let prepared =
        crate::session::prepare::prepare(&cfg, &profile, &host, harness, &active, env_briefing)?;
    let mut command = args.command;
    if let (true, Some(h)) = (own_binary, harness) {
        command = vec![h.binary.to_string()];
        command.extend(crate::session::briefing::args(h, &prepared.briefing));
    }
    let session = Session {
        profile: &profile,
        harness,
        command,
        host: &host,
        extras: prepared.extras,
    };
    crate::session::prepare::write_bundle(&session, &args.out)?;
    tracing::info!(dir = %args.out.display(), skills = active.len(), "bundle written");
    Ok(0)
}

/// `omac bundle explain`.
pub fn explain(dir: &Path, json: bool) -> anyhow::Result<i32> {
    let loaded = omac_bundle::load(dir)?;
    let x = omac_bundle::explain::explain(&loaded);
    let out = if json {
        omac_bundle::explain::to_json(&x)
    } else {
        omac_bundle::explain::text::render(&x).into_bytes()
    };
    write_stdout(&out)?;
    Ok(0)
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `omac bundle diff`: exit 0 when the bundles allow the same, 1 when they differ.
pub fn diff(a: &Path, b: &Path, json: bool) -> anyhow::Result<i32> {
    let la = omac_bundle::load(a)?;
    let lb = omac_bundle::load(b)?;
    let d = omac_bundle::diff::diff(&la, &lb);
    let out = if json {
        omac_bundle::diff::to_json(&d)
    } else {
        omac_bundle::diff::render(&d).into_bytes()
    };
    write_stdout(&out)?;
    Ok(if d.is_empty() { 0 } else { 1 })
}

/// `omac bundle verify`: exit 0 when every check passes, 3 when the bundle is invalid.
pub fn verify(dir: &Path, schema: Option<PathBuf>) -> anyhow::Result<i32> {
    let layer_digest =
        |d: &std::path::Path| omac_skills::layer::digest(d).map_err(|e| e.to_string());
    let opts = omac_bundle::verify::Options {
        schema_dir: schema.as_deref(),
        layer_digest: Some(&layer_digest),
    };
    let report = omac_bundle::verify::verify(dir, &opts);
    write_stdout(report.render().as_bytes())?;
    Ok(if report.passed() {
        0
    } else {
        Code::Config as i32
    })
}
