//! Processes: init and omac out of reach, host processes invisible, the terminal, the
//! keyring, inherited descriptors and environment, privileges, dying with omac.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn ptrace_init() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["ptrace", "1"]));
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["ptrace", &target.pid()]));
}

#[test]
fn ptrace_omac() {
    let env = Env::new();
    let bundle = env.bundle("default", &["sleep"]);
    let mut omac = env
        .omac()
        .arg("run")
        .arg(&bundle)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = omac.id().to_string();
    // The agent tries omac's host pid from a second sandbox.
    let o = env.confined("default", &["ptrace", &pid]);
    let _ = omac.kill();
    let _ = omac.wait();
    assert_safe(&o);
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["ptrace", &target.pid()]));
}

#[test]
fn read_init_memory() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["open", "/proc/1/mem"]));
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["open", &format!("/proc/{}/mem", target.pid())]));
}

#[test]
fn process_vm_readv_init() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["vmread", "1"]));
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["vmread", &target.pid()]));
}

#[test]
fn read_init_maps() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["read", "/proc/1/maps", "r"]));
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["read", &format!("/proc/{}/maps", target.pid()), "r"]));
}

#[test]
fn kill_init() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["kill", "1", "9"]));
    let target = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["kill", &target.pid(), "9"]));
}

#[test]
fn signal_a_host_process() {
    let env = Env::new();
    let target = Sleeper::start(&[]);
    assert_safe(&env.confined("default", &["kill", &target.pid(), "0"]));
    assert_breach(&env.unconfined(&["kill", &target.pid(), "0"]));
}

#[test]
fn host_processes_are_invisible() {
    let env = Env::new();
    let target = Sleeper::start(&[]);
    assert_safe(&env.confined("default", &["procs", &target.pid()]));
    assert_breach(&env.unconfined(&["procs", &target.pid()]));
}

#[test]
fn ptrace_in_the_strict_profile() {
    let env = Env::new();
    assert_safe(&env.confined("strict", &["traceme"]));
    assert_breach(&env.unconfined(&["traceme"]));
}

/// A pseudo-terminal whose slave becomes the controlling terminal of the spawned command
/// (stdin); stdout and stderr stay pipes so the verdict can be read.
fn with_terminal(mut cmd: Command) -> (std::process::Output, Vec<u8>) {
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
    // SAFETY: descriptors just created.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    // Whatever reached the terminal's input queue is echoed on the master side.
    // SAFETY: plain fcntl and read on descriptors we own.
    let mut echoed = Vec::new();
    unsafe {
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            echoed.extend_from_slice(&buf[..n as usize]);
        }
    }
    drop(slave);
    (out, echoed)
}

fn tiocsti(target: &str) {
    let env = Env::new();
    let bundle = env.bundle("default", &["tiocsti", target, "echo INJECTED\n"]);
    let mut c = env.omac();
    c.arg("run").arg(&bundle);
    let (o, echoed) = with_terminal(c);
    assert_safe(&o);
    assert!(
        !String::from_utf8_lossy(&echoed).contains("INJECTED"),
        "characters reached the launching terminal"
    );
    let mut c = Command::new(probe());
    c.args(["tiocsti", target, "echo INJECTED\n"]);
    let (o, echoed) = with_terminal(c);
    assert_breach(&o);
    assert!(String::from_utf8_lossy(&echoed).contains("INJECTED"));
}

#[test]
fn tiocsti_into_the_launching_terminal() {
    tiocsti("stdin");
}

#[test]
fn tiocsti_through_dev_tty() {
    tiocsti("/dev/tty");
}

