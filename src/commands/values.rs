//! Getting one secret or config field value from the user, in the Go omac's order:
//! already stored (unless re-asking) → declined before (optional only) → `--*-from` file →
//! `OMAC_SECRET_<NAME>` / `OMAC_CONFIG_<NAME>` → `default_from_env` (and `default` for
//! fields) → prompt (masked for secrets, three tries, pattern checked). Without a terminal
//! there is no prompt: a required value that is still missing is reported with the ways to
//! provide it (exit 9).

use std::collections::{BTreeMap, BTreeSet};

use omac_skills::fields;
use omac_skills::meta::{ConfigSpec, FieldType, SecretSpec};

use crate::exit::{Code, Failure};
use crate::secrets::{self, prompt, Keychain, Secret};

/// How many times a prompt asks before giving up.
const TRIES: u32 = 3;

/// What happened to one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A value was stored; from where.
    Stored(String),
    /// It was already stored and kept.
    Kept,
    /// The user declined an optional value (remembered, not asked again).
    Declined,
    /// Optional, not provided, and no terminal to ask (not remembered as declined).
    NotProvided,
    /// Required, not provided, and no terminal to ask.
    Missing,
}

/// Where the secrets of one registration go.
pub struct SecretTarget<'a> {
    /// The keychain.
    pub kc: &'a Keychain,
    /// The skill.
    pub skill: &'a str,
    /// Its keychain service (workdir-scoped or global).
    pub service: String,
    /// Ask again even if stored.
    pub reprompt: bool,
    /// Optional secrets declined before.
    pub declined: &'a BTreeSet<String>,
    /// Values from `--secrets-from`.
    pub from_file: &'a BTreeMap<String, Secret>,
    /// Whether prompts are possible.
    pub interactive: bool,
}

fn status(tag: &str, text: &str) {
    eprintln!("  {tag} {text}");
}

fn refused(msg: String) -> anyhow::Error {
    Failure::new(Code::Secret, msg).into()
}

