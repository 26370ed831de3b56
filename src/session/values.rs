//! Secrets and config fields of the active skills, resolved for one run. Secrets come from
//! the keychain (the registration's scope, then the global items), then `OMAC_SECRET_<NAME>`,
//! then, when the skill lists the name in `env_passthrough`, the host variable of that name
//! (the CI case). When stdin is a terminal (`omac start` only), a missing required secret
//! is asked for, masked, and stored in the keychain as `omac register` would. Otherwise a
//! missing required value stops the run with exit 9, naming each one and how to provide it.

use std::path::Path;

use omac_skills::{fields, skill_config, Env, Scope};

use crate::exit::{Code, Failure};
use crate::secrets::{self, Keychain, Secret};
use crate::session::skills::Active;

/// The values one sidecar receives.
pub struct Values {
    /// Secret name and value (from the keychain or the environment).
    pub secrets: Vec<(String, omac_facade::Secret)>,
    /// Config field name and canonical value.
    pub config: Vec<(String, String)>,
    /// Where each secret came from (names of the source, never values).
    pub sources: Vec<(String, String)>,
}

/// The keychain, opened on first need; a keychain that cannot be opened degrades to "not
/// found" (with a warning), so that secrets from the environment still work.
pub struct LazyKeychain {
    kc: Option<Option<Keychain>>,
}

impl LazyKeychain {
    /// Not opened yet.
    pub fn new() -> LazyKeychain {
        LazyKeychain { kc: None }
    }

    fn get(&mut self) -> Option<&Keychain> {
        if self.kc.is_none() {
            self.kc = Some(match Keychain::open() {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!(
                        "omac: warning: no keychain ({e}); secrets come from the environment only"
                    );
                    None
                }
            });
        }
        self.kc.as_ref().and_then(|k| k.as_ref())
    }
}

fn keychain_lookup(
    kc: &mut LazyKeychain,
    workdir: Option<&Path>,
    skill: &str,
    name: &str,
) -> Option<(Secret, String)> {
    let kc = kc.get()?;
    let mut services = Vec::new();
    if let Some(w) = workdir {
        services.push(secrets::Scope::workdir(w).service(skill));
    }
    services.push(secrets::Scope::Global.service(skill));
    for service in services {
        match kc.get(&service, name) {
            Ok(Some(v)) => return Some((v, format!("keychain {service}"))),
            Ok(None) => {}
            Err(e) => {
                eprintln!("omac: warning: {e}");
                return None;
            }
        }
    }
    None
}

