//! The errors of this crate: each names the file, the field or the skill, and the fix.

use std::path::PathBuf;

/// Everything that can go wrong with skills, their registry and their layers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A skill file (`omac.yaml`, `SKILL.md`) or an omac state file breaks a rule.
    #[error("{}: {field}: {rule}\n  fix: {fix}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field (a dotted path such as `sidecar.health.path`), or `-` for the whole file.
        field: String,
        /// The rule it breaks.
        rule: String,
        /// How to fix it.
        fix: String,
    },
    /// Something the command needs does not exist (a skill, a layer, a registration).
    #[error("{what}\n  fix: {fix}")]
    NotFound {
        /// What is missing.
        what: String,
        /// How to provide it.
        fix: String,
    },
    /// A skill name matches several directories and the command cannot pick one.
    #[error("{message}\n  fix: {fix}")]
    Ambiguous {
        /// The candidates, one per line.
        message: String,
        /// The flag that picks one.
        fix: String,
    },
    /// A skill directory no longer matches the layer approved when it was registered.
    #[error(
        "skill {skill:?} changed since it was registered ({}): approved {registered}, now {current}\n  \
         fix: review the change, then `omac register {skill} --force`; or start once with \
         --accept-skill-changes",
        dir.display()
    )]
    Changed {
        /// The skill.
        skill: String,
        /// Its directory.
        dir: PathBuf,
        /// The digest approved at registration.
        registered: String,
        /// The digest of the directory now.
        current: String,
    },
    /// A skill is already registered with other content.
    #[error(
        "skill {skill:?} is already registered with a different digest ({registered}; the \
         directory is now {current})\n  fix: review the change, then pass --force to update the \
         registration"
    )]
    Conflict {
        /// The skill.
        skill: String,
        /// The digest in the registry.
        registered: String,
        /// The digest of the directory now.
        current: String,
    },
    /// A layer in the store does not hash to its name.
    #[error(
        "layer {} does not match its digest (it hashes to {actual})\n  fix: run `omac skills gc` \
         and register the skill again",
        path.display()
    )]
    Corrupt {
        /// The layer directory.
        path: PathBuf,
        /// What it hashes to.
        actual: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What omac was doing (`reading`, `writing`, `locking`...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`].
    pub fn invalid(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        rule: impl Into<String>,
        fix: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            file: file.into(),
            field: field.into(),
            rule: rule.into(),
            fix: fix.into(),
        }
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A problem that does not stop omac but that the user should see (unknown fields, advice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// The field, or `-`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}
