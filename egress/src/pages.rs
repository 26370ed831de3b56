//! Learned decisions: the profile's `<profile>.pages.json`, in the format the Go omac and
//! nono share: `{"schema": 1, "entries": [{"host", "scope": "host"|"suffix",
//! "decision": "allow"|"deny"}]}`. Hosts are lower-case without a trailing dot; entries
//! are upserted by (host, scope); a matching deny wins. The file is written atomically
//! (temp file + rename) under a lock, pretty-printed, and re-read when it changes on disk:
//! a deny another session learned applies at once, an allow written by anyone else waits
//! for the next session (a running session can be narrowed by the file, never widened). A
//! file that cannot be read is reported and never overwritten.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// The only schema version understood.
pub const SCHEMA: u64 = 1;

/// Whether an entry covers one host or a host and its subdomains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryScope {
    /// Exactly this host.
    Host,
    /// This domain and every subdomain.
    Suffix,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Connections may proceed.
    Allow,
    /// Connections are refused.
    Deny,
}

/// One learned decision (fields other tools add are kept as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The host or domain, lower case, no trailing dot.
    pub host: String,
    /// What it covers.
    pub scope: EntryScope,
    /// The decision.
    pub decision: Decision,
    /// Fields this version does not know, preserved on rewrite.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PagesFile {
    schema: u64,
    #[serde(default)]
    entries: Vec<Entry>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Whether a decision recorded for `entry_host` with `scope` covers `host`.
pub fn covers(entry_host: &str, scope: EntryScope, host: &str) -> bool {
    let h = omac_bundle::domain::normalize_host(host);
    match scope {
        EntryScope::Host => h == entry_host,
        EntryScope::Suffix => {
            h == entry_host
                || (!omac_bundle::domain::is_ip_literal(entry_host)
                    && h.ends_with(entry_host)
                    && h[..h.len() - entry_host.len()].ends_with('.'))
        }
    }
}

/// The decision the entries give for `host`: a matching deny wins over a matching allow.
pub fn decide<'a>(
    entries: impl IntoIterator<Item = (&'a str, EntryScope, Decision)>,
    host: &str,
) -> Option<(Decision, String, EntryScope)> {
    let mut allow = None;
    for (h, scope, d) in entries {
        if covers(h, scope, host) {
            match d {
                Decision::Deny => return Some((Decision::Deny, h.to_string(), scope)),
                Decision::Allow => allow = allow.or(Some((Decision::Allow, h.to_string(), scope))),
            }
        }
    }
    allow
}

type Stamp = (i64, i64, u64, u64);

#[derive(Debug, Default)]
struct State {
    stamp: Option<Stamp>,
    entries: Vec<Entry>,
    broken: Option<String>,
    /// Allow entries this session may use: those in the file when it was opened and those
    /// it saved itself. An allow written into the file by anyone else while the session
    /// runs (the agent, if a profile grants it that directory) waits for the next session;
    /// a deny applies at once. A change of the file can narrow a running session, never
    /// widen it.
    trusted: HashSet<(String, EntryScope)>,
}

impl State {
    fn in_force(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| {
            e.decision == Decision::Deny || self.trusted.contains(&(e.host.clone(), e.scope))
        })
    }
}

/// The learned decisions of one profile.
#[derive(Debug)]
pub struct Pages {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let file: PagesFile =
        serde_json::from_str(text).map_err(|e| format!("not a valid pages file: {e}"))?;
    if file.schema != SCHEMA {
        return Err(format!(
            "schema {} is not supported (this omac reads schema {SCHEMA})",
            file.schema
        ));
    }
    Ok(file.entries)
}

fn read(path: &Path) -> Result<Option<String>, String> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

impl Pages {
    /// The decisions stored at `path` (`None`: kept in memory only, nothing persists).
    pub fn open(path: Option<PathBuf>) -> Pages {
        let p = Pages {
            path,
            state: Mutex::new(State::default()),
        };
        p.refresh();
        let mut st = p.lock();
        st.trusted = st
            .entries
            .iter()
            .filter(|e| e.decision == Decision::Allow)
            .map(|e| (e.host.clone(), e.scope))
            .collect();
        drop(st);
        p
    }

