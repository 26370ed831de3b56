//! omac's own configuration: `~/.config/omac/config.yaml`, then `<workdir>/.omac/config.yaml`
//! (later wins, field by field). Every field is optional; unknown fields are refused with
//! the file, the field and the fix.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::{Code, Failure};

/// One config file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Profile used when `--profile` is not given.
    #[serde(default)]
    pub profile: Option<String>,
    /// Harness used when none is named on the command line.
    #[serde(default)]
    pub harness: Option<String>,
    /// Facade settings.
    #[serde(default)]
    pub facade: FacadeConfig,
    /// Audit log settings.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Tool-cache settings.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Sandbox briefing override.
    #[serde(default)]
    pub sandbox: SandboxConfig,
}

/// `facade:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacadeConfig {
    /// Idle timeout of a connection, seconds (default 300).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Largest request body, bytes (default 10 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Host variables every sidecar receives.
    #[serde(default)]
    pub base_env_passthrough: Option<Vec<String>>,
}

/// `audit:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Whether the audit log is written (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Where (default `~/.local/state/omac/audit.jsonl`).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// `cache:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `global` (default), `config`, `workdir` (which sessions share tool caches) or `none`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `sandbox:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Text given to the agent about its sandbox, replacing omac's.
    #[serde(default)]
    pub briefing: Option<String>,
}

/// The merged configuration and the files it came from.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The merged values.
    pub values: ConfigFile,
    /// Files read, lowest layer first.
    pub files: Vec<PathBuf>,
}

/// Default facade idle timeout.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Host variables every sidecar receives by default (reference §1.3).
pub const DEFAULT_BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR",
];

fn read(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    if text.trim().is_empty() {
        return Ok(Some(ConfigFile::default()));
    }
    let de = serde_norway::Deserializer::from_str(&text);
    let parsed: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let at = inner
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        Failure::new(
            Code::Config,
            format!(
                "{}{at}: {field}: {inner}\n  fix: correct or remove the field (known: profile, harness, facade, audit, cache, sandbox)",
                path.display()
            ),
        )
    })?;
    if let Some(s) = &parsed.cache.scope {
        if !matches!(s.as_str(), "global" | "config" | "workdir" | "none") {
            return Err(Failure::new(
                Code::Config,
                format!(
                    "{}: cache.scope: unknown scope {s:?}\n  fix: write global, config, workdir or none",
                    path.display()
                ),
            )
            .into());
        }
    }
    Ok(Some(parsed))
}

fn merge(low: ConfigFile, high: ConfigFile) -> ConfigFile {
    ConfigFile {
        profile: high.profile.or(low.profile),
        harness: high.harness.or(low.harness),
        facade: FacadeConfig {
            idle_timeout_secs: high
                .facade
                .idle_timeout_secs
                .or(low.facade.idle_timeout_secs),
            max_body_bytes: high.facade.max_body_bytes.or(low.facade.max_body_bytes),
            base_env_passthrough: high
                .facade
                .base_env_passthrough
                .or(low.facade.base_env_passthrough),
        },
        audit: AuditConfig {
            enabled: high.audit.enabled.or(low.audit.enabled),
            path: high.audit.path.or(low.audit.path),
        },
        cache: CacheConfig {
            scope: high.cache.scope.or(low.cache.scope),
        },
        sandbox: SandboxConfig {
            briefing: high.sandbox.briefing.or(low.sandbox.briefing),
        },
    }
}

/// Loads the user's then the workdir's config file.
pub fn load(user_config_dir: Option<&Path>, workdir: &Path) -> anyhow::Result<Config> {
    let mut out = Config::default();
    let candidates = user_config_dir
        .map(|d| d.join("config.yaml"))
        .into_iter()
        .chain(std::iter::once(workdir.join(".omac").join("config.yaml")));
    for path in candidates {
        if let Some(file) = read(&path)? {
            out.values = merge(out.values, file);
            out.files.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_wins_field_by_field() {
        let t = tempfile::tempdir().unwrap();
        let user = t.path().join("cfg");
        let work = t.path().join("work");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::create_dir_all(work.join(".omac")).unwrap();
        std::fs::write(
            user.join("config.yaml"),
            "profile: strict\nfacade:\n  max_body_bytes: 5\n",
        )
        .unwrap();
        std::fs::write(
            work.join(".omac/config.yaml"),
            "facade:\n  idle_timeout_secs: 9\n",
        )
        .unwrap();
        let c = load(Some(&user), &work).unwrap();
        assert_eq!(c.values.profile.as_deref(), Some("strict"));
        assert_eq!(c.values.facade.max_body_bytes, Some(5));
        assert_eq!(c.values.facade.idle_timeout_secs, Some(9));
        assert_eq!(c.files.len(), 2);
    }

    #[test]
    fn unknown_fields_name_file_field_and_fix() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(".omac")).unwrap();
        std::fs::write(
            t.path().join(".omac/config.yaml"),
            "facade:\n  max_bdy: 1\n",
        )
        .unwrap();
        let e = load(None, t.path()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("config.yaml:2:") && msg.contains("max_bdy") && msg.contains("fix:"),
            "{msg}"
        );
        assert_eq!(crate::exit::code_for(&e), Code::Config);
    }
}
