//! What `omac start` and `omac bundle create` add to a bundle on top of the profile: the
//! registered skills in scope (layers, sidecar plan, facade mounts), the variables of
//! reference §1.4, the tool-cache scope (granted read-write) and the sandbox briefing.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use omac_bundle::grants::Access;
use omac_bundle::harness::Harness;
use omac_bundle::profile::Resolved;
use omac_bundle::{Extras, HostFacts};

use crate::session::briefing::{self, Facts};
use crate::session::config::Config;
use crate::session::skills::{self, Active, Limits};
use crate::session::{agent_env, cache};

/// The session's additions.
pub struct Prepared {
    /// For the generator.
    pub extras: Extras,
    /// The briefing text.
    pub briefing: String,
}

/// Whether a profile gives the sandbox its own network namespace (init's bridges exist).
pub fn bridged(p: &Resolved) -> bool {
    let n = p.profile.network.clone().unwrap_or_default();
    let mode = n.mode.unwrap_or_else(|| "filtered".into());
    let enforcement = n.enforcement.unwrap_or_else(|| "kernel".into());
    mode != "open" && enforcement == "kernel"
}

/// The facade limits of the config (defaults where unset).
pub fn limits(cfg: &Config) -> Limits {
    Limits {
        max_body_bytes: cfg
            .values
            .facade
            .max_body_bytes
            .unwrap_or(crate::session::config::DEFAULT_MAX_BODY_BYTES),
        idle_timeout_secs: cfg
            .values
            .facade
            .idle_timeout_secs
            .unwrap_or(crate::session::config::DEFAULT_IDLE_TIMEOUT_SECS),
    }
}

/// `~/.cache/omac` (or `$XDG_CACHE_HOME/omac`).
pub fn cache_root(home: &Path) -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".cache"))
        .join("omac")
}

/// Builds the additions. `env_briefing`: the harness reads the briefing from the
/// environment and its own binary runs.
pub fn prepare(
    cfg: &Config,
    profile: &Resolved,
    host: &HostFacts,
    harness: Option<&'static Harness>,
    active: &[Active],
    env_briefing: bool,
) -> anyhow::Result<Prepared> {
    let (layers, sidecars, facade_mounts) = skills::records(active, limits(cfg));
    let mut mounts: Vec<String> = facade_mounts.iter().map(|m| m.mount.clone()).collect();
    mounts.sort();
    // A tool cache shared between sessions is a writable place outside the workdir: worth
    // it where packages can be downloaded, not in blocked mode, and never with scope none.
    let scope = cfg.values.cache.scope.as_deref().unwrap_or("global");
    let blocked = profile
        .profile
        .network
        .as_ref()
        .and_then(|n| n.mode.as_deref())
        == Some("blocked");
    let mut grants = Vec::new();
    let mut cache_vars = Vec::new();
    if scope != "none" && !blocked {
        let cache_dir =
            cache::scope_dir(&cache_root(&host.home), scope, &profile.name, &host.workdir);
        cache_vars = cache::prepare(&cache_dir)
            .with_context(|| format!("creating the tool cache {}", cache_dir.display()))?;
        cache_vars.push(("OMAC_CACHE_MODE".into(), "persistent".into()));
        grants.push((cache_dir, Access::READ_WRITE));
    }
    let text = match &cfg.values.sandbox.briefing {
        Some(b) => b.clone(),
        None => briefing::text(&Facts::of(profile, &host.workdir), &mounts),
    };
    let env = agent_env::fixed(&agent_env::Fixed {
        bridged: bridged(profile),
        mounts: &mounts,
        harness,
        cache: &cache_vars,
        briefing: env_briefing.then_some(text.as_str()),
    });
    Ok(Prepared {
        extras: Extras {
            env,
            grants,
            skills: layers,
            sidecars,
            facade_mounts,
        },
        briefing: text,
    })
}

/// Generates the bundle of `session` into `dir` (config.json, omac.json, rootfs/), printing
/// the generator's warnings.
pub fn write_bundle(session: &omac_bundle::Session, dir: &Path) -> anyhow::Result<()> {
    let rendered = generate(session)?;
    omac_bundle::render::write(dir, &rendered)?;
    Ok(())
}

/// [`write_bundle`] for the session's own bundle in its runtime directory, which is removed
/// when the session ends: the files are not flushed to disk.
pub fn write_session_bundle(session: &omac_bundle::Session, dir: &Path) -> anyhow::Result<()> {
    let rendered = generate(session)?;
    omac_bundle::render::write_scratch(dir, &rendered)?;
    Ok(())
}

fn generate(session: &omac_bundle::Session) -> anyhow::Result<omac_bundle::Rendered> {
    let mut warnings = Vec::new();
    let bundle = omac_bundle::generate(session, &mut warnings)?;
    for w in &warnings {
        eprintln!("omac: warning: {w}");
    }
    Ok(omac_bundle::render(&bundle))
}

/// Creates the harness's missing state directories (0700) and files on the host, so that
/// what the agent keeps there is granted and survives the session instead of landing in
/// the sandbox's scratch home. A missing `.json` state file starts as `{}`.
pub fn harness_state(h: &Harness, home: &Path) -> anyhow::Result<()> {
    for d in h.state_dirs {
        let p = home.join(d);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .with_context(|| {
                    format!("creating {}'s state directory {}", h.name, p.display())
                })?;
        }
    }
    for f in h.state_files {
        let p = home.join(f);
        if std::fs::symlink_metadata(&p).is_err() {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .with_context(|| format!("creating {}'s state file {}", h.name, p.display()))?;
            if f.ends_with(".json") {
                use std::io::Write;
                file.write_all(b"{}\n")
                    .with_context(|| format!("writing {}", p.display()))?;
            }
        }
    }
    Ok(())
}
