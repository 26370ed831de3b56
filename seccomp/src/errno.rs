//! errno names a profile may use in seccomp rules, and their numbers.

/// errno names accepted in profiles, with their values on Linux.
const ERRNOS: &[(&str, i32)] = &[
    ("EACCES", libc::EACCES),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EINVAL", libc::EINVAL),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EPERM", libc::EPERM),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
];

/// The value of errno `name` (such as `EPERM`), if it is one omac accepts.
pub fn by_name(name: &str) -> Option<u32> {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as u32)
}

/// The name of errno `value`, or its number as text.
pub fn name_of(value: u32) -> String {
    ERRNOS
        .iter()
        .find(|(_, v)| *v as u32 == value)
        .map(|(n, _)| (*n).to_string())
        .unwrap_or_else(|| format!("errno {value}"))
}

/// Every accepted errno name, for error messages.
pub fn names() -> Vec<&'static str> {
    ERRNOS.iter().map(|(n, _)| *n).collect()
}
