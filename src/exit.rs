//! The one place that maps failures to omac's exit codes (reference §6).

use std::fmt;

/// omac's exit codes: the whole table, whether or not a command returns each one yet.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// Any failure without a more specific code.
    Generic = 1,
    /// The command line is wrong.
    Misuse = 2,
    /// A configuration, profile, bundle or skill metadata file is invalid.
    Config = 3,
    /// Something the command needs is missing (a skill, a binary, a layer).
    Prerequisite = 4,
    /// Reading or writing a file failed.
    Io = 5,
    /// A sidecar did not become healthy.
    SidecarHealth = 6,
    /// The sandbox could not be built or failed abnormally.
    Sandbox = 7,
    /// The keychain failed.
    Keychain = 8,
    /// A secret or config field is missing or was refused.
    Secret = 9,
}

/// A failure that carries its exit code explicitly.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// What to tell the user (including the fix).
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: the first cause in its chain that omac knows decides.
pub fn code_for(err: &anyhow::Error) -> Code {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<omac_bundle::Error>() {
            return match e {
                omac_bundle::Error::Profile(_)
                | omac_bundle::Error::Bundle { .. }
                | omac_bundle::Error::Seccomp(_) => Code::Config,
                omac_bundle::Error::Io { .. } => Code::Io,
                omac_bundle::Error::Input { .. } => Code::Misuse,
            };
        }
        if let Some(e) = cause.downcast_ref::<omac_runtime::Error>() {
            return if e.is_bundle_error() {
                Code::Config
            } else {
                Code::Sandbox
            };
        }
        if let Some(e) = cause.downcast_ref::<omac_skills::Error>() {
            return match e {
                omac_skills::Error::Invalid { .. } | omac_skills::Error::Changed { .. } => {
                    Code::Config
                }
                omac_skills::Error::NotFound { .. } => Code::Prerequisite,
                omac_skills::Error::Ambiguous { .. } => Code::Misuse,
                // The Go omac exits 5 for a registration conflict (a registry error).
                omac_skills::Error::Conflict { .. }
                | omac_skills::Error::Corrupt { .. }
                | omac_skills::Error::Io { .. } => Code::Io,
            };
        }
        if let Some(e) = cause.downcast_ref::<crate::secrets::KeychainError>() {
            return match e {
                crate::secrets::KeychainError::BadChoice(_) => Code::Misuse,
                _ => Code::Keychain,
            };
        }
        if let Some(e) = cause.downcast_ref::<omac_egress::Error>() {
            return match e {
                omac_egress::Error::Config { .. } => Code::Config,
                omac_egress::Error::Listen { .. } | omac_egress::Error::Pages { .. } => Code::Io,
            };
        }
        if let Some(e) = cause.downcast_ref::<omac_facade::Error>() {
            return match e {
                omac_facade::Error::Config { .. } => Code::Config,
                omac_facade::Error::Io { .. } => Code::Io,
                omac_facade::Error::Spawn { .. } | omac_facade::Error::Health { .. } => {
                    Code::SidecarHealth
                }
            };
        }
        if let Some(e) = cause.downcast_ref::<clap::Error>() {
            return if e.use_stderr() {
                Code::Misuse
            } else {
                Code::Ok
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return Code::Io;
        }
    }
    Code::Generic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_map_to_codes() {
        let e = anyhow::Error::new(Failure::new(Code::Secret, "x")).context("while starting");
        assert_eq!(code_for(&e), Code::Secret);
        let e = anyhow::Error::new(omac_bundle::Error::Input {
            message: "m".into(),
            fix: "f".into(),
        });
        assert_eq!(code_for(&e), Code::Misuse);
        let e = anyhow::Error::new(std::io::Error::other("disk"));
        assert_eq!(code_for(&e), Code::Io);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), Code::Generic);
        let e = anyhow::Error::new(omac_runtime::Error::Abnormal("x".into()));
        assert_eq!(code_for(&e), Code::Sandbox);
        let e = anyhow::Error::new(omac_runtime::Error::Setup {
            step: "s".into(),
            message: "m".into(),
            fix: "f".into(),
        });
        assert_eq!(code_for(&e), Code::Sandbox);
        let e = anyhow::Error::new(omac_skills::Error::invalid("f", "x", "r", "fix"));
        assert_eq!(code_for(&e.context("loading")), Code::Config);
        let e = anyhow::Error::new(omac_skills::Error::NotFound {
            what: "w".into(),
            fix: "f".into(),
        });
        assert_eq!(code_for(&e), Code::Prerequisite);
        let e = anyhow::Error::new(crate::secrets::KeychainError::BadChoice("x".into()));
        assert_eq!(code_for(&e), Code::Misuse);
        let e = anyhow::Error::new(crate::secrets::KeychainError::Unavailable {
            backend: "keyutils",
            reason: "r".into(),
            fix: "f".into(),
        });
        assert_eq!(code_for(&e), Code::Keychain);
        let e = anyhow::Error::new(omac_egress::Error::Config {
            field: "network.upstream_proxy".into(),
            message: "m".into(),
            fix: "f".into(),
        });
        assert_eq!(code_for(&e), Code::Config);
        let e = anyhow::Error::new(omac_facade::Error::Health {
            skill: "s".into(),
            waited: std::time::Duration::ZERO,
            detail: "d".into(),
            log: "l".into(),
            tail: String::new(),
        });
        assert_eq!(code_for(&e), Code::SidecarHealth);
    }
}
