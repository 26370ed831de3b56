//! Making the command runnable inside: find it on PATH, follow its symlink chain, and grant
//! (read-only) the directories the chain and its interpreter live in when the rest of the
//! view does not already show them. `argv[0]` becomes the absolute path found on PATH,
//! not the link's target, so multi-call binaries keep their name.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::grants::{Access, Grant, Origin};
use crate::host::{is_within, normalize, HostFacts};

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `name` on `PATH` (or relative to the workdir when it has a `/`).
pub fn find_on_path(name: &str, host: &HostFacts) -> Option<PathBuf> {
    if name.contains('/') {
        let p = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            host.workdir.join(name)
        };
        return is_executable(&p).then(|| normalize(&p));
    }
    host.path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

/// The outermost `node_modules` ancestor, so a package's siblings are visible too.
fn package_root(p: &Path) -> Option<PathBuf> {
    let mut found = None;
    for a in p.ancestors() {
        if a.file_name().is_some_and(|n| n == "node_modules") {
            found = Some(a.to_path_buf());
        }
    }
    found
}

fn covered(p: &Path, grants: &[Grant]) -> bool {
    grants
        .iter()
        .any(|g| g.access.read && is_within(p, &g.path))
}

fn grant_dir_of(file: &Path, grants: &[Grant], out: &mut Vec<Grant>) {
    if covered(file, grants) || covered(file, out) {
        return;
    }
    let dir = package_root(file).or_else(|| file.parent().map(Path::to_path_buf));
    if let Some(dir) = dir {
        out.push(Grant {
            path: dir,
            access: Access::READ,
            origin: Origin::Command,
            walk: false,
        });
    }
}

/// Every hop of a symlink chain, starting with `start` itself.
fn chain(start: &Path) -> Vec<PathBuf> {
    let mut hops = vec![start.to_path_buf()];
    let mut cur = start.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&cur) {
            Ok(t) => {
                let next = if t.is_absolute() {
                    t
                } else {
                    cur.parent().unwrap_or(Path::new("/")).join(t)
                };
                cur = normalize(&next);
                hops.push(cur.clone());
            }
            Err(_) => break,
        }
    }
    hops
}

/// The interpreter of a `#!` script (through `/usr/bin/env NAME` too).
fn interpreter(script: &Path, host: &HostFacts) -> Option<PathBuf> {
    let head = std::fs::read(script).ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(
        &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())],
    )
    .into_owned();
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if Path::new(first).file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        find_on_path(name, host)
    } else {
        Some(PathBuf::from(first))
    }
}

/// Resolves `argv[0]`: the new argv and the grants it needs beyond `grants`.
/// A command that cannot be found is left as it is, with a warning.
pub fn resolve(
    argv: &[String],
    host: &HostFacts,
    grants: &[Grant],
    warnings: &mut Vec<String>,
) -> (Vec<String>, Vec<Grant>) {
    let mut argv = argv.to_vec();
    let mut extra = Vec::new();
    let Some(first) = argv.first().cloned() else {
        return (argv, extra);
    };
    let Some(found) = find_on_path(&first, host) else {
        warnings.push(format!(
            "command {first:?} was not found on PATH; the bundle runs it by name"
        ));
        return (argv, extra);
    };
    argv[0] = found.display().to_string();
    let hops = chain(&found);
    for hop in &hops {
        grant_dir_of(hop, grants, &mut extra);
    }
    if let Some(last) = hops.last() {
        if let Some(interp) = interpreter(last, host) {
            for hop in chain(&interp) {
                grant_dir_of(&hop, grants, &mut extra);
            }
        }
    }
    (argv, extra)
}
