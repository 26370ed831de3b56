//! Errors of starting and configuring the proxy (refusals of connections are not errors:
//! they are [`crate::verdict::Denial`]s answered to the client).

use std::path::PathBuf;

/// What can go wrong when a proxy is set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be created.
    #[error("cannot listen on {path}: {source} (fix: check that the directory exists and is writable, and that no other omac session uses this socket)")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting of the network policy cannot be used.
    #[error("{field}: {message} (fix: {fix})")]
    Config {
        /// Where the value came from (`network.upstream_proxy`, `HTTPS_PROXY`, ...).
        field: String,
        /// What is wrong.
        message: String,
        /// How to repair it.
        fix: String,
    },
    /// The learned-decisions file could not be read or written.
    #[error("{path}: {message} (fix: {fix})")]
    Pages {
        /// The `.pages.json` file.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// How to repair it.
        fix: String,
    },
}
