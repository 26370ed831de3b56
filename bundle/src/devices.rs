//! Opt-in host devices (a profile's `devices`): bound into the sandbox by the mounts, and
//! allowed in the device cgroup, which a runtime running as root enforces (runc denies any
//! device node its spec does not allow, whatever the mounts say).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::oci::DeviceRule;

/// Major and minor numbers of a `dev_t` (glibc's encoding).
fn split(dev: u64) -> (i64, i64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as i64, minor as i64)
}

/// The device nodes at or beneath `path` (a node, or a directory such as `/dev/dri`).
fn nodes(path: &Path, out: &mut Vec<(PathBuf, char, u64)>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let ft = meta.file_type();
    if ft.is_char_device() {
        out.push((path.to_path_buf(), 'c', meta.rdev()));
    } else if ft.is_block_device() {
        out.push((path.to_path_buf(), 'b', meta.rdev()));
    } else if ft.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            nodes(&e, out);
        }
    }
}

/// The device cgroup rules for `devices`: deny everything, then allow each node found (the
/// runtime appends its default devices after these). Empty when no node is found.
pub fn cgroup_rules(devices: &[PathBuf]) -> Vec<DeviceRule> {
    let mut found = Vec::new();
    for d in devices {
        nodes(d, &mut found);
    }
    if found.is_empty() {
        return Vec::new();
    }
    let mut rules = vec![DeviceRule {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: Some("rwm".into()),
    }];
    let mut seen = Vec::new();
    for (_, kind, dev) in found {
        let (major, minor) = split(dev);
        if seen.contains(&(kind, major, minor)) {
            continue;
        }
        seen.push((kind, major, minor));
        rules.push(DeviceRule {
            allow: true,
            kind: Some(kind.to_string()),
            major: Some(major),
            minor: Some(minor),
            access: Some("rwm".into()),
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_glibc() {
        // makedev(226, 128) and makedev(259, 70000)
        assert_eq!(split(0xe280), (226, 128));
        let dev = ((70000u64 & !0xff) << 12) | (70000 & 0xff) | ((259 & 0xfff) << 8);
        assert_eq!(split(dev), (259, 70000));
    }

    #[test]
    fn nodes_and_directories_of_nodes_are_allowed_after_a_deny_all() {
        let rules = cgroup_rules(&[PathBuf::from("/dev/null"), PathBuf::from("/dev/nope")]);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(!rules[0].allow && rules[0].kind.is_none());
        assert_eq!(
            (rules[1].kind.as_deref(), rules[1].major, rules[1].minor),
            (Some("c"), Some(1), Some(3))
        );
        assert!(cgroup_rules(&[PathBuf::from("/dev/nope")]).is_empty());
        let t = tempfile::tempdir().unwrap();
        assert!(cgroup_rules(&[t.path().to_path_buf()]).is_empty());
    }
}