fn env_lookup(
    skill: &str,
    spec: &omac_skills::meta::SecretSpec,
    passthrough: &[String],
) -> anyhow::Result<Option<(Secret, String)>> {
    let mut vars = vec![secrets::env_var(&spec.name)];
    if passthrough.contains(&spec.name) {
        vars.push(spec.name.clone());
    }
    for var in vars {
        let Some(v) = std::env::var_os(&var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let v = Secret::new(std::os::unix::ffi::OsStringExt::into_vec(v));
        let text = v.expose_str().unwrap_or_default();
        spec.check(text).map_err(|e| {
            Failure::new(
                Code::Secret,
                format!(
                    "skill {skill}: ${var} does not fit secret {}: {e}\n  fix: correct the variable",
                    spec.name
                ),
            )
        })?;
        return Ok(Some((v, format!("${var}"))));
    }
    Ok(None)
}

/// Resolves every active skill's values (in the order of `active`). `prompt`: ask on the
/// terminal for missing required secrets. `redact` is told every secret value.
pub fn resolve(
    env: &Env,
    active: &[Active],
    prompt: bool,
    redact: &dyn Fn(&str),
) -> anyhow::Result<Vec<Values>> {
    let mut kc = LazyKeychain::new();
    let mut out = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for a in active {
        let s = a.sidecar();
        let workdir = (a.scope == Scope::Workdir).then_some(env.workdir.as_path());
        let mut v = Values {
            secrets: Vec::new(),
            config: Vec::new(),
            sources: Vec::new(),
        };
        for spec in &s.secrets {
            let mut found = keychain_lookup(&mut kc, workdir, &a.name, &spec.name);
            if found.is_none() {
                found = env_lookup(&a.name, spec, &s.env_passthrough)?;
            }
            if found.is_none() && spec.is_required() && prompt {
                found = ask(&mut kc, workdir, &a.name, spec)?;
            }
            match found {
                Some((value, source)) => {
                    let Some(text) = value.expose_str() else {
                        return Err(Failure::new(
                            Code::Secret,
                            format!(
                                "skill {}: secret {} ({source}) is not UTF-8 text\n  fix: store it again with omac secrets set {} {}",
                                a.name, spec.name, a.name, spec.name
                            ),
                        )
                        .into());
                    };
                    redact(text);
                    v.secrets
                        .push((spec.name.clone(), omac_facade::Secret::new(text)));
                    v.sources.push((spec.name.clone(), source));
                }
                None if spec.is_required() => {
                    let mut how = format!(
                        "  skill {}: secret {} is missing\n    provide it with: omac secrets set {} {}\n    \
                         or in the environment: {}=...",
                        a.name,
                        spec.name,
                        a.name,
                        spec.name,
                        secrets::env_var(&spec.name)
                    );
                    if s.env_passthrough.contains(&spec.name) {
                        how.push_str(&format!(" (or {}=...)", spec.name));
                    }
                    missing.push(how);
                }
                None => {}
            }
        }
        let stored = skill_config::merged_for(env, &a.name)?;
        for spec in &s.config {
            let r = fields::resolve(spec, stored.get(&spec.name).map(String::as_str), |n| {
                std::env::var(n).ok()
            })
            .map_err(|e| {
                Failure::new(
                    Code::Config,
                    format!(
                        "skill {}: config field {}: {e}\n  fix: omac register {} --reprompt-fields",
                        a.name, spec.name, a.name
                    ),
                )
            })?;
            match r.value {
                Some(val) => v.config.push((spec.name.clone(), val)),
                None if spec.is_required() => missing.push(format!(
                    "  skill {}: config field {} is missing\n    provide it with: omac register {} --reprompt-fields \
                     (or --fields-from FILE)",
                    a.name, spec.name, a.name
                )),
                None => {}
            }
        }
        out.push(v);
    }
    if !missing.is_empty() {
        let mut msg = String::from("required values are missing, so the sidecars cannot start:\n");
        msg.push_str(&missing.join("\n"));
        if !prompt {
            msg.push_str("\n  (omac asks for missing secrets only when stdin is a terminal)");
        }
        return Err(Failure::new(Code::Secret, msg).into());
    }
    Ok(out)
}

/// Asks for a missing secret on the terminal (three tries against its pattern) and stores
/// it in the keychain when there is one.
fn ask(
    kc: &mut LazyKeychain,
    workdir: Option<&Path>,
    skill: &str,
    spec: &omac_skills::meta::SecretSpec,
) -> anyhow::Result<Option<(Secret, String)>> {
    if !spec.description.is_empty() {
        eprintln!("omac: {skill}: {}", spec.description);
    }
    for _ in 0..3 {
        let v = crate::session::signals::interruptible(|| {
            secrets::prompt::read_masked(&format!(
                "omac: {skill} needs secret {} (input hidden): ",
                spec.name
            ))
        })?;
        if v.is_empty() {
            return Ok(None);
        }
        let text = v.expose_str().unwrap_or_default();
        if let Err(e) = spec.check(text) {
            eprintln!("omac: {e}");
            continue;
        }
        let source = match kc.get() {
            Some(k) => {
                let scope = match workdir {
                    Some(w) => secrets::Scope::workdir(w),
                    None => secrets::Scope::Global,
                };
                let service = scope.service(skill);
                k.set(&service, &spec.name, &v)?;
                eprintln!(
                    "omac: stored {} in the {} keychain ({service})",
                    spec.name,
                    k.backend().name()
                );
                format!("keychain {service}")
            }
            None => "the terminal".to_string(),
        };
        return Ok(Some((v, source)));
    }
    Err(Failure::new(
        Code::Secret,
        format!(
            "skill {skill}: secret {} was refused three times",
            spec.name
        ),
    )
    .into())
}
