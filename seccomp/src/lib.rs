//! omac's syscall policy: the default agent filter as OCI `linux.seccomp` data, profile
//! edits on it, and the compiler that turns any OCI filter into BPF for the runtime.

mod compact;
pub mod compile;
mod entry;
pub mod errno;
mod merge;
pub mod oci;
pub mod policy;
pub mod probe;
pub mod syscalls;

pub use compile::{compile, CompiledFilter};
pub use oci::LinuxSeccomp;
pub use policy::{agent_policy, describe, groups, Edits, Group, GroupCoverage};

/// What can go wrong building, compiling or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule names a syscall this architecture does not have.
    #[error("unknown syscall {0:?} (not a syscall of this architecture)")]
    UnknownSyscall(String),
    /// A profile names a group omac does not define.
    #[error("unknown seccomp group \"@{0}\" (known: {known})", known = group_names())]
    UnknownGroup(String),
    /// A profile names an errno omac does not accept.
    #[error("unknown errno {0:?} (use one of {known})", known = errno::names().join(", "))]
    UnknownErrno(String),
    /// The filter uses something omac's compiler does not implement.
    #[error("unsupported seccomp setting: {0}")]
    Unsupported(String),
    /// The filter is malformed.
    #[error("invalid seccomp filter: {0}")]
    Invalid(String),
    /// omac has no syscall table for this machine's architecture.
    #[error("omac supports seccomp only on x86_64 and aarch64")]
    UnsupportedArch,
    /// The kernel refused the filter.
    #[error("installing the seccomp filter failed: {0}")]
    Install(String),
}

fn group_names() -> String {
    groups()
        .iter()
        .map(|g| format!("@{}", g.name))
        .collect::<Vec<_>>()
        .join(", ")
}
