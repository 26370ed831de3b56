//! Secrets: the OS keychain (see [`keychain`] for the backend choice), the in-memory
//! [`Secret`] type, keychain naming, terminal prompts and `KEY=VALUE` files.
//!
//! Secrets never appear on argv, on disk, or in logs: values enter through the keychain, a
//! masked prompt, a `KEY=VALUE` file the user wrote, or an `OMAC_SECRET_<NAME>` variable,
//! live in a [`Secret`] (redacted, unserialisable, zeroed on drop), and leave only to the
//! keychain or a sidecar's environment.

pub mod files;
pub mod keychain;
#[cfg(target_os = "linux")]
pub mod keyutils;
pub mod naming;
pub mod prompt;
pub mod secret;

use std::path::Path;

use omac_skills::meta::SecretSpec;

pub use keychain::{Keychain, KeychainError};
pub use naming::Scope;
pub use secret::Secret;

/// The variable that supplies a secret without a prompt.
pub fn env_var(name: &str) -> String {
    format!("OMAC_SECRET_{name}")
}

/// `, and after N days unused` for the kernel keyring's persistent keyring, when known.
pub fn keyutils_expiry_text() -> String {
    #[cfg(target_os = "linux")]
    {
        if let Some(s) = keyutils::persistent_expiry_secs() {
            let days = s as f64 / 86_400.0;
            return format!(" and expire after {days:.0} day(s) unused");
        }
    }
    String::new()
}

/// Where a secret for a run came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The keychain, workdir-scoped service.
    KeychainWorkdir,
    /// The keychain, global service (also the fallback for workdir skills).
    KeychainGlobal,
    /// `OMAC_SECRET_<NAME>`.
    SecretVar(String),
    /// A host variable of the same name listed in `env_passthrough` (the CI fallback).
    Passthrough(String),
}

/// A secret as a session resolves it for a sidecar: the workdir-scoped keychain item (for a
/// workdir skill), then the global one, then `OMAC_SECRET_<NAME>`, then, if the skill lists
/// the name in `env_passthrough`, the non-empty host variable of that name. Values from the
/// environment must match the secret's pattern (unless `skip_pattern`). `None`: not found.
pub fn resolve_for_run(
    kc: &Keychain,
    workdir: Option<&Path>,
    skill: &str,
    spec: &SecretSpec,
    passthrough: &[String],
    skip_pattern: bool,
) -> anyhow::Result<Option<(Secret, Source)>> {
    if let Some(w) = workdir {
        if let Some(v) = kc.get(&Scope::workdir(w).service(skill), &spec.name)? {
            return Ok(Some((v, Source::KeychainWorkdir)));
        }
    }
    if let Some(v) = kc.get(&Scope::Global.service(skill), &spec.name)? {
        return Ok(Some((v, Source::KeychainGlobal)));
    }
    let mut from_env = vec![(env_var(&spec.name), true)];
    if passthrough.contains(&spec.name) {
        from_env.push((spec.name.clone(), false));
    }
    for (var, is_secret_var) in from_env {
        let Some(v) = std::env::var_os(&var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let v = Secret::new(std::os::unix::ffi::OsStringExt::into_vec(v));
        if !skip_pattern {
            let text = v.expose_str().unwrap_or_default();
            spec.check(text).map_err(|e| {
                crate::exit::Failure::new(crate::exit::Code::Secret, format!("${var}: {e}"))
            })?;
        }
        let src = if is_secret_var {
            Source::SecretVar(var)
        } else {
            Source::Passthrough(var)
        };
        return Ok(Some((v, src)));
    }
    Ok(None)
}
