//! The errors of the facade and the supervisor.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong when starting or running the facade and its sidecars.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What omac was doing ("binding the facade socket", ...).
        what: String,
        /// The file or socket involved.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("{field}: {message} (fix: {fix})")]
    Config {
        /// The field, e.g. `routes[2].mount` or `sidecar echo-rest: command`.
        field: String,
        /// What is wrong with it.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A sidecar could not be started at all.
    #[error("sidecar {skill}: cannot start {command}: {source} (its log: {})", log.display())]
    Spawn {
        /// The skill name.
        skill: String,
        /// The command line (never the environment).
        command: String,
        /// Where its output goes.
        log: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A sidecar did not answer its health probe in time, or exited before it did.
    #[error(
        "sidecar {skill} did not become healthy after {} ms: {detail} (its log: {}{})",
        waited.as_millis(),
        log.display(),
        if tail.is_empty() { String::new() } else { format!("; last lines:\n{tail}") }
    )]
    Health {
        /// The skill name.
        skill: String,
        /// How long omac waited.
        waited: Duration,
        /// Why the wait failed (last probe error, or the exit status).
        detail: String,
        /// The sidecar's log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
}

impl Error {
    /// omac's exit code for this error: 3 config invalid, 5 I/O, 6 a sidecar did not start.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } => 3,
            Error::Io { .. } => 5,
            Error::Spawn { .. } | Error::Health { .. } => 6,
        }
    }

    /// An I/O error with what was being done and the path involved.
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// A configuration error naming the field, the problem and the fix.
    pub(crate) fn config(
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}
