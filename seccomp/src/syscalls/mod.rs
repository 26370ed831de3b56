//! Syscall names and numbers of the architecture omac runs on.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
use aarch64::TABLE;
#[cfg(target_arch = "x86_64")]
use x86_64::TABLE;

/// The number of syscall `name` on this architecture, if the kernel has such a syscall here.
pub fn number(name: &str) -> Option<i64> {
    TABLE
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| TABLE[i].1)
}

/// Whether `name` is a syscall of this architecture.
pub fn is_known(name: &str) -> bool {
    number(name).is_some()
}

/// Every syscall name of this architecture, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_so_lookups_work() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn finds_the_syscalls_the_policy_names() {
        assert_eq!(number("io_uring_setup"), Some(libc::SYS_io_uring_setup));
        assert_eq!(number("clone3"), Some(libc::SYS_clone3));
        assert!(number("no_such_call").is_none());
        assert!(names().count() > 250);
    }
}
