//! OCI mount entries read into what the kernel's mount API needs: a bind (of a host path) or
//! a new filesystem with its parameters, and the mount attributes to set. Options omac
//! cannot honour are refused by name.

use omac_bundle::oci::Mount;

use crate::sys::attr;

/// What kind of mount an entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A bind of the host path `source`.
    Bind {
        /// The host path.
        source: String,
        /// Submounts too (`rbind`).
        recursive: bool,
    },
    /// A new instance of filesystem `fstype` with `params` (`key` or `key=value`).
    Fs {
        /// `tmpfs`, `proc`, `devpts`, `mqueue`, ...
        fstype: String,
        /// The source (device) name, for the kernel's records.
        source: String,
        /// Filesystem parameters.
        params: Vec<(String, Option<String>)>,
    },
}

/// A mount entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Where it goes inside.
    pub destination: String,
    /// Bind or new filesystem.
    pub kind: Kind,
    /// `MOUNT_ATTR_*` flags to set.
    pub attrs: u64,
    /// Whether the access-time mode is set (then the mask is cleared first).
    pub atime_set: bool,
}

/// Flags that mean "do not restrict": accepted and leave the flag as the source has it.
const PERMISSIVE: &[&str] = &[
    "rw",
    "suid",
    "dev",
    "exec",
    "defaults",
    "async",
    "atime",
    "diratime",
    "norelatime",
    "nostrictatime",
    "symfollow",
    "private",
    "rprivate",
    "nolazytime",
    "loud",
];

/// Checks that `dest` is an absolute, normalised path inside the root.
pub fn check_destination(dest: &str) -> Result<(), String> {
    if !dest.starts_with('/') {
        return Err(format!("{dest:?} is not an absolute path"));
    }
    if dest.trim_end_matches('/').is_empty() {
        return Err("a mount over / replaces the root; set root.path instead".to_string());
    }
    if dest.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{dest:?} contains . or .. components"));
    }
    Ok(())
}

/// Parses one entry of `config.json`'s `mounts`.
pub fn parse(m: &Mount) -> Result<Parsed, String> {
    check_destination(&m.destination)?;
    let mut attrs = 0u64;
    let mut atime_set = false;
    let mut bind = m.kind.as_deref() == Some("bind");
    let mut recursive = false;
    let mut params = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                recursive = true;
            }
            "ro" => attrs |= attr::RDONLY,
            "nosuid" => attrs |= attr::NOSUID,
            "nodev" => attrs |= attr::NODEV,
            "noexec" => attrs |= attr::NOEXEC,
            "nosymfollow" => attrs |= attr::NOSYMFOLLOW,
            "nodiratime" => attrs |= attr::NODIRATIME,
            "noatime" => {
                attrs = (attrs & !attr::ATIME_MASK) | attr::NOATIME;
                atime_set = true;
            }
            "strictatime" => {
                attrs = (attrs & !attr::ATIME_MASK) | attr::STRICTATIME;
                atime_set = true;
            }
            "relatime" => {
                attrs &= !attr::ATIME_MASK;
                atime_set = true;
            }
            p if PERMISSIVE.contains(&p) => {}
            "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                return Err(format!(
                    "option {o:?}: omac's mounts are private; other propagation types are not supported"
                ))
            }
            "remount" | "move" | "idmap" | "ridmap" | "recursive" | "tmpcopyup" | "copy-symlink" => {
                return Err(format!("option {o:?} is not supported"))
            }
            other => match other.split_once('=') {
                Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
                None => params.push((other.to_string(), None)),
            },
        }
    }
    let kind = if bind {
        if let Some((k, _)) = params.first() {
            return Err(format!("option {k:?} is not valid for a bind mount"));
        }
        let source = m
            .source
            .clone()
            .filter(|s| s.starts_with('/'))
            .ok_or_else(|| "a bind mount needs an absolute source path".to_string())?;
        Kind::Bind { source, recursive }
    } else {
        let fstype = m
            .kind
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the mount has no type".to_string())?;
        if !fstype
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("type {fstype:?} is not a filesystem name"));
        }
        Kind::Fs {
            source: m.source.clone().unwrap_or_else(|| fstype.clone()),
            fstype,
            params,
        }
    };
    Ok(Parsed {
        destination: m.destination.clone(),
        kind,
        attrs,
        atime_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: dest.into(),
            kind: Some(kind.into()),
            source: Some(source.into()),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn binds_and_filesystems() {
        let p = parse(&m(
            "/usr",
            "bind",
            "/usr",
            &["bind", "ro", "nosuid", "nodev"],
        ))
        .unwrap();
        assert_eq!(
            p.kind,
            Kind::Bind {
                source: "/usr".into(),
                recursive: false
            }
        );
        assert_eq!(p.attrs, attr::RDONLY | attr::NOSUID | attr::NODEV);
        let p = parse(&m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ))
        .unwrap();
        match p.kind {
            Kind::Fs { fstype, params, .. } => {
                assert_eq!(fstype, "devpts");
                assert_eq!(
                    params,
                    vec![
                        ("newinstance".to_string(), None),
                        ("ptmxmode".to_string(), Some("0666".to_string())),
                        ("mode".to_string(), Some("0620".to_string())),
                    ]
                );
            }
            k => panic!("{k:?}"),
        }
        let p = parse(&m("/dev", "tmpfs", "tmpfs", &["strictatime"])).unwrap();
        assert!(p.atime_set && p.attrs == attr::STRICTATIME);
    }

    #[test]
    fn refusals_name_the_option() {
        for (mount, want) in [
            (m("/x", "bind", "/x", &["bind", "rshared"]), "rshared"),
            (m("/x", "bind", "/x", &["bind", "mode=755"]), "mode"),
            (m("x", "tmpfs", "tmpfs", &[]), "absolute"),
            (m("/a/../b", "tmpfs", "tmpfs", &[]), ".."),
            (m("/x", "bind", "rel", &["bind"]), "absolute source"),
            (m("/x", "tmpfs", "tmpfs", &["idmap"]), "idmap"),
        ] {
            let e = parse(&mount).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
