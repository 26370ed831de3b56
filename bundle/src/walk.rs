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

/// Directories the calling thread reads by itself before it asks for helper threads: most
/// granted trees are that small, and threads started and joined for them would only add
/// their start-up and, on a loaded machine, the wait until each is scheduled.
const SOLO_DIRS: usize = 64;

/// Every entry under `roots` whose basename matches, sorted. Matched directories are not
/// descended into; symbolic links are reported when they match but never followed.
pub fn find(roots: &[PathBuf], matcher: &Matcher) -> Vec<PathBuf> {
    if matcher.is_empty() || roots.is_empty() {
        return Vec::new();
    }
    let mut dirs = roots.to_vec();
    let mut out = Vec::new();
    let mut visited = 0;
    while visited < SOLO_DIRS {
        let Some(dir) = dirs.pop() else {
            out.sort();
            return out;
        };
        visit(&dir, matcher, &mut out, &mut dirs);
        visited += 1;
    }
    // A large tree: the rest is shared between threads.
    let queue = Mutex::new(Queue { dirs, busy: 0 });
    let wake = Condvar::new();
    let found = Mutex::new(out);
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

/// Reads one directory: matching entries go to `found`, other subdirectories to `dirs`.
fn visit(dir: &std::path::Path, m: &Matcher, found: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            let name = entry.file_name();
            if m.matches(&name) {
                found.push(entry.path());
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
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
        visit(&dir, m, &mut local_found, &mut local_dirs);
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

    #[test]
    fn a_tree_larger_than_the_solo_part_is_walked_whole_by_the_threads() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let mut want = Vec::new();
        for i in 0..(SOLO_DIRS * 2) {
            let d = r.join(format!("d{i}/sub"));
            std::fs::create_dir_all(&d).unwrap();
            if i % 7 == 0 {
                std::fs::write(d.join(".env"), "x").unwrap();
                want.push(d.join(".env"));
            }
        }
        want.sort();
        let m = Matcher::new(&[".env".into()]).unwrap();
        assert_eq!(find(&[r.to_path_buf()], &m), want);
    }
}
