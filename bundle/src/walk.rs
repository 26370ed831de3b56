//! A parallel directory walk that finds entries by basename (`.env`, `*.pem`), the one slow
//! part of bundle generation: it visits every directory of the granted trees.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use globset::GlobSet;

/// Basenames to look for: exact names checked by hashing, patterns by globset.
pub struct Matcher {
    exact: HashSet<OsString>,
    globs: Option<GlobSet>,
}

impl Matcher {
    /// Builds a matcher; entries without glob characters are exact names.
    pub fn new(patterns: &[String]) -> Result<Matcher, globset::Error> {
        let mut exact = HashSet::new();
        let mut b = globset::GlobSetBuilder::new();
        let mut any_glob = false;
        for p in patterns {
            if p.contains(['*', '?', '[', '{']) {
                b.add(globset::Glob::new(p)?);
                any_glob = true;
            } else {
                exact.insert(OsString::from(p));
            }
        }
        let globs = if any_glob { Some(b.build()?) } else { None };
        Ok(Matcher { exact, globs })
    }

    fn matches(&self, name: &std::ffi::OsStr) -> bool {
        self.exact.contains(name) || self.globs.as_ref().is_some_and(|g| g.is_match(name))
    }

    /// Whether the matcher can match anything at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_none()
    }
}

struct Queue {
    dirs: Vec<PathBuf>,
    busy: usize,
}

/// Every entry under `roots` whose basename matches, sorted. Matched directories are not
/// descended into; symbolic links are reported when they match but never followed.
pub fn find(roots: &[PathBuf], matcher: &Matcher) -> Vec<PathBuf> {
    if matcher.is_empty() || roots.is_empty() {
        return Vec::new();
    }
    let queue = Mutex::new(Queue {
        dirs: roots.to_vec(),
        busy: 0,
    });
    let wake = Condvar::new();
    let found = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| worker(&queue, &wake, &found, matcher));
        }
    });
    let mut out = found.into_inner().unwrap_or_default();
    out.sort();
    out
}

fn worker(queue: &Mutex<Queue>, wake: &Condvar, found: &Mutex<Vec<PathBuf>>, m: &Matcher) {
    let mut local_found = Vec::new();
    let mut local_dirs = Vec::new();
    loop {
        let dir = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(d) = q.dirs.pop() {
                    q.busy += 1;
                    break Some(d);
                }
                if q.busy == 0 {
                    break None;
                }
                q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(dir) = dir else {
            wake.notify_all();
            break;
        };
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for entry in rd.flatten() {
                let name = entry.file_name();
                if m.matches(&name) {
                    local_found.push(entry.path());
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    local_dirs.push(entry.path());
                }
            }
        }
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        q.busy -= 1;
        let added = !local_dirs.is_empty();
        q.dirs.append(&mut local_dirs);
        let done = q.busy == 0 && q.dirs.is_empty();
        drop(q);
        if added || done {
            wake.notify_all();
        }
    }
    found
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .append(&mut local_found);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_and_globs_without_following_links_or_entering_matches() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::fs::create_dir_all(r.join("keys.d/.env")).unwrap();
        std::fs::write(r.join("a/.env"), "x").unwrap();
        std::fs::write(r.join("a/b/c/.envrc"), "x").unwrap();
        std::fs::write(r.join("a/b/server.pem"), "x").unwrap();
        std::fs::write(r.join("keys.d/.env/.env"), "inner").unwrap();
        std::os::unix::fs::symlink(r.join("a"), r.join("loop")).unwrap();
        let m = Matcher::new(&[".env".into(), ".envrc".into(), "*.pem".into()]).unwrap();
        let got = find(&[r.to_path_buf()], &m);
        let rel: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            rel,
            vec![
                PathBuf::from("a/.env"),
                "a/b/c/.envrc".into(),
                "a/b/server.pem".into(),
                "keys.d/.env".into()
            ]
        );
    }
}
