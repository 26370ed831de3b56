//! Keychain names (reference §5.5), identical to the Go omac's so both find the same items.
//!
//! | service | account | used for |
//! |---|---|---|
//! | `omac/<skill>` | secret name | global skills; the read fallback |
//! | `omac/<sha256hex(workdir)>/<skill>` | secret name | workdir skills |
//! | `omac/__defaults__/<skill>` | secret name | remembered value, written on every set |
//! | `omac/__doctor_probe__` | `probe` | reachability probe |

use std::path::Path;

use sha2::{Digest, Sha256};

/// The scope part of the `__defaults__` mirror.
pub const DEFAULTS_SCOPE: &str = "__defaults__";

/// The service `omac doctor` and `omac secrets backend` probe.
pub const PROBE_SERVICE: &str = "omac/__doctor_probe__";

/// The account of the probe.
pub const PROBE_ACCOUNT: &str = "probe";

/// Whose secret it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A global skill (`omac/<skill>`).
    Global,
    /// A workdir skill: the full sha256 hex of the absolute workdir path.
    Workdir(String),
    /// The remembered-value mirror.
    Defaults,
}

impl Scope {
    /// The workdir scope of `workdir` (as the Go omac hashes it: the path's bytes).
    pub fn workdir(workdir: &Path) -> Scope {
        use std::os::unix::ffi::OsStrExt;
        Scope::Workdir(hex::encode(Sha256::digest(workdir.as_os_str().as_bytes())))
    }

    /// The keychain service for `skill` in this scope.
    pub fn service(&self, skill: &str) -> String {
        match self {
            Scope::Global => format!("omac/{skill}"),
            Scope::Workdir(id) => format!("omac/{id}/{skill}"),
            Scope::Defaults => format!("omac/{DEFAULTS_SCOPE}/{skill}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_go_omac() {
        assert_eq!(Scope::Global.service("echo-rest"), "omac/echo-rest");
        assert_eq!(
            Scope::Defaults.service("echo-rest"),
            "omac/__defaults__/echo-rest"
        );
        // sha256("/home/u/proj"), as `printf %s /home/u/proj | sha256sum` prints it.
        let want = hex::encode(Sha256::digest(b"/home/u/proj"));
        assert_eq!(
            Scope::workdir(Path::new("/home/u/proj")).service("s"),
            format!("omac/{want}/s")
        );
        assert_eq!(want.len(), 64);
    }
}
