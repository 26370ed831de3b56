//! Errors of bundle generation, loading and checking.

use std::path::{Path, PathBuf};

pub use crate::profile::ProfileError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile file is unusable.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A bundle file is malformed or inconsistent.
    #[error("{file}: {message}\n  fix: {fix}")]
    Bundle {
        /// The bundle file.
        file: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The syscall policy could not be built. (Not a `source`: the message already holds
    /// it, and `{:#}` would print it twice.)
    #[error("seccomp: {0}")]
    Seccomp(omac_seccomp::Error),
    /// The request itself is unusable (a bad workdir, a grant under /proc, ...).
    #[error("{message}\n  fix: {fix}")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
}

impl From<omac_seccomp::Error> for Error {
    fn from(e: omac_seccomp::Error) -> Error {
        Error::Seccomp(e)
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