fn keyring(
    inner: &[&str],
    desc: &str,
    env: &Env,
    bundle: Option<&std::path::Path>,
) -> std::process::Output {
    let mut c = Command::new(probe());
    c.args(["keyring-exec", desc, &env.secret]);
    match bundle {
        Some(b) => {
            c.arg(OMAC).arg("run").arg(b);
            c.env_clear()
                .env("HOME", &env.home)
                .env("PATH", "/usr/bin:/bin");
        }
        None => {
            c.arg(probe()).args(inner);
        }
    }
    c.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn keyctl_reads_the_host_session_keyring() {
    let env = Env::new();
    let desc = format!("omac-escape-{}", std::process::id());
    let args = ["keyring-read", desc.as_str(), env.secret.as_str()];
    let bundle = env.bundle("default", &args);
    assert_safe(&keyring(&args, &desc, &env, Some(&bundle)));
    assert_breach(&keyring(&args, &desc, &env, None));
}

#[test]
fn proc_keys_lists_the_host_keys() {
    let env = Env::new();
    let desc = format!("omac-escape-keys-{}", std::process::id());
    let args = ["read", "/proc/keys", desc.as_str()];
    let bundle = env.bundle("default", &args);
    assert_safe(&keyring(&args, &desc, &env, Some(&bundle)));
    assert_breach(&keyring(&args, &desc, &env, None));
}

#[test]
fn leaked_descriptors() {
    let env = Env::new();
    let secret =
        std::ffi::CString::new(env.outside.join("secret.txt").display().to_string()).unwrap();
    let leak = move |c: &mut Command| {
        let s = secret.clone();
        // SAFETY: open is async-signal-safe; the descriptor is left open on purpose.
        unsafe {
            c.pre_exec(move || {
                libc::open(s.as_ptr(), libc::O_RDONLY);
                Ok(())
            });
        }
    };
    let bundle = env.bundle("default", &["fds"]);
    let mut c = env.omac();
    c.arg("run").arg(&bundle).stdin(Stdio::null());
    leak(&mut c);
    assert_safe(&c.output().unwrap());
    let mut c = Command::new(probe());
    c.arg("fds").stdin(Stdio::null());
    leak(&mut c);
    assert_breach(&c.output().unwrap());
}

#[test]
fn environment_secrets() {
    let env = Env::new();
    let bundle = env.bundle("default", &["env", &env.secret]);
    let o = env
        .omac()
        .arg("run")
        .arg(&bundle)
        .env("AWS_SECRET_ACCESS_KEY", &env.secret)
        .env("GITHUB_TOKEN", &env.secret)
        .env("ANTHROPIC_API_KEY", &env.secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_safe(&o);
    let o = Command::new(probe())
        .args(["env", &env.secret])
        .env("GITHUB_TOKEN", &env.secret)
        .output()
        .unwrap();
    assert_breach(&o);
}

#[test]
fn code_injection_variables_are_not_passed() {
    let env = Env::new();
    let value = format!("/tmp/{}.so", env.secret);
    let bundle = env.bundle("default", &["env", &env.secret]);
    let o = env
        .omac()
        .arg("run")
        .arg(&bundle)
        .env("LD_PRELOAD", &value)
        .env("BASH_ENV", &value)
        .env("NODE_OPTIONS", format!("--require {value}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_safe(&o);
    let o = Command::new(probe())
        .args(["env", &env.secret])
        .env("BASH_ENV", &value)
        .output()
        .unwrap();
    assert_breach(&o);
}

#[test]
fn setuid_binaries_do_not_elevate() {
    let env = Env::new();
    let (profile, target) = if is_root() {
        // A set-user-id copy owned by another user: running it changes the effective uid.
        let dir = env.root.join("suid");
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("sleep");
        std::fs::copy("/bin/sleep", &t).unwrap();
        std::os::unix::fs::chown(&t, Some(1001), Some(1001)).unwrap();
        std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        let profile = env.profile(
            "suid",
            &format!(
                r#"{{"extends": "default", "filesystem": {{"read": ["{}"]}}}}"#,
                dir.display()
            ),
        );
        (profile, t.display().to_string())
    } else {
        ("default".to_string(), "/usr/bin/passwd".to_string())
    };
    // `sleep 5` for the copy; passwd waits for the current password on its stdin.
    let args: Vec<&str> = if is_root() {
        vec!["setuid", &target, "5"]
    } else {
        vec!["setuid", &target]
    };
    assert_safe(&env.confined(&profile, &args));
    assert_breach(&env.unconfined(&args));
}

#[test]
fn capabilities_are_empty() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["status", "caps"]));
    assert_breach(&env.unconfined(&["status", "caps"]));
}

#[test]
fn no_new_privs_is_set() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["status", "nnp"]));
    assert_breach(&env.unconfined(&["status", "nnp"]));
}

#[test]
fn seccomp_filter_is_installed() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["status", "seccomp"]));
    assert_breach(&env.unconfined(&["status", "seccomp"]));
}

/// Pids of host processes running `probe sleep <marker>` (the arguments, NUL-separated:
/// a shell whose script merely mentions the marker does not count).
fn pids_with(marker: &str) -> Vec<i32> {
    let marker = format!("sleep\u{0}{marker}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c).contains(&marker) {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_sandbox_dies_with_omac() {
    let env = Env::new();
    // Both ways omac builds a sandbox: itself, and through a re-executed stage.
    for staged in [false, true] {
        let marker = format!("omac-die-{staged}-{}", env.secret);
        let bundle = env.bundle("default", &["sleep", &marker]);
        let mut c = env.omac();
        if staged {
            c.env("OMAC_STAGE_EXEC", "1");
        }
        let mut omac = c
            .arg("run")
            .arg(&bundle)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(|| !pids_with(&marker).is_empty()),
            "the agent never started"
        );
        // SAFETY: killing our child.
        unsafe { libc::kill(omac.id() as i32, libc::SIGKILL) };
        let _ = omac.wait();
        assert!(
            wait_until(|| pids_with(&marker).is_empty()),
            "the agent outlived omac: {:?}",
            pids_with(&marker)
        );
    }
    // Unconfined, an orphan outlives its parent: the check would notice.
    let marker2 = format!("omac-orphan-{}", env.secret);
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} sleep {marker2} & exec sleep 60",
            probe().display()
        ))
        .spawn()
        .unwrap();
    assert!(wait_until(|| !pids_with(&marker2).is_empty()));
    let _ = sh.kill();
    let _ = sh.wait();
    std::thread::sleep(Duration::from_millis(200));
    let left = pids_with(&marker2);
    for p in &left {
        // SAFETY: killing the orphan this test made.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    assert!(!left.is_empty(), "the orphan check cannot see orphans");
}
