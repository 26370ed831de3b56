//! What can go wrong running a bundle.

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle asks for something omac does not implement (refused, never ignored).
    #[error("{file}: {field}: {message}\n  fix: {fix}")]
    Unsupported {
        /// The bundle file (`config.json`, `omac.json`).
        file: String,
        /// The JSON path of the setting.
        field: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The seccomp filter of the bundle could not be compiled.
    #[error("config.json: linux.seccomp: {0}")]
    Seccomp(#[from] omac_seccomp::Error),
    /// A layer the bundle requires is not available on this host.
    #[error("{message}\n  fix: {fix}")]
    Unavailable {
        /// The enforcement layer (`namespaces`, `landlock-fs`, ...).
        layer: String,
        /// What is missing and why.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The host is in a state the sandbox cannot protect (for example a protected file
    /// with a second name inside the view).
    #[error("{message}\n  fix: {fix}")]
    Refused {
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// Building the sandbox failed at `step`.
    #[error("sandbox setup failed ({step}): {message}\n  fix: {fix}")]
    Setup {
        /// The step (`mount /usr`, `pivot_root`, `landlock`, `exec`, ...).
        step: String,
        /// What happened.
        message: String,
        /// What to do.
        fix: String,
    },
    /// Starting or talking to the sandbox process failed.
    #[error("starting the sandbox: {0}")]
    Spawn(#[source] std::io::Error),
    /// The sandbox ended without reporting the agent's status.
    #[error("the sandbox ended abnormally: {0}")]
    Abnormal(String),
}

impl Error {
    /// Whether the error is the bundle's fault (exit code "config invalid") rather than the
    /// host's or the sandbox's ("sandbox failed").
    pub fn is_bundle_error(&self) -> bool {
        matches!(self, Error::Unsupported { .. } | Error::Seccomp(_))
    }

    pub(crate) fn unsupported(
        file: &str,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Error {
        Error::Unsupported {
            file: file.to_string(),
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}
