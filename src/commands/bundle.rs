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

/// `omac bundle create`.
pub fn create(workdir: &Path, args: CreateArgs) -> anyhow::Result<i32> {
    let host = HostFacts::from_process(workdir)?;
    let lookup = Lookup::new(crate::paths::config_dir().as_deref(), &host.workdir);
    let profile = lookup.resolve(args.profile.as_deref().unwrap_or("default"))?;
    let harness = match &args.harness {
        Some(h) => Some(harness_named(h)?),
        None if args.command.is_empty() => Some(harness::default_harness()),
        None => None,
    };
    let session = Session {
        profile: &profile,
        harness,
        command: args.command,
        host: &host,
        extras: Default::default(),
    };
    let mut warnings = Vec::new();
    let bundle = omac_bundle::generate(&session, &mut warnings)?;
    for w in &warnings {
        eprintln!("omac: warning: {w}");
    }
    let rendered = omac_bundle::render(&bundle);
    omac_bundle::render::write(&args.out, &rendered)?;
    tracing::info!(dir = %args.out.display(), "bundle written");
    Ok(0)
}

/// `omac bundle explain`.
pub fn explain(_dir: &Path, _json: bool) -> anyhow::Result<i32> {
    Err(Failure::new(Code::Generic, "bundle explain is not implemented yet").into())
}

/// `omac bundle diff`.
pub fn diff(_a: &Path, _b: &Path, _json: bool) -> anyhow::Result<i32> {
    Err(Failure::new(Code::Generic, "bundle diff is not implemented yet").into())
}

/// `omac bundle verify`.
pub fn verify(_dir: &Path, _schema: Option<PathBuf>) -> anyhow::Result<i32> {
    Err(Failure::new(Code::Generic, "bundle verify is not implemented yet").into())
}