impl SecretTarget<'_> {
    fn store(&self, spec: &SecretSpec, v: &Secret) -> anyhow::Result<()> {
        self.kc.set(&self.service, &spec.name, v)?;
        // The remembered-value mirror the Go omac's `register --defaults` reads; best effort.
        let mirror = secrets::Scope::Defaults.service(self.skill);
        if mirror != self.service {
            if let Err(e) = self.kc.set(&mirror, &spec.name, v) {
                tracing::debug!(error = %e, "could not write the defaults mirror");
            }
        }
        Ok(())
    }

    fn checked(&self, spec: &SecretSpec, v: &Secret, from: &str) -> anyhow::Result<()> {
        let text = v.expose_str().unwrap_or_default();
        spec.check(text).map_err(|e| {
            refused(format!(
                "secret {} of skill {} ({from}): {e}",
                spec.name, self.skill
            ))
        })
    }

    /// Gets one secret into the keychain (see the module doc for the order).
    pub fn acquire(&self, spec: &SecretSpec) -> anyhow::Result<Outcome> {
        if !self.reprompt {
            if self.kc.get(&self.service, &spec.name)?.is_some() {
                status("[skip]", &format!("{} already in the keychain", spec.name));
                return Ok(Outcome::Kept);
            }
            if self.declined.contains(&spec.name) && !spec.is_required() {
                status(
                    "[skip]",
                    &format!("{} (optional, declined before)", spec.name),
                );
                return Ok(Outcome::Declined);
            }
        }
        if let Some(v) = self.from_file.get(&spec.name) {
            self.checked(spec, v, "from --secrets-from")?;
            self.store(spec, v)?;
            status("stored", &format!("{} (from file)", spec.name));
            return Ok(Outcome::Stored("file".into()));
        }
        let var = secrets::env_var(&spec.name);
        if let Some(v) = std::env::var_os(&var).filter(|v| !v.is_empty()) {
            let v = Secret::new(std::os::unix::ffi::OsStringExt::into_vec(v));
            self.checked(spec, &v, &format!("from ${var}"))?;
            self.store(spec, &v)?;
            status("stored", &format!("{} (from ${var})", spec.name));
            return Ok(Outcome::Stored(format!("${var}")));
        }
        let default = (!spec.default_from_env.is_empty())
            .then(|| std::env::var_os(&spec.default_from_env))
            .flatten()
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(std::os::unix::ffi::OsStringExt::into_vec(v)))
            .filter(|v| spec.check(v.expose_str().unwrap_or_default()).is_ok());
        if !self.interactive {
            if self.reprompt && self.kc.get(&self.service, &spec.name)?.is_some() {
                status(
                    "[keep]",
                    &format!(
                        "{} (no terminal to ask again; kept the stored value)",
                        spec.name
                    ),
                );
                return Ok(Outcome::Kept);
            }
            if let Some(v) = default {
                self.store(spec, &v)?;
                status(
                    "stored",
                    &format!("{} (from ${})", spec.name, spec.default_from_env),
                );
                return Ok(Outcome::Stored(format!("${}", spec.default_from_env)));
            }
            return Ok(if spec.is_required() {
                Outcome::Missing
            } else {
                status(
                    "[skip]",
                    &format!(
                        "{} (optional; not provided, and no terminal to ask)",
                        spec.name
                    ),
                );
                Outcome::NotProvided
            });
        }
        if !spec.description.is_empty() {
            eprintln!("  {}: {}", spec.name, spec.description);
        }
        let hint = if default.is_some() {
            format!(" (Enter accepts ${})", spec.default_from_env)
        } else if !spec.is_required() {
            " (optional, Enter skips)".to_string()
        } else {
            String::new()
        };
        for attempt in 1..=TRIES {
            let v = prompt::read_masked(&format!("  ? {}{hint}: ", spec.name))?;
            if v.is_empty() {
                if let Some(d) = &default {
                    self.store(spec, d)?;
                    status(
                        "stored",
                        &format!("{} (from ${})", spec.name, spec.default_from_env),
                    );
                    return Ok(Outcome::Stored(format!("${}", spec.default_from_env)));
                }
                if !spec.is_required() {
                    status("[skip]", &format!("{} (optional, not provided)", spec.name));
                    return Ok(Outcome::Declined);
                }
                if attempt == TRIES {
                    return Err(refused(format!(
                        "required secret {} of skill {} was not supplied after {TRIES} tries",
                        spec.name, self.skill
                    )));
                }
                status("[retry]", "required; please enter a value");
                continue;
            }
            if let Err(e) = spec.check(v.expose_str().unwrap_or_default()) {
                if attempt == TRIES {
                    return Err(refused(format!("{e} after {TRIES} tries")));
                }
                status("[retry]", &e);
                continue;
            }
            self.store(spec, &v)?;
            status("stored", &spec.name);
            return Ok(Outcome::Stored("prompt".into()));
        }
        unreachable!("the loop returns on its last try")
    }
}

/// How to provide a missing secret without a terminal.
pub fn how_to_provide_secret(skill: &str, name: &str) -> String {
    format!(
        "{name}: set {} in the environment, pass --secrets-from FILE with a {name}=... line, \
         or run `omac secrets set {skill} {name}` in a terminal",
        secrets::env_var(name)
    )
}

/// How to provide a missing config field without a terminal.
pub fn how_to_provide_field(name: &str) -> String {
    format!(
        "{name}: set OMAC_CONFIG_{name} in the environment, or pass --fields-from FILE with a \
         {name}=... line"
    )
}