    /// The file, if decisions persist.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Why the file cannot be used, if it cannot (it is then left untouched).
    pub fn broken(&self) -> Option<String> {
        self.refresh();
        self.lock().broken.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = stamp(path);
        let mut st = self.lock();
        if st.stamp == now && (now.is_some() || st.entries.is_empty()) {
            return;
        }
        st.stamp = now;
        match read(path).and_then(|t| t.map_or(Ok(Vec::new()), |t| parse(&t))) {
            Ok(entries) => {
                st.entries = entries;
                st.broken = None;
            }
            Err(why) => {
                tracing::error!(
                    "{}: {why}; its decisions are ignored and omac will not overwrite it (fix the file or remove it)",
                    path.display()
                );
                st.entries.clear();
                st.broken = Some(why);
            }
        }
    }

    /// The learned decision for `host`, with the entry that gave it.
    pub fn lookup(&self, host: &str) -> Option<(Decision, String, EntryScope)> {
        self.refresh();
        let st = self.lock();
        decide(
            st.in_force()
                .map(|e| (e.host.as_str(), e.scope, e.decision)),
            host,
        )
    }

    /// Every entry currently in force.
    pub fn entries(&self) -> Vec<Entry> {
        self.refresh();
        self.lock().in_force().cloned().collect()
    }

