//! `omac register SKILL`: find the skill in the harness's scope, check it, store its secrets
//! (keychain) and config fields (skill-config.yaml), import its layer into the store, and
//! record the registration — the approval of that exact layer digest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use omac_skills::discover::{self, Candidate};
use omac_skills::layer::{index, tarball};
use omac_skills::registry::{self, Entry};
use omac_skills::{bundle_hash, skill_config, timefmt, Env, Error, Scope, Skill};

use crate::cli::RegisterArgs;
use crate::commands::skillctx::{self, harness_arg, print_warnings, secret_scope};
use crate::commands::values::{self, Outcome, SecretTarget};
use crate::exit::{Code, Failure};
use crate::secrets::{self, files, prompt, Keychain};

/// `omac register`.
pub fn run(env: &Env, args: RegisterArgs) -> anyhow::Result<i32> {
    let cand = resolve_target(env, &args.skill, args.harness.as_deref(), args.global)?;
    if cand.scope == Scope::Global {
        eprintln!(
            "[info] using the user-global skill at {}",
            cand.dir.display()
        );
    }
    let skill = omac_skills::load(&cand.dir)?;
    print_warnings(&skill.warnings);
    let Some(sidecar) = skill.meta.sidecar.clone() else {
        return Err(Failure::new(
            Code::Misuse,
            format!(
                "skill {:?} has no sidecar block in omac.yaml; nothing to register (it runs \
                 entirely inside the sandbox)",
                skill.name
            ),
        )
        .into());
    };

    let scan = tarball::scan(&cand.dir)?;
    check_command_in_layer(&skill, &sidecar.command)?;
    warn_about_links(&skill, &scan);
    for p in &scan.skipped {
        eprintln!(
            "omac: warning: {} is a socket, FIFO or device; it is not part of the skill layer",
            p.display()
        );
    }
    let digest = tarball::digest_of(&scan)?;
    let go_hash = bundle_hash::bundle_hash(&cand.dir)?;
    let reg_harness = cand.registry_harness().to_string();

    let existing = registry::load(env, cand.scope)?
        .find(&skill.name, Some(&reg_harness))
        .cloned();
    if let Some(e) = &existing {
        check_conflict(e, &digest, &go_hash, args.force)?;
    }
    let declined_secrets: BTreeSet<String> = existing
        .as_ref()
        .map(|e| e.skipped_secret_names.iter().cloned().collect())
        .unwrap_or_default();
    let declined_fields: BTreeSet<String> = existing
        .as_ref()
        .map(|e| e.skipped_config_fields.iter().cloned().collect())
        .unwrap_or_default();
    let interactive = prompt::interactive();
    let mut missing: Vec<String> = Vec::new();

    // Secrets.
    let mut skipped_secrets: BTreeSet<String> = BTreeSet::new();
    let mut kc_volatile = false;
    if args.no_secrets {
        skipped_secrets = declined_secrets.clone();
    } else if !sidecar.secrets.is_empty() {
        eprintln!("Secrets");
        let from_file = match &args.secrets_from {
            Some(p) => files::read_secrets(p)?,
            None => BTreeMap::new(),
        };
        for k in from_file.keys() {
            if sidecar.secret(k).is_none() {
                eprintln!(
                    "omac: warning: {k} in the secrets file is not a secret of {} (ignored)",
                    skill.name
                );
            }
        }
        let kc = Keychain::open()?;
        let target = SecretTarget {
            kc: &kc,
            skill: &skill.name,
            service: secret_scope(env, cand.scope).service(&skill.name),
            reprompt: args.reprompt_secrets,
            declined: &declined_secrets,
            from_file: &from_file,
            interactive,
        };
        for spec in &sidecar.secrets {
            match target.acquire(spec)? {
                Outcome::Stored(_) => kc_volatile |= kc.is_volatile(),
                Outcome::Declined => {
                    skipped_secrets.insert(spec.name.clone());
                }
                Outcome::Missing => {
                    missing.push(values::how_to_provide_secret(&skill.name, &spec.name))
                }
                Outcome::Kept | Outcome::NotProvided => {}
            }
        }
    }

    // Config fields (values gathered first, stored under the lock in one write).
    let mut skipped_fields: BTreeSet<String> = BTreeSet::new();
    let mut new_values: Vec<(String, String)> = Vec::new();
    if args.no_fields {
        skipped_fields = declined_fields.clone();
    } else if !sidecar.config.is_empty() {
        eprintln!("Config fields");
        let from_file = match &args.fields_from {
            Some(p) => files::read_fields(p)?,
            None => BTreeMap::new(),
        };
        let stored = skill_config::load(env, cand.scope)?;
        for spec in &sidecar.config {
            let (outcome, value) = values::acquire_field(
                spec,
                stored.get(&skill.name, &spec.name),
                args.reprompt_fields,
                &declined_fields,
                &from_file,
                interactive,
            )?;
            match outcome {
                Outcome::Declined => {
                    skipped_fields.insert(spec.name.clone());
                }
                Outcome::Missing => missing.push(values::how_to_provide_field(&spec.name)),
                _ => {}
            }
            if let Some(v) = value {
                new_values.push((spec.name.clone(), v));
            }
        }
    }
    if !missing.is_empty() {
        return Err(Failure::new(
            Code::Secret,
            format!(
                "cannot register {}: required values are missing and stdin is not a terminal, \
                 so omac cannot ask:\n  {}",
                skill.name,
                missing.join("\n  ")
            ),
        )
        .into());
    }
    if !new_values.is_empty() {
        skill_config::update(env, cand.scope, |c| {
            for (k, v) in &new_values {
                c.set(&skill.name, k, v);
            }
            if cand.scope == Scope::Global {
                for (k, v) in &new_values {
                    c.defaults
                        .entry(skill.name.clone())
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
            }
            Ok(())
        })?;
        if cand.scope == Scope::Workdir {
            // The Go omac remembers every value as a global default for `register --defaults`.
            if let Err(e) = skill_config::update(env, Scope::Global, |c| {
                for (k, v) in &new_values {
                    c.defaults
                        .entry(skill.name.clone())
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
                Ok(())
            }) {
                tracing::debug!(error = %e, "could not remember config defaults");
            }
        }
    }

    // The layer: imported (and pinned against gc) before the registry points at it.
    let store = skillctx::store(env)?;
    let _pin = store.pin(&digest)?;
    let imported = store
        .import_dir(&cand.dir, Some(&digest))
        .map_err(|e| match e {
            Error::Changed { .. } => anyhow::Error::new(e)
                .context("the skill changed while it was being registered; run the command again"),
            other => other.into(),
        })?;

    let stored_dir = match cand.scope {
        Scope::Workdir => cand
            .dir
            .strip_prefix(&env.workdir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| cand.dir.display().to_string()),
        Scope::Global => cand.dir.display().to_string(),
    };
    let files = registry::files_or_err(env, cand.scope)?;
    registry::update(env, cand.scope, |reg| {
        let extra = match reg.find(&skill.name, Some(&reg_harness)) {
            Some(e) => {
                check_conflict(e, &digest, &go_hash, args.force)?;
                e.extra.clone()
            }
            None => Default::default(),
        };
        reg.upsert(Entry {
            name: skill.name.clone(),
            harness: reg_harness.clone(),
            skill_dir: stored_dir.clone(),
            bundle_hash: go_hash.clone(),
            registered_at: timefmt::now_utc(),
            declared_secret_names: sidecar.secrets.iter().map(|s| s.name.clone()).collect(),
            skipped_secret_names: skipped_secrets.iter().cloned().collect(),
            skipped_config_fields: skipped_fields.iter().cloned().collect(),
            layer_digest: Some(digest.clone()),
            extra,
        });
        Ok(())
    })?;
    if let Err(e) = index::record(&store, &files.registry) {
        eprintln!(
            "omac: warning: could not record {} for `omac skills gc`: {e}",
            files.registry.display()
        );
    }

    let place = match cand.scope {
        Scope::Workdir => format!("workdir {}", env.workdir.display()),
        Scope::Global => "global; available in every workdir".to_string(),
    };
    println!("[ok] registered {} ({place})", skill.name);
    println!(
        "     layer {digest} {} ({})",
        if imported.created {
            "stored"
        } else {
            "already stored"
        },
        imported.path.display()
    );
    if kc_volatile {
        eprintln!("omac: notice: {}", secrets::keychain::volatile_notice());
    }
    if let Some(script) = sidecar.install_script_for(skillctx::host_os()) {
        let abs = cand.dir.join(script);
        if abs.is_file() {
            print_install_box(skillctx::host_os(), &abs);
        } else {
            eprintln!(
                "[warn] the install script for {} declared in omac.yaml is missing: {}",
                skillctx::host_os(),
                abs.display()
            );
        }
    }
    Ok(0)
}

/// Finds the one directory to register (exit 4 if none, 2 if the choice is ambiguous).
fn resolve_target(
    env: &Env,
    name: &str,
    harness: Option<&str>,
    global: bool,
) -> anyhow::Result<Candidate> {
    let mut cands = match harness_arg(harness)? {
        Some(h) => discover::candidates(env, h, name)?,
        None => discover::candidates_all(env, name)?,
    };
    if cands.is_empty() {
        return Err(Error::NotFound {
            what: format!("skill {name:?} was not found in any skill folder in scope"),
            fix: format!(
                "put it in {}/.opencode/skills/{name} (or .claude/skills, .codex/skills, \
                 .agents/skills, or their global twins under ~/.config), with an omac.yaml",
                env.workdir.display()
            ),
        }
        .into());
    }
    if global {
        cands.retain(|c| c.scope == Scope::Global);
        if cands.is_empty() {
            return Err(Error::NotFound {
                what: format!("--global given, but {name:?} has no user-global copy in scope"),
                fix: "drop --global to register the workdir's copy".into(),
            }
            .into());
        }
    }
    let harnesses: BTreeSet<&str> = cands.iter().map(|c| c.harness.as_str()).collect();
    let table = || {
        cands
            .iter()
            .map(|c| {
                format!(
                    "  {:<12} {:<8} {}",
                    c.harness,
                    c.scope.as_str(),
                    c.dir.display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if harness.is_none() && harnesses.len() > 1 {
        let example = cands
            .iter()
            .find(|c| c.harness != discover::SHARED_LABEL)
            .map(|c| c.harness.clone())
            .unwrap_or_default();
        return Err(Error::Ambiguous {
            message: format!(
                "several skills named {name:?} are in scope:\n  HARNESS      SCOPE    PATH\n{}",
                table()
            ),
            fix: format!("pick a harness: `omac register {name} --harness {example}`"),
        }
        .into());
    }
    if cands.len() > 1 {
        // One harness, several copies: the first in search order is the one a session runs
        // (workdir before global, the harness's own folder before .agents), so that one is
        // registered, and the user is told about the others.
        let others: Vec<String> = cands[1..]
            .iter()
            .map(|c| format!("{} ({})", c.dir.display(), c.scope.as_str()))
            .collect();
        eprintln!(
            "[info] {name} also exists at {}; registering {} ({}), which is the one sessions use{}",
            others.join(", "),
            cands[0].dir.display(),
            cands[0].scope.as_str(),
            if cands.iter().any(|c| c.scope == Scope::Global) && cands[0].scope == Scope::Workdir {
                "; pass --global for the global one"
            } else {
                ""
            }
        );
    }
    Ok(cands.remove(0))
}

/// A registration with other content needs `--force` (the change must be reviewed).
fn check_conflict(e: &Entry, digest: &str, go_hash: &str, force: bool) -> Result<(), Error> {
    let (registered, current) = match &e.layer_digest {
        Some(d) => (d.as_str(), digest),
        None => (e.bundle_hash.as_str(), go_hash),
    };
    if registered != current && !force {
        return Err(Error::Conflict {
            skill: e.name.clone(),
            registered: registered.to_string(),
            current: current.to_string(),
        });
    }
    Ok(())
}

/// Sidecars run from the layer: a command path inside a folder the layer leaves out would
/// not exist there.
fn check_command_in_layer(skill: &Skill, command: &[String]) -> Result<(), Error> {
    for (i, arg) in command.iter().enumerate() {
        if arg.starts_with('-') || arg.contains("${") {
            continue;
        }
        let p = Path::new(arg);
        if p.is_absolute() || !skill.dir.join(p).exists() {
            continue;
        }
        let names: Vec<&[u8]> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(std::os::unix::ffi::OsStrExt::as_bytes(n)),
                _ => None,
            })
            .collect();
        let Some((file, dirs)) = names.split_last() else {
            continue;
        };
        let excluded_dir = dirs
            .iter()
            .find(|d| omac_skills::exclude::is_excluded_dir(d));
        if excluded_dir.is_some() || omac_skills::exclude::is_excluded_file(file) {
            let what = excluded_dir
                .map(|d| {
                    format!(
                        "inside {}/, a build or cache folder",
                        String::from_utf8_lossy(d)
                    )
                })
                .unwrap_or_else(|| "an editor or cache file".into());
            return Err(Error::invalid(
                skill.file("omac.yaml"),
                format!("sidecar.command[{i}]"),
                format!(
                    "{arg:?} is {what} that the skill layer leaves out; sidecars run from the \
                     layer, where it does not exist"
                ),
                "keep what the sidecar runs in a folder of the skill such as bin/ or scripts/",
            ));
        }
    }
    Ok(())
}

/// Symlinks that leave the skill point at host files the approval does not cover.
fn warn_about_links(skill: &Skill, scan: &tarball::Scan) {
    for e in &scan.entries {
        let tarball::Kind::Symlink(target) = &e.kind else {
            continue;
        };
        let rel = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&e.rel));
        let base = rel.parent().unwrap_or(Path::new(""));
        let mut depth: i64 = base.components().count() as i64;
        let mut escapes = target.is_absolute();
        for c in target.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                escapes = true;
            }
        }
        if escapes {
            eprintln!(
                "omac: warning: {}/{} -> {} points outside the skill; the sidecar would follow it \
                 to a host file that is not part of the approved layer",
                skill.dir.display(),
                rel.display(),
                target.display()
            );
        }
    }
}

fn print_install_box(os: &str, script: &Path) {
    let line = format!("bash {}", script.display());
    let title = format!("NEXT STEP: install dependencies ({os})");
    let note = "omac does not run this for you. Inspect it, then run:";
    let width = [line.len() + 4, title.len(), note.len()]
        .into_iter()
        .max()
        .unwrap_or(0)
        + 2;
    let bar = "─".repeat(width);
    println!();
    println!("┌{bar}┐");
    for text in [title.as_str(), "", note, "", &format!("    {line}")] {
        println!("│ {text:<w$} │", w = width - 2);
    }
    println!("└{bar}┘");
}