/// Gets one config field value (see the module doc for the order). Returns the outcome and
/// the canonical value to store, if any.
pub fn acquire_field(
    spec: &ConfigSpec,
    stored: Option<&str>,
    reprompt: bool,
    declined: &BTreeSet<String>,
    from_file: &BTreeMap<String, String>,
    interactive: bool,
) -> anyhow::Result<(Outcome, Option<String>)> {
    let canon = |raw: &str, from: &str| {
        fields::canonicalise(spec, raw)
            .map_err(|e| refused(format!("config field {} ({from}): {e}", spec.name)))
    };
    if !reprompt {
        if stored.is_some() {
            status("[skip]", &format!("{} already configured", spec.name));
            return Ok((Outcome::Kept, None));
        }
        if declined.contains(&spec.name) && !spec.is_required() {
            status(
                "[skip]",
                &format!("{} (optional, declined before)", spec.name),
            );
            return Ok((Outcome::Declined, None));
        }
    }
    if let Some(v) = from_file.get(&spec.name) {
        let c = canon(v, "from --fields-from")?;
        status("set", &format!("{} = {c} (from file)", spec.name));
        return Ok((Outcome::Stored("file".into()), Some(c)));
    }
    let var = format!("OMAC_CONFIG_{}", spec.name);
    if let Ok(v) = std::env::var(&var) {
        let c = canon(&v, &format!("from ${var}"))?;
        status("set", &format!("{} = {c} (from ${var})", spec.name));
        return Ok((Outcome::Stored(format!("${var}")), Some(c)));
    }
    let (default, default_src) = if !spec.default.is_empty() {
        (Some(spec.default.clone()), "default".to_string())
    } else {
        let v = (!spec.default_from_env.is_empty())
            .then(|| std::env::var(&spec.default_from_env).ok())
            .flatten()
            .filter(|v| !v.is_empty());
        (v, format!("${}", spec.default_from_env))
    };
    if !interactive {
        if reprompt && stored.is_some() {
            status(
                "[keep]",
                &format!(
                    "{} (no terminal to ask again; kept the stored value)",
                    spec.name
                ),
            );
            return Ok((Outcome::Kept, None));
        }
        if let Some(d) = &default {
            let c = canon(d, &default_src)?;
            status("set", &format!("{} = {c} ({default_src})", spec.name));
            return Ok((Outcome::Stored(default_src), Some(c)));
        }
        if spec.is_required() {
            return Ok((Outcome::Missing, None));
        }
        status(
            "[skip]",
            &format!(
                "{} (optional; not provided, and no terminal to ask)",
                spec.name
            ),
        );
        return Ok((Outcome::NotProvided, None));
    }
    if !spec.description.is_empty() {
        eprintln!("  {}: {}", spec.name, spec.description);
    }
    if spec.field_type() == FieldType::Enum {
        eprintln!("    choices: {}", spec.choices.join(", "));
    }
    let hint = match &default {
        Some(d) => format!(" [{d}, from {default_src}]"),
        None if !spec.is_required() => " (optional, Enter skips)".into(),
        None => String::new(),
    };
    for attempt in 1..=TRIES {
        let line = prompt::read_plain(&format!("  ? {}{hint}: ", spec.name))?;
        if line.is_empty() {
            if let Some(d) = &default {
                let c = canon(d, &default_src)?;
                status("set", &format!("{} = {c} ({default_src})", spec.name));
                return Ok((Outcome::Stored(default_src), Some(c)));
            }
            if !spec.is_required() {
                status("[skip]", &format!("{} (optional, not provided)", spec.name));
                return Ok((Outcome::Declined, None));
            }
            if attempt == TRIES {
                return Err(refused(format!(
                    "required config field {} was not supplied after {TRIES} tries",
                    spec.name
                )));
            }
            status("[retry]", "required; please enter a value");
            continue;
        }
        match fields::canonicalise(spec, &line) {
            Ok(c) => {
                status("set", &format!("{} = {c}", spec.name));
                return Ok((Outcome::Stored("prompt".into()), Some(c)));
            }
            Err(e) if attempt == TRIES => return Err(refused(format!("{e} after {TRIES} tries"))),
            Err(e) => status("[retry]", &e),
        }
    }
    unreachable!("the loop returns on its last try")
}