    /// Records a permanent decision: upserts (host, scope) in the file under its lock.
    /// Fails, leaving the file as it is, when there is no file or it cannot be parsed.
    pub fn save(&self, host: &str, scope: EntryScope, decision: Decision) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Err(Error::Pages {
                path: PathBuf::from("(none)"),
                message: "this session has no profile file to learn into".into(),
                fix: "run with a profile whose user directory exists (HOME set)".into(),
            });
        };
        let host = omac_bundle::domain::normalize_host(host);
        let fail = |message: String, fix: &str| Error::Pages {
            path: path.clone(),
            message,
            fix: fix.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                fail(
                    format!("cannot create its directory: {e}"),
                    "check the permissions of the directory",
                )
            })?;
        let lock_path = path.with_file_name(format!(
            "{}.lock",
            path.file_name()
                .map_or("pages".into(), |n| n.to_string_lossy())
        ));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                fail(
                    format!("cannot open its lock {}: {e}", lock_path.display()),
                    "check the permissions of the directory",
                )
            })?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(fail(
                format!("cannot lock it: {}", std::io::Error::last_os_error()),
                "check the file system supports locks",
            ));
        }
        let text = read(path).map_err(|m| fail(m, "check the file's permissions"))?;
        let mut file = match &text {
            None => PagesFile {
                schema: SCHEMA,
                entries: Vec::new(),
                extra: BTreeMap::new(),
            },
            Some(t) => {
                let parsed: PagesFile = serde_json::from_str(t).map_err(|e| {
                    fail(
                        format!("not a valid pages file ({e}); left untouched"),
                        "repair or remove the file, then choose again",
                    )
                })?;
                if parsed.schema != SCHEMA {
                    return Err(fail(
                        format!("schema {} is not supported; left untouched", parsed.schema),
                        "use the omac version that wrote it, or remove the file",
                    ));
                }
                parsed
            }
        };
        let host_key = host.clone();
        match file
            .entries
            .iter_mut()
            .find(|e| e.host == host && e.scope == scope)
        {
            Some(e) => e.decision = decision,
            None => file.entries.push(Entry {
                host,
                scope,
                decision,
                extra: BTreeMap::new(),
            }),
        }
        let mut out = serde_json::to_vec_pretty(&file)
            .map_err(|e| fail(format!("cannot encode it: {e}"), "report this bug"))?;
        out.push(b'\n');
        let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777);
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map_or("pages".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(fail(
                format!("cannot write it: {e}"),
                "check the disk and the directory's permissions",
            ));
        }
        drop(lock);
        let mut st = self.lock();
        st.trusted.insert((host_key, scope));
        st.stamp = None;
        drop(st);
        self.refresh();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_suffixes_match_on_label_boundaries() {
        let e = [
            ("github.com", EntryScope::Suffix, Decision::Allow),
            ("gist.github.com", EntryScope::Host, Decision::Deny),
        ];
        assert_eq!(decide(e, "api.github.com").unwrap().0, Decision::Allow);
        assert_eq!(decide(e, "GitHub.com.").unwrap().0, Decision::Allow);
        assert_eq!(decide(e, "gist.github.com").unwrap().0, Decision::Deny);
        assert!(decide(e, "evilgithub.com").is_none());
        assert!(decide(e, "x.gist.github.com").unwrap().0 == Decision::Allow);
    }

    #[test]
    fn round_trip_upsert_and_unknown_fields_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.pages.json");
        fs::write(
            &path,
            r#"{"schema":1,"origin":"nono","entries":[{"host":"a.com","scope":"host","decision":"deny","note":"x"}]}"#,
        )
        .unwrap();
        let p = Pages::open(Some(path.clone()));
        assert_eq!(p.lookup("a.com").unwrap().0, Decision::Deny);
        p.save("A.com.", EntryScope::Host, Decision::Allow).unwrap();
        p.save("b.org", EntryScope::Suffix, Decision::Deny).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["origin"], "nono");
        assert_eq!(v["entries"][0]["note"], "x");
        assert_eq!(v["entries"][0]["decision"], "allow");
        assert_eq!(v["entries"][1]["host"], "b.org");
        assert_eq!(v["entries"][1]["scope"], "suffix");
        assert!(text.contains("\n  \"entries\""), "pretty-printed: {text}");
        assert_eq!(p.lookup("x.b.org").unwrap().0, Decision::Deny);
        assert_eq!(p.entries().len(), 2);
    }

    #[test]
    fn changes_made_by_others_during_a_session_can_narrow_but_not_widen() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.pages.json");
        fs::write(
            &path,
            r#"{"schema":1,"entries":[{"host":"old.com","scope":"host","decision":"allow"}]}"#,
        )
        .unwrap();
        let p = Pages::open(Some(path.clone()));
        assert_eq!(p.lookup("old.com").unwrap().0, Decision::Allow);
        // Someone else (the agent, if it can write there) adds an allow and a deny.
        fs::write(
            &path,
            r#"{"schema":1,"entries":[
                {"host":"old.com","scope":"host","decision":"allow"},
                {"host":"evil.com","scope":"suffix","decision":"allow"},
                {"host":"bad.com","scope":"host","decision":"deny"}]}"#,
        )
        .unwrap();
        assert!(
            p.lookup("x.evil.com").is_none(),
            "a foreign allow waits for the next session"
        );
        assert_eq!(p.lookup("bad.com").unwrap().0, Decision::Deny);
        assert_eq!(p.entries().len(), 2);
        // The session's own choices count at once; the next session sees everything.
        p.save("mine.com", EntryScope::Host, Decision::Allow)
            .unwrap();
        assert_eq!(p.lookup("mine.com").unwrap().0, Decision::Allow);
        let next = Pages::open(Some(path));
        assert_eq!(next.lookup("x.evil.com").unwrap().0, Decision::Allow);
    }

    #[test]
    fn broken_files_are_reported_and_left_untouched() {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("bad.pages.json", "{\"schema\":1,\"entries\":[{\"host\":"),
            ("v2.pages.json", "{\"schema\":2,\"entries\":[]}"),
        ] {
            let path = d.path().join(name);
            fs::write(&path, text).unwrap();
            let p = Pages::open(Some(path.clone()));
            assert!(p.broken().is_some());
            assert!(p.lookup("a.com").is_none());
            let e = p
                .save("a.com", EntryScope::Host, Decision::Allow)
                .unwrap_err();
            assert!(e.to_string().contains("left untouched"), "{e}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn a_missing_file_is_created_with_its_directory_and_concurrent_writers_are_merged() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("profiles/default.pages.json");
        let a = Pages::open(Some(path.clone()));
        let b = Pages::open(Some(path.clone()));
        a.save("one.com", EntryScope::Host, Decision::Allow)
            .unwrap();
        b.save("two.com", EntryScope::Host, Decision::Allow)
            .unwrap();
        // Both writes are in the file (each writer re-reads it under the lock)...
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("one.com") && text.contains("two.com"),
            "{text}"
        );
        // ...and the next session has both.
        assert_eq!(Pages::open(Some(path.clone())).entries().len(), 2);
        let no_file = Pages::open(None);
        assert!(no_file
            .save("x.com", EntryScope::Host, Decision::Allow)
            .is_err());
    }
}
