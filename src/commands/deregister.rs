//! `omac deregister SKILL`: remove a registration; with `--purge-*`, its secrets, config
//! fields and remembered defaults too. The layer stays in the store until `omac skills gc`.
//! A skill that is not registered but exists on disk has its directory deleted after
//! confirmation (or with `--yes`), as in the Go omac; without a terminal and without
//! `--yes` nothing is deleted.

use std::collections::BTreeSet;

use omac_skills::discover;
use omac_skills::registry::{self, Entry};
use omac_skills::{skill_config, Env, Scope};

use crate::cli::DeregisterArgs;
use crate::commands::skillctx::{harness_arg, secret_scope};
use crate::secrets::{self, prompt, Keychain};

/// `omac deregister`.
pub fn run(env: &Env, args: DeregisterArgs) -> anyhow::Result<i32> {
    if args.prune {
        return prune(env);
    }
    let Some(name) = args.skill.clone() else {
        return Err(crate::exit::Failure::new(
            crate::exit::Code::Misuse,
            "name the skill to deregister, or pass --prune",
        )
        .into());
    };
    let harness = harness_arg(args.harness.as_deref())?;
    let key = harness.map(|h| h.name);

    let scope = if args.global {
        Scope::Global
    } else {
        let in_global = registry::load(env, Scope::Global)?
            .find(&name, key)
            .is_some();
        let in_workdir = registry::load(env, Scope::Workdir)?
            .find(&name, key)
            .is_some();
        if in_global && !in_workdir {
            Scope::Global
        } else {
            Scope::Workdir
        }
    };
    let removed: Option<Entry> = if registry::load(env, scope)?.find(&name, key).is_some() {
        registry::update(env, scope, |r| Ok(r.remove(&name, key)))?
    } else {
        None
    };
    let mut removed_fields = 0;
    if args.purge_fields && skill_config::load(env, scope)?.skills.contains_key(&name) {
        removed_fields = skill_config::update(env, scope, |c| Ok(c.remove_skill(&name)))?;
    }

    let mut msg = match &removed {
        Some(_) => format!("[ok] deregistered {name} ({})", scope.as_str()),
        None => not_registered(env, &name, harness, args.yes)?,
    };
    if args.purge_secrets || args.purge_defaults {
        let mut names: BTreeSet<String> = removed
            .as_ref()
            .map(|e| e.declared_secret_names.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(e) = &removed {
            if let Ok(s) = omac_skills::load(&e.abs_dir(&env.workdir)) {
                if let Some(sc) = s.meta.sidecar {
                    names.extend(sc.secrets.into_iter().map(|s| s.name));
                }
            }
        }
        let kc = Keychain::open()?;
        if args.purge_secrets {
            let mut services = vec![secret_scope(env, scope).service(&name)];
            // The unscoped item is a workdir skill's fallback too, unless a global
            // registration of the skill still uses it.
            let global_uses_it = registry::load(env, Scope::Global)?
                .find(&name, None)
                .is_some();
            if scope == Scope::Workdir && !global_uses_it {
                services.push(secrets::Scope::Global.service(&name));
            }
            let mut n = 0;
            for svc in &services {
                for secret in &names {
                    if kc.delete(svc, secret)? {
                        n += 1;
                    }
                }
            }
            msg.push_str(&format!("; deleted {n} secret(s) from the keychain"));
        } else if removed.is_some() {
            msg.push_str(&format!(
                "; kept {} secret(s) in the keychain (--purge-secrets removes them)",
                names.len()
            ));
        }
        if args.purge_defaults {
            let svc = secrets::Scope::Defaults.service(&name);
            for secret in &names {
                kc.delete(&svc, secret)?;
            }
            if skill_config::load(env, Scope::Global)?
                .defaults
                .contains_key(&name)
            {
                skill_config::update(env, Scope::Global, |c| Ok(c.defaults.remove(&name)))?;
            }
            msg.push_str("; purged remembered defaults");
        }
    } else if let Some(e) = &removed {
        msg.push_str(&format!(
            "; kept {} secret(s) in the keychain (--purge-secrets removes them)",
            e.declared_secret_names.len()
        ));
    }
    if args.purge_fields {
        msg.push_str(&format!("; deleted {removed_fields} config field(s)"));
    } else if removed.is_some() {
        msg.push_str(" (--purge-fields also drops config fields)");
    }
    println!("{msg}");
    if removed.is_some() {
        println!("     its layer stays in the store until `omac skills gc`");
    }
    Ok(0)
}

/// A skill that is not registered: offer to delete its directory, as the Go omac does.
fn not_registered(
    env: &Env,
    name: &str,
    harness: Option<&'static omac_bundle::harness::Harness>,
    yes: bool,
) -> anyhow::Result<String> {
    let cands = match harness {
        Some(h) => discover::candidates(env, h, name)?,
        None => discover::candidates_all(env, name)?,
    };
    let Some(c) = cands.first() else {
        return Ok(format!(
            "[noop] {name} was not registered and no skill of that name was found on disk"
        ));
    };
    let dir = c.dir.clone();
    let confirmed = if yes {
        true
    } else if prompt::interactive() {
        println!(
            "{name} is not registered but exists on disk at:\n  {}",
            dir.display()
        );
        let a = prompt::read_plain("Delete this directory? [y/N] ")?;
        matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    } else {
        return Ok(format!(
            "[noop] {name} is not registered; it exists at {} (pass --yes to delete that directory)",
            dir.display()
        ));
    };
    if !confirmed {
        return Ok(format!("[noop] {name} left in place at {}", dir.display()));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| omac_skills::Error::io("deleting", &dir, e))?;
    Ok(format!(
        "[ok] deleted the unregistered skill {name} (removed {})",
        dir.display()
    ))
}

/// `--prune`: drop every registration whose `omac.yaml` is gone, in both layers.
fn prune(env: &Env) -> anyhow::Result<i32> {
    let mut total = 0;
    for scope in [Scope::Workdir, Scope::Global] {
        match registry::files(env, scope) {
            Some(f) if f.registry.exists() => {}
            _ => continue,
        }
        let gone: Vec<String> = registry::update(env, scope, |r| {
            let mut gone = Vec::new();
            r.registered.retain(|e| {
                let alive = e
                    .abs_dir(&env.workdir)
                    .join(omac_skills::meta::META_FILE)
                    .exists();
                if !alive {
                    gone.push(e.name.clone());
                }
                alive
            });
            Ok(gone)
        })?;
        for n in &gone {
            println!(
                "[ok] pruned the stale registration {n} ({})",
                scope.as_str()
            );
        }
        total += gone.len();
    }
    if total == 0 {
        println!("[noop] no stale registrations found");
    }
    Ok(0)
}
