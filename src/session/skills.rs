//! The skills of a session: the registered skills in the harness's scope, checked against
//! their approved layers, turned into what the bundle records (layers, the sidecar plan,
//! facade mounts); and, for a bundle made earlier, the layers its plan names, found in the
//! store and checked against the plan.

use std::path::{Path, PathBuf};

use omac_bundle::ext::{self, FacadeMount, Sidecar, SkillLayer};
use omac_bundle::harness::Harness;
use omac_skills::approval::{self, Runnable};
use omac_skills::layer::{Pin, Store};
use omac_skills::meta::{Meta, META_FILE};
use omac_skills::{discover, registry, Env, Scope};

use crate::exit::{Code, Failure};

/// A skill whose sidecar the session runs.
#[derive(Debug)]
pub struct Active {
    /// The skill's name.
    pub name: String,
    /// Where it is registered (decides its keychain scope).
    pub scope: Scope,
    /// `omac.yaml` as in the layer that runs.
    pub meta: Meta,
    /// `sha256:<hex>` of the layer.
    pub digest: String,
    /// The layer directory in the store (the sidecar's working directory).
    pub layer: PathBuf,
    /// The skill directory the layer was made from.
    pub source: PathBuf,
    /// Holds the layer against `omac skills gc` while the session runs.
    pub _pin: Option<Pin>,
    /// It changed since registration and runs anyway (`--accept-skill-changes`).
    pub accepted_change: bool,
}

impl Active {
    /// The sidecar block (every active skill has one).
    pub fn sidecar(&self) -> &omac_skills::meta::Sidecar {
        self.meta
            .sidecar
            .as_ref()
            .expect("active skills have a sidecar")
    }

    /// Its facade mount.
    pub fn mount(&self) -> String {
        self.sidecar().mount_or(&self.name).to_string()
    }
}

/// Facade defaults for routes whose skill sets no limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
}

