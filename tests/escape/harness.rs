//! The escape suite's harness: a scratch host (home with secrets, workdir, places outside
//! every grant), the C probe compiled once per test process, bundles made with the real
//! `omac bundle create`, attacks run inside `omac run` and once unconfined.

#![allow(dead_code)] // shared by several test binaries, each using a part

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The omac binary under test.
pub const OMAC: &str = env!("CARGO_BIN_EXE_omac");

static PROBE: OnceLock<PathBuf> = OnceLock::new();
static PROBE_DIR: OnceLock<String> = OnceLock::new();

extern "C" fn remove_probe_dir() {
    if let Some(d) = PROBE_DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The probe binary, compiled on first use into a directory removed when the process exits.
pub fn probe() -> &'static Path {
    PROBE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("omac-escape-probe-")
            .tempdir()
            .expect("temp dir")
            .keep();
        PROBE_DIR.set(dir.display().to_string()).ok();
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_probe_dir) };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/escape/probe.c");
        let out = dir.join("probe");
        let st = Command::new("cc")
            .args(["-O1", "-o"])
            .arg(&out)
            .arg(src)
            .status()
            .expect("a C compiler (cc) is needed for the escape suite");
        assert!(st.success(), "compiling the probe failed");
        out
    })
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A scratch host for one attack.
pub struct Env {
    _dir: tempfile::TempDir,
    /// The scratch root (canonical).
    pub root: PathBuf,
    /// The fake `$HOME`, with secrets in the usual places.
    pub home: PathBuf,
    /// The work directory (granted read-write).
    pub work: PathBuf,
    /// A directory outside every grant, writable by the test user.
    pub outside: PathBuf,
    /// A unique secret planted everywhere a secret lives.
    pub secret: String,
}

impl Env {
    /// A fresh scratch host: `~/.ssh/id_rsa`, `~/.aws/credentials`, `work/.env`,
    /// `work/sub/.env` and `outside/secret.txt` hold the secret.
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("omac-escape-")
            .tempdir()
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let secret = format!(
            "OMAC-SECRET-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let home = root.join("home");
        let work = root.join("work");
        let outside = root.join("outside");
        for d in [
            &home,
            &work,
            &outside,
            &home.join(".ssh"),
            &home.join(".aws"),
            &work.join("sub"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            home.join(".ssh/id_rsa"),
            home.join(".aws/credentials"),
            work.join(".env"),
            work.join("sub/.env"),
            outside.join("secret.txt"),
        ] {
            std::fs::write(&f, format!("{secret}\n")).unwrap();
        }
        Env {
            _dir: dir,
            root,
            home,
            work,
            outside,
            secret,
        }
    }

    /// `omac` with a clean environment for this host (HOME is the fake home).
    pub fn omac(&self) -> Command {
        self.omac_via(&[])
    }

    /// `omac` started through `wrapper` (a command line that ends by running its
    /// arguments), with a clean environment for this host.
    pub fn omac_via(&self, wrapper: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(OMAC);
                c
            }
            None => Command::new(OMAC),
        };
        c.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .current_dir(&self.work);
        c
    }

    /// Writes a profile file extending `base` with `extra` JSON fields; returns its path.
    pub fn profile(&self, name: &str, json: &str) -> String {
        let p = self.root.join(format!("{name}.json"));
        std::fs::write(&p, json).unwrap();
        p.display().to_string()
    }

    /// Makes a bundle of `profile` running the probe with `args`.
    pub fn bundle(&self, profile: &str, args: &[&str]) -> PathBuf {
        self.bundle_via(&[], profile, args)
    }

    /// Makes a bundle with omac started through `wrapper`.
    pub fn bundle_via(&self, wrapper: &[&str], profile: &str, args: &[&str]) -> PathBuf {
        let out = self
            .root
            .join(format!("bundle-{}", SEQ.fetch_add(1, Ordering::SeqCst)));
        let o = self
            .omac_via(wrapper)
            .arg("--workdir")
            .arg(&self.work)
            .args(["bundle", "create", "--profile", profile, "--out"])
            .arg(&out)
            .arg("--")
            .arg(probe())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "bundle create failed: {}", text(&o));
        out
    }

    /// Runs `bundle` with `omac run`.
    pub fn run(&self, bundle: &Path) -> Output {
        self.omac()
            .arg("run")
            .arg(bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Starts `omac run` of `bundle` through `wrapper` (see [`Env::omac_via`]) with no
    /// input and its output discarded, for a test that stops or kills it.
    pub fn spawn_run(&self, wrapper: &[&str], bundle: &Path) -> std::process::Child {
        self.omac_via(wrapper)
            .arg("run")
            .arg(bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The attack inside `omac run` of a bundle of `profile`.
    pub fn confined(&self, profile: &str, args: &[&str]) -> Output {
        let b = self.bundle(profile, args);
        self.run(&b)
    }

    /// The attack run directly, as the test user.
    pub fn unconfined(&self, args: &[&str]) -> Output {
        Command::new(probe())
            .args(args)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The attack run unconfined in a new user namespace (with mount and network
    /// namespaces), where the test user holds the capabilities the sandbox drops.
    pub fn unconfined_userns(&self, args: &[&str]) -> Output {
        Command::new("unshare")
            .args(["-Urmn", "--"])
            .arg(probe())
            .args(args)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The command lines (arguments separated by NUL) of this machine's processes that contain
/// `needle`: what a sandbox left running.
pub fn command_lines_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains(needle))
        .collect()
}

/// stdout and stderr of `o`, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The probe ran and refused the attack.
#[track_caller]
pub fn assert_safe(o: &Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("SAFE ") && !out.contains("BREACH"),
        "the attack was not refused inside the sandbox:\n{}",
        text(o)
    );
}

/// The probe ran and the attack worked (the probe can see a breach).
#[track_caller]
pub fn assert_breach(o: &Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("BREACH"),
        "the unconfined run did not show the breach, so the probe proves nothing:\n{}",
        text(o)
    );
}

/// omac refused to start the sandbox with exit code 7 and a message containing `needle`.
#[track_caller]
pub fn assert_refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(7)
            && err.contains(needle)
            && !String::from_utf8_lossy(&o.stdout).contains("BREACH"),
        "omac should refuse to run (exit 7, {needle:?}):\n{}",
        text(o)
    );
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A host process that sleeps until dropped, with `env` in its environment.
pub struct Sleeper(pub std::process::Child);

impl Sleeper {
    /// Starts `sleep 60` with the extra variables `env`.
    pub fn start(env: &[(&str, &str)]) -> Sleeper {
        let mut c = Command::new("sleep");
        c.arg("60").stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        // spawn returns once exec has closed our pipe, which the kernel does before it
        // sets up the new image's environment: wait until /proc shows it, so that the
        // unconfined controls read a process that is fully there.
        let environ = format!("/proc/{}/environ", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read(&environ).map_or(true, |b| b.is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Sleeper(child)
    }

    /// Its pid, as text.
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
