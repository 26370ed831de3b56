//! Shared by the skill and secret CLI tests: a private home, workdir and data dir per test,
//! and the omac binary run in them with a clean environment.

#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "../keykit/mod.rs"]
mod keykit;

/// The built omac binary.
pub const OMAC: &str = env!("CARGO_BIN_EXE_omac");

/// The skill fixture of the omac-skills crate.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("skills/tests/fixtures/echo-skill")
}

/// A fresh world: `home/`, `work/` and the env omac runs with.
pub struct World {
    /// Keeps the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// `$HOME`.
    pub home: PathBuf,
    /// The workdir.
    pub work: PathBuf,
    /// Extra variables.
    pub vars: Vec<(String, OsString)>,
    /// The skills made here, whose keys go when the world does.
    skills: std::cell::RefCell<Vec<String>>,
}

impl Drop for World {
    fn drop(&mut self) {
        keykit::forget(&keykit::workdir_scopes(&self.work), &self.skills.borrow());
    }
}

/// A name unique to this test run (keychain items are shared by the user's processes).
pub fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{t:x}", std::process::id())
}

impl World {
    /// A world whose keychain is the kernel keyring (no Secret Service needed).
    pub fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        // World-traversable, so a test can also run as another user if it needs to.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = tmp.path().join("home");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        World {
            tmp,
            home,
            work,
            vars: vec![("OMAC_KEYRING_BACKEND".into(), "keyutils".into())],
            skills: Default::default(),
        }
    }

    /// Sets a variable for every later omac run.
    pub fn var(&mut self, k: &str, v: impl Into<OsString>) -> &mut Self {
        self.vars.retain(|(x, _)| x != k);
        self.vars.push((k.to_string(), v.into()));
        self
    }

    /// Removes a variable.
    pub fn unvar(&mut self, k: &str) -> &mut Self {
        self.vars.retain(|(x, _)| x != k);
        self
    }

    /// Copies the fixture as skill `name` into `<base>/skills/` (relative to the workdir or
    /// absolute) and fixes its names; returns its directory.
    pub fn skill_at(&self, root: &Path, name: &str) -> PathBuf {
        self.skills.borrow_mut().push(name.to_string());
        let dir = root.join(name);
        copy_dir(&fixture(), &dir);
        for f in ["omac.yaml", "SKILL.md"] {
            let p = dir.join(f);
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("echo-skill", name);
            std::fs::write(&p, text).unwrap();
        }
        dir
    }

    /// A workdir skill under `.opencode/skills`.
    pub fn skill(&self, name: &str) -> PathBuf {
        self.skill_at(&self.work.join(".opencode/skills"), name)
    }

    /// The command, not yet run: clean env, cwd = workdir, stdin = /dev/null.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(OMAC);
        c.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("HOME", &self.home)
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .env("PWD", &self.work)
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Runs omac and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs omac with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The workdir registry, parsed.
    pub fn registry(&self) -> serde_json::Value {
        let p = self.work.join(".opencode/sidecar.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }
}

/// Recursive copy keeping executable bits.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// stdout + stderr as text, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts the exit code, printing the output when it differs.
pub fn expect(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
}

/// Every file under `root` whose bytes contain `needle` (symlinks not followed).
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(m) = std::fs::symlink_metadata(root) else {
        return out;
    };
    if m.is_dir() {
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                out.extend(files_containing(&e.path(), needle));
            }
        }
    } else if m.is_file() {
        if let Ok(b) = std::fs::read(root) {
            if b.windows(needle.len()).any(|w| w == needle) {
                out.push(root.to_path_buf());
            }
        }
    }
    out
}

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}
