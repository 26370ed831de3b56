//! Landlock filesystem rights by name, the Landlock ABI that introduced each, and the sets
//! omac grants for read, write and device access.

/// Every filesystem right, with the ABI that introduced it.
pub const ALL: &[(&str, u32)] = &[
    ("execute", 1),
    ("write_file", 1),
    ("read_file", 1),
    ("read_dir", 1),
    ("remove_dir", 1),
    ("remove_file", 1),
    ("make_char", 1),
    ("make_dir", 1),
    ("make_reg", 1),
    ("make_sock", 1),
    ("make_fifo", 1),
    ("make_block", 1),
    ("make_sym", 1),
    ("refer", 2),
    ("truncate", 3),
    ("ioctl_dev", 5),
];

/// Rights for reading files and running programs.
pub const READ: &[&str] = &["execute", "read_file", "read_dir"];

/// Rights for creating, changing and removing files (never device nodes).
pub const WRITE: &[&str] = &[
    "write_file",
    "remove_dir",
    "remove_file",
    "make_dir",
    "make_reg",
    "make_sock",
    "make_fifo",
    "make_sym",
    "refer",
    "truncate",
];

/// Rights on a device node.
pub const DEVICE: &[&str] = &["read_file", "write_file", "ioctl_dev"];

/// The ABI below which Landlock cannot express omac's rules well: without `refer` (ABI 2)
/// every rename across directories fails.
pub const MIN_ABI: u32 = 2;

/// The ABI that introduced right `name`, if it is one.
pub fn abi_of(name: &str) -> Option<u32> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// A sorted, deduplicated right list from several sets.
pub fn set(parts: &[&[&str]]) -> Vec<String> {
    let mut v: Vec<String> = parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect();
    v.sort_by_key(|n| ALL.iter().position(|(a, _)| a == n));
    v.dedup();
    v
}