/// The registered skills `harness` sees from `env.workdir`, checked. Exit 4 lists the
/// skills found but not registered; exit 3 lists the ones that changed since registration
/// (unless `accept_changes`); a registered skill whose directory is gone is skipped with a
/// warning.
pub fn in_scope(
    env: &Env,
    harness: &Harness,
    store: &Store,
    accept_changes: bool,
) -> anyhow::Result<Vec<Active>> {
    let found = discover::discover(env, harness)?;
    let registered = registry::merged(env, Some(harness))?;
    let mut unregistered = Vec::new();
    for f in &found {
        let ok = registered
            .iter()
            .any(|r| r.entry.name == f.name && same_dir(&r.dir, &f.dir));
        if !ok {
            unregistered.push(f);
        }
    }
    if !unregistered.is_empty() {
        let mut msg = format!(
            "{} skill(s) in scope of {} are not registered, so omac will not start their sidecars \
             (a skill runs code on your machine: register it after reviewing it):",
            unregistered.len(),
            harness.name
        );
        for f in &unregistered {
            msg.push_str(&format!("\n  {} ({})", f.name, f.dir.display()));
        }
        msg.push_str("\n  fix: run");
        for f in &unregistered {
            msg.push_str(&format!("\n    omac register {}", f.name));
        }
        return Err(Failure::new(Code::Prerequisite, msg).into());
    }
    let mut out = Vec::new();
    let mut changed = Vec::new();
    for r in registered {
        if !r.dir.join(META_FILE).is_file() {
            eprintln!(
                "omac: warning: skill {} is registered but {} is gone; skipped (omac deregister --prune removes it)",
                r.entry.name,
                r.dir.display()
            );
            continue;
        }
        let skill = omac_skills::load(&r.dir)?;
        if skill.meta.sidecar.is_none() {
            continue;
        }
        let run: Runnable = match approval::runnable(store, &r.entry, &r.dir, accept_changes) {
            Ok(x) => x,
            Err(e @ omac_skills::Error::Changed { .. }) => {
                changed.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // The layer's omac.yaml is what runs; it is the approved content.
        let meta = layer_meta(&run.path)?;
        out.push(Active {
            name: r.entry.name.clone(),
            scope: r.scope,
            meta,
            digest: run.digest,
            layer: run.path,
            source: r.dir,
            _pin: Some(run.pin),
            accepted_change: run.accepted_change,
        });
    }
    if !changed.is_empty() {
        return Err(Failure::new(Code::Config, changed.join("\n")).into());
    }
    check_mounts(out.iter().map(|a| (a.name.as_str(), a.mount())))?;
    Ok(out)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Refuses two skills on one mount (exit 3).
fn check_mounts<'a>(mounts: impl Iterator<Item = (&'a str, String)>) -> anyhow::Result<()> {
    let mut seen: Vec<(&str, String)> = Vec::new();
    for (skill, mount) in mounts {
        if let Some((other, _)) = seen.iter().find(|(_, m)| *m == mount) {
            return Err(Failure::new(
                Code::Config,
                format!(
                    "skills {other} and {skill} both serve the facade mount /{mount}/\n  \
                     fix: change sidecar.mount in one of their omac.yaml files"
                ),
            )
            .into());
        }
        seen.push((skill, mount));
    }
    Ok(())
}

/// Reads and validates `omac.yaml` of a layer in the store (named by digest, not by skill).
pub fn layer_meta(layer: &Path) -> anyhow::Result<Meta> {
    let path = layer.join(META_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|e| omac_skills::Error::io("reading", &path, e))?;
    let (meta, _) = omac_skills::meta::parse(&text, &path)?;
    meta.validate(&path, None)?;
    Ok(meta)
}

/// The sidecar plan `omac.json` records for a skill.
pub fn plan(name: &str, meta: &Meta, limits: Limits) -> Option<Sidecar> {
    let s = meta.sidecar.as_ref()?;
    let h = s.health();
    let l = s.limits.clone().unwrap_or_default();
    Some(Sidecar {
        skill: name.to_string(),
        mount: s.mount_or(name).to_string(),
        command: s.command.clone(),
        health: ext::Health {
            path: h.path,
            initial_delay_ms: h.initial_delay_ms,
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
        },
        env: s.env_passthrough.clone(),
        secrets: s.secrets.iter().map(|x| x.name.clone()).collect(),
        config: s.config.iter().map(|x| x.name.clone()).collect(),
        max_body_bytes: l
            .max_body_bytes
            .filter(|n| *n > 0)
            .unwrap_or(limits.max_body_bytes),
        idle_timeout_secs: l
            .idle_timeout_secs
            .filter(|n| *n > 0)
            .unwrap_or(limits.idle_timeout_secs),
    })
}

/// What the bundle records about the active skills: layers, the sidecar plan, mounts.
pub fn records(
    active: &[Active],
    limits: Limits,
) -> (Vec<SkillLayer>, Vec<Sidecar>, Vec<FacadeMount>) {
    let mut layers = Vec::new();
    let mut sidecars = Vec::new();
    let mut mounts = Vec::new();
    for a in active {
        layers.push(SkillLayer {
            name: a.name.clone(),
            digest: a.digest.clone(),
            source: a.source.display().to_string(),
        });
        if let Some(p) = plan(&a.name, &a.meta, limits) {
            mounts.push(FacadeMount {
                mount: p.mount.clone(),
                skill: a.name.clone(),
            });
            sidecars.push(p);
        }
    }
    (layers, sidecars, mounts)
}

/// The skills of a bundle made earlier: each sidecar's layer found in the store (exit 4
/// with the command that imports it when absent) and its plan checked against the layer's
/// own `omac.yaml` (exit 3 when they differ: a bundle cannot make omac run other commands
/// on the host than the approved skill declares).
pub fn from_bundle(
    env: &Env,
    e: &ext::Extension,
    store: &Store,
    limits: Limits,
) -> anyhow::Result<Vec<Active>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for sc in &e.sidecars {
        let layer = e
            .skills
            .iter()
            .find(|l| l.name == sc.skill)
            .ok_or_else(|| {
                Failure::new(
                    Code::Config,
                    format!(
                    "omac.json: sidecars: skill {} has no entry in skills (no layer digest)\n  \
                     fix: regenerate the bundle with omac bundle create",
                    sc.skill
                ),
                )
            })?;
        let Some(path) = store.locate(&layer.digest)? else {
            missing.push(layer);
            continue;
        };
        let meta = layer_meta(&path)?;
        let expected = plan(&sc.skill, &meta, limits);
        let same = expected.as_ref().is_some_and(|p| {
            p.mount == sc.mount
                && p.command == sc.command
                && p.env == sc.env
                && p.secrets == sc.secrets
                && p.config == sc.config
                && p.health.path == sc.health.path
        });
        if !same {
            return Err(Failure::new(
                Code::Config,
                format!(
                    "omac.json: the sidecar plan of skill {} does not match the omac.yaml of its \
                     layer {} (command, mount, environment, secrets, config or health path differ)\n  \
                     fix: regenerate the bundle with omac bundle create; omac runs on the host only \
                     what the approved layer declares",
                    sc.skill, layer.digest
                ),
            )
            .into());
        }
        let pin = store.pin(&layer.digest)?;
        let scope = registered_scope(env, &sc.skill);
        out.push(Active {
            name: sc.skill.clone(),
            scope,
            meta,
            digest: layer.digest.clone(),
            layer: path,
            source: PathBuf::from(&layer.source),
            _pin: Some(pin),
            accepted_change: false,
        });
    }
    if !missing.is_empty() {
        let mut msg = String::from(
            "the layer store does not have the skill layer(s) this bundle runs (only layers you \
             registered or imported run on this machine):",
        );
        for l in &missing {
            msg.push_str(&format!(
                "\n  {} {} (made from {})",
                l.name, l.digest, l.source
            ));
        }
        msg.push_str("\n  fix: review each skill, then import it:");
        for l in &missing {
            msg.push_str(&format!(
                "\n    omac skills import {} --digest {}",
                l.source, l.digest
            ));
        }
        return Err(Failure::new(Code::Prerequisite, msg).into());
    }
    Ok(out)
}

/// Where skill `name` is registered for this workdir (global when not in the workdir's
/// registry): decides which keychain items hold its secrets.
fn registered_scope(env: &Env, name: &str) -> Scope {
    match registry::load(env, Scope::Workdir) {
        Ok(r) if r.find(name, None).is_some() => Scope::Workdir,
        _ => Scope::Global,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mount_per_skill() {
        assert!(check_mounts([("a", "x".to_string()), ("b", "y".to_string())].into_iter()).is_ok());
        let e =
            check_mounts([("a", "x".to_string()), ("b", "x".to_string())].into_iter()).unwrap_err();
        assert!(format!("{e}").contains("/x/"));
    }
}
