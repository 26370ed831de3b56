//! Shared by the session tests: a private host (home with a fake `~/.ssh`, workdir, its own
//! runtime directory), the echo-rest example skill installed and registered in it, the
//! stand-in agent, and ways to look for what a session left behind.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "../keykit/mod.rs"]
mod keykit;

/// The omac binary under test.
pub const OMAC: &str = env!("CARGO_BIN_EXE_omac");
/// The repository.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A private host for one test.
pub struct Host {
    _tmp: tempfile::TempDir,
    /// Canonical root of everything below.
    pub root: PathBuf,
    /// `$HOME` (with `.ssh/id_rsa` holding [`Host::ssh_secret`]).
    pub home: PathBuf,
    /// The workdir (the stand-in agent is copied here).
    pub work: PathBuf,
    /// `$XDG_RUNTIME_DIR`: session directories appear under `omac/`.
    pub run: PathBuf,
    /// The fake private key's content.
    pub ssh_secret: String,
    /// Variables for every omac run.
    pub vars: Vec<(String, OsString)>,
}

impl Host {
    /// A fresh host; its keychain is the kernel keyring.
    pub fn new() -> Host {
        let tmp = tempfile::Builder::new()
            .prefix("omac-session-")
            .tempdir()
            .unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let ssh_secret = format!("SSH-PRIVATE-{}-{n}", std::process::id());
        let home = root.join("home");
        let work = root.join("work");
        let run = root.join("run");
        for d in [&home, &work, &run, &home.join(".ssh")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(home.join(".ssh/id_rsa"), format!("{ssh_secret}\n")).unwrap();
        std::fs::copy(
            Path::new(REPO).join("scripts/standin-agent.sh"),
            work.join("standin-agent.sh"),
        )
        .unwrap();
        Host {
            _tmp: tmp,
            root,
            home,
            work,
            run: run.clone(),
            ssh_secret,
            vars: vec![
                ("OMAC_KEYRING_BACKEND".into(), "keyutils".into()),
                ("XDG_RUNTIME_DIR".into(), run.into()),
            ],
        }
    }

    /// Sets a variable for every later omac run.
    pub fn var(&mut self, k: &str, v: impl Into<OsString>) -> &mut Self {
        self.vars.retain(|(x, _)| x != k);
        self.vars.push((k.to_string(), v.into()));
        self
    }

    /// omac with a clean environment for this host, in the workdir, stdin closed.
    pub fn omac(&self) -> Command {
        let mut c = Command::new(OMAC);
        c.current_dir(&self.work)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("PWD", &self.work)
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Runs `omac ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.omac().args(args).output().unwrap()
    }

    /// Copies the echo-rest example into `.agents/skills/echo-rest`; `edit` may change its
    /// omac.yaml. Returns the skill directory.
    pub fn install_echo(&self, edit: impl FnOnce(String) -> String) -> PathBuf {
        let dir = self.work.join(".agents/skills/echo-rest");
        copy_dir(&Path::new(REPO).join("skills/examples/echo-rest"), &dir);
        let y = dir.join("omac.yaml");
        let text = std::fs::read_to_string(&y).unwrap();
        std::fs::write(&y, edit(text)).unwrap();
        dir
    }

    /// Registers echo-rest non-interactively, its secret from `OMAC_SECRET_ECHO_API_KEY`
    /// (or none).
    pub fn register_echo(&self, secret: Option<&str>) {
        let mut c = self.omac();
        c.args(["register", "echo-rest"]);
        match secret {
            Some(s) => {
                c.env("OMAC_SECRET_ECHO_API_KEY", s);
            }
            None => {
                c.arg("--no-secrets");
            }
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "register: {}", text(&o));
    }

    /// Removes the secret a test stored: the kernel keyring keeps keys for days, and an
    /// unprivileged user may hold only 200 of them.
    fn forget_secrets(&self) {
        let _ = self
            .omac()
            .args(["secrets", "unset", "echo-rest", "ECHO_API_KEY"])
            .stdin(std::process::Stdio::null())
            .output();
    }

    /// A workdir profile `name` (JSON text) in `.omac/profiles`.
    pub fn profile(&self, name: &str, json: &str) {
        let d = self.work.join(".omac/profiles");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{name}.json")), json).unwrap();
    }

    /// The session directories under `$XDG_RUNTIME_DIR/omac`.
    pub fn session_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.run.join("omac")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Processes whose working directory or command line lies under this host's root
    /// (sidecars run from the layer store in `home`, keepers too), with their command lines.
    pub fn processes(&self) -> Vec<(i32, String)> {
        let root = self.root.display().to_string();
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let cwd = std::fs::read_link(e.path().join("cwd"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if cwd.starts_with(&root) || cmd.contains(&root) {
                out.push((pid, cmd));
            }
        }
        out
    }

    /// Waits (up to 10 s) until no process of this host is left; returns what is left.
    pub fn wait_no_processes(&self) -> Vec<(i32, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The audit log's events (default path).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        read_audit(&self.home.join(".local/state/omac/audit.jsonl"))
    }
}

/// Parses an audit log file (empty when missing).
pub fn read_audit(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
        .collect()
}

/// The stand-in agent's `key=value` report.
pub fn report(o: &Output) -> HashMap<String, String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Recursive copy keeping modes.
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

/// stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sha256:` and 12 hex digits of `s`'s sha256: the echo sidecar's fingerprint.
pub fn fingerprint(s: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    format!("sha256:{}", &String::from_utf8_lossy(&out.stdout)[..12])
}

/// A command running on a new pseudo-terminal (as the controlling terminal of a new
/// session), and the terminal's master side.
pub struct OnTerminal {
    /// The child.
    pub child: std::process::Child,
    /// The master: read what the terminal shows, write what the user types.
    pub master: std::fs::File,
}

impl OnTerminal {
    /// Starts `cmd` on a fresh terminal.
    pub fn spawn(mut cmd: Command) -> OnTerminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two descriptors.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        // SAFETY: descriptors just created.
        let (m, s) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                std::os::fd::OwnedFd::from_raw_fd(slave),
            )
        };
        cmd.stdin(Stdio::from(s.try_clone().unwrap()))
            .stdout(Stdio::from(s.try_clone().unwrap()))
            .stderr(Stdio::from(s.try_clone().unwrap()));
        // SAFETY: async-signal-safe calls only.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        drop(s);
        OnTerminal { child, master: m }
    }

    /// Reads until `needle` shows (or 20 s pass, or the terminal closes).
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.contains(needle) && Instant::now() < deadline {
            match self.master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    }

    /// Waits for the command; its exit code (`None` when killed by a signal).
    pub fn wait(mut self) -> (Option<i32>, String) {
        let rest = self.read_until("\u{0}");
        let st = self.child.wait().unwrap();
        (st.code(), rest)
    }
}

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// A free port on the host's loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP server on 127.0.0.1 answering every request with `body`; returns its port.
pub fn http_server(body: &'static str) -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.work.join(".agents/skills/echo-rest").exists() {
            self.forget_secrets();
        }
        // Any other key of this workdir (stored through another skill or path).
        keykit::forget(&keykit::workdir_scopes(&self.work), &[]);
        // The layer store is read-only (0555 directories): root removes it anyway, any
        // other user only once its directories are writable again.
        make_dirs_writable(&self.root);
    }
}

/// Gives the owner write permission on `dir` and every directory below it.
fn make_dirs_writable(dir: &Path) {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(m.permissions().mode() | 0o700),
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_dirs_writable(&e.path());
        }
    }
}
