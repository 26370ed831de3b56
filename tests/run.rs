//! `omac run` and `omac sandbox` as a user sees them: exit codes, arguments and pipes,
//! signals, the terminal, run-time sockets and the loopback bridges, refusals by name,
//! resource limits, plain OCI bundles, and nothing left behind.

#[path = "escape/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::*;

/// A bundle of `profile` running `argv` (any program, not the probe).
fn bundle_of(env: &Env, profile: &str, argv: &[&str]) -> std::path::PathBuf {
    let out = env
        .root
        .join(format!("b-{}", argv.join("-").len() + rand()));
    let o = env
        .omac()
        .arg("--workdir")
        .arg(&env.work)
        .args(["bundle", "create", "--profile", profile, "--out"])
        .arg(&out)
        .arg("--")
        .args(argv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    out
}

fn rand() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * 1000
}

fn run(env: &Env, b: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut c = env.omac();
    c.arg("run").arg(b);
    if !extra.is_empty() {
        c.arg("--").args(extra);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_agents_exit_code_passes_through() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", "exit 42"]);
    assert_eq!(run(&env, &b, &[]).status.code(), Some(42));
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", "kill -9 $$"]);
    assert_eq!(run(&env, &b, &[]).status.code(), Some(128 + 9));
}

#[test]
fn extra_arguments_and_pipes() {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &["/bin/sh", "-c", "cat; echo \"$@\"", "sh"],
    );
    let mut child = env
        .omac()
        .arg("run")
        .arg(&b)
        .args(["--", "one", "two"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "from stdin\none two\n");
}

#[test]
fn the_view_is_the_bundles() {
    let env = Env::new();
    std::fs::write(env.work.join("file.txt"), "work\n").unwrap();
    let b = bundle_of(
        &env,
        "default",
        &[
            "/bin/sh",
            "-c",
            "hostname; pwd; cat file.txt; ls /proc | grep -c '^[0-9]'; ls -A \"$HOME\" | grep -vx .cache | wc -l",
        ],
    );
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "omac");
    assert_eq!(lines[1], env.work.display().to_string());
    assert_eq!(lines[2], "work");
    // pid 1 (init), the shell, ls and grep: the host's processes are not there.
    assert!(lines[3].parse::<u32>().unwrap() <= 5, "{lines:?}");
    // Nothing but the mount point of the session's tool cache (~/.cache/omac/<scope>).
    assert_eq!(lines[4], "0", "the home is a fresh tmpfs");
}

/// The view's writable tmpfs mounts (/tmp and the home folded into the root's filesystem,
/// /dev/shm into /dev's: see runtime/src/fold.rs) as the agent finds them: their modes,
/// mounts of their own with their own flags, fresh, and nothing moves or links across them.
#[test]
fn the_views_tmpfs_mounts_are_fresh_and_their_own() {
    let env = Env::new();
    let script = r#"
        stat -c '%a %n' /tmp "$HOME" /dev/shm
        for m in /tmp "$HOME" /dev/shm; do
            awk -v m="$m" '$5 == m { print $5, $6 }' /proc/self/mountinfo
        done
        ls -A /dev/shm | wc -l
        echo x > /tmp/f && echo y > /dev/shm/f && mkdir "$HOME/d"
        ln /tmp/f /tmp/g && echo 'link within /tmp: made'
        ln /tmp/f "$HOME/f" 2>/dev/null || echo 'link /tmp -> home: refused'
        ln /dev/shm/f /tmp/h 2>/dev/null || echo 'link /dev/shm -> /tmp: refused'
        python3 -c '
import errno, os, sys
home = os.environ["HOME"]
for src, dst in [(home + "/d", "/tmp/d"), ("/tmp/f", home + "/f"), ("/dev/shm/f", "/tmp/s")]:
    try:
        os.rename(src, dst)
        print("rename", src, "moved")
    except OSError as e:
        print("rename", src, errno.errorcode[e.errno])
os.rename("/tmp/g", "/tmp/g2")
print("rename within /tmp: moved")
'
    "#;
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", script]);
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let home = env.home.display().to_string();
    let want = format!(
        "1777 /tmp\n700 {home}\n1777 /dev/shm\n\
         /tmp rw,nosuid,nodev,relatime\n{home} rw,nosuid,nodev,relatime\n\
         /dev/shm rw,nosuid,nodev,noexec,relatime\n0\n\
         link within /tmp: made\nlink /tmp -> home: refused\nlink /dev/shm -> /tmp: refused\n\
         rename {home}/d EXDEV\nrename /tmp/f EXDEV\nrename /dev/shm/f EXDEV\n\
         rename within /tmp: moved\n"
    );
    assert_eq!(stdout(&o), want, "{}", text(&o));
}

fn signal_reaches_the_agent(stage_exec: bool) {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    let mut c = env.omac();
    c.arg("run")
        .arg(&b)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if stage_exec {
        c.env("OMAC_STAGE_EXEC", "1");
    }
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: signalling our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(st.code(), Some(3));
}

#[test]
fn signals_sent_to_omac_reach_the_agent() {
    signal_reaches_the_agent(false);
}

#[test]
fn signals_reach_the_agent_through_the_re_executed_stage() {
    signal_reaches_the_agent(true);
}

/// A new pseudo-terminal: its master as a file, its slave as a descriptor.
fn openpty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors.
    assert_eq!(
        unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        },
        0
    );
    // SAFETY: descriptors just created, owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Runs `omac run bundle` on a new pseudo-terminal; `drive` writes to and reads from it.
fn on_terminal(
    env: &Env,
    bundle: &std::path::Path,
    drive: impl FnOnce(&mut std::fs::File) -> String,
) -> (String, Option<i32>) {
    use std::os::unix::process::CommandExt;
    let (mut m, s) = openpty();
    let mut c = env.omac();
    c.arg("run")
        .arg(bundle)
        .stdin(Stdio::from(s.try_clone().unwrap()))
        .stdout(Stdio::from(s.try_clone().unwrap()))
        .stderr(Stdio::from(s.try_clone().unwrap()));
    // SAFETY: async-signal-safe calls only.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    // The terminal must stay open only in omac, or reading the master never ends.
    drop(c);
    drop(s);
    let seen = drive(&mut m);
    let st = child.wait().unwrap();
    (seen, st.code())
}

fn read_until(m: &mut std::fs::File, needle: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) && std::time::Instant::now() < deadline {
        match m.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

#[test]
fn ctrl_c_on_the_terminal_behaves_as_without_omac() {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &[
            "/bin/sh",
            "-c",
            // The sleep starts before "ready", so a Ctrl-C right after it cannot land
            // between the shell's echo and its fork (the shell would then wait out the
            // sleep); the shell dies of SIGINT wherever it is, init ends the sleep.
            "sleep 30 >/dev/null & echo ready; wait; echo not-interrupted",
        ],
    );
    let (seen, code) = on_terminal(&env, &b, |m| {
        let mut s = read_until(m, "ready");
        m.write_all(b"\x03").unwrap();
        s.push_str(&read_until(m, "\u{0}"));
        s
    });
    assert!(!seen.contains("not-interrupted"), "{seen}");
    assert_eq!(code, Some(130), "{seen}");
}

#[test]
fn window_size_changes_reach_the_agent() {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &[
            "/bin/sh",
            "-c",
            "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done",
        ],
    );
    let (seen, code) = on_terminal(&env, &b, |m| {
        let mut s = read_until(m, "ready");
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: TIOCSWINSZ on the master with a valid winsize.
        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        s.push_str(&read_until(m, "33 101"));
        s
    });
    assert!(seen.contains("33 101"), "{seen}");
    assert_eq!(code, Some(0));
}

/// The agent starts with every signal at its default action: what omac's processes or
/// its parent ignore or catch (Rust ignores SIGPIPE; glibc's own signals 32 and 33 cannot
/// be reset through its wrappers) does not reach it, also when init skips its own reset
/// because the stage it was cloned from did it. Control: the probe sees signals ignored.
#[test]
fn the_agent_starts_with_default_signal_actions() {
    let env = Env::new();
    let sig_lines = |out: &[u8]| -> String {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|l| l.starts_with("SigIgn") || l.starts_with("SigCgt"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let b = bundle_of(&env, "default", &["/bin/cat", "/proc/self/status"]);
    // Started with SIGPIPE and glibc's signal 32 ignored (the system call: glibc's
    // wrappers refuse 32).
    let ignoring = |c: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only system calls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let ign: [libc::c_ulong; 4] = [libc::SIG_IGN as libc::c_ulong, 0, 0, 0];
                for s in [libc::SIGPIPE, 32] {
                    libc::syscall(libc::SYS_rt_sigaction, s, ign.as_ptr(), 0usize, 8usize);
                }
                Ok(())
            })
        };
    };
    let mut c = env.omac();
    ignoring(&mut c);
    let o = c.arg("run").arg(&b).stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        sig_lines(&o.stdout),
        "SigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n",
        "{}",
        text(&o)
    );
    let mut c = Command::new("/bin/cat");
    ignoring(&mut c);
    let control = c.arg("/proc/self/status").output().unwrap();
    assert_eq!(
        sig_lines(&control.stdout),
        "SigIgn:\t0000000080001000\nSigCgt:\t0000000000000000\n"
    );
}

/// omac started with its standard input closed: the agent gets /dev/null there, never one of
/// the pipes omac opens for its sandbox (the stage is forked before Rust's runtime start,
/// which would otherwise have filled the gap; see `src/early.rs`).
#[test]
fn a_closed_standard_stream_is_not_filled_with_a_pipe() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &["/bin/sh", "-c", "readlink /proc/self/fd/0"],
    );
    let mut c = env.omac();
    // SAFETY: only a system call between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::close(0);
            Ok(())
        })
    };
    let o = c.arg("run").arg(&b).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o).lines().next(), Some("/dev/null"), "{}", text(&o));
    // Control: the probe does name a pipe when standard input is one.
    let o = env
        .omac()
        .arg("run")
        .arg(&b)
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(stdout(&o).starts_with("pipe:["), "{}", text(&o));
}

#[test]
fn run_time_sockets_and_the_loopback_bridge() {
    let env = Env::new();
    let sock = env.outside.join("facade.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&[b"echo:".as_slice(), &buf].concat()).unwrap();
        }
    });
    let script = "import socket\n\
def get(s):\n    b = b''\n    while len(b) < 10:\n        b += s.recv(100)\n    return b.decode()\n\
s = socket.create_connection(('127.0.0.1', 29170)); s.sendall(b'hello'); print(get(s))\n\
u = socket.socket(socket.AF_UNIX); u.connect('/run/omac/facade.sock'); u.sendall(b'world'); print(get(u))\n";
    let b = bundle_of(&env, "default", &["/usr/bin/python3", "-c", script]);
    let o = env
        .omac()
        .arg("run")
        .arg("--socket")
        .arg(format!("facade.sock={}", sock.display()))
        .arg(&b)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(stdout(&o), "echo:hello\necho:world\n", "{}", text(&o));
}

fn edit_config(b: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = b.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Rewrites `omac.json` and the digest that `config.json` holds of it.
fn edit_ext(b: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = b.join("omac.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    let d = omac_bundle::render::digest(&bytes);
    edit_config(b, |c| {
        c["annotations"]["org.omac.extension.digest"] = serde_json::json!(d)
    });
}

#[test]
fn unsupported_settings_are_refused_by_name() {
    let env = Env::new();
    for (field, value, want) in [
        ("hooks", serde_json::json!({"prestart": []}), "hooks"),
        (
            "process.capabilities",
            serde_json::json!({"bounding": ["CAP_KILL"]}),
            "process.capabilities.bounding",
        ),
        (
            "linux.devices",
            serde_json::json!([{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}]),
            "linux.devices",
        ),
        (
            "linux.cgroupsPath",
            serde_json::json!("/mine"),
            "linux.cgroupsPath",
        ),
    ] {
        let b = bundle_of(&env, "default", &["/bin/true"]);
        edit_config(&b, |c| {
            let mut target = &mut *c;
            let parts: Vec<&str> = field.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                target = &mut target[*p];
            }
            target[parts[parts.len() - 1]] = value.clone();
        });
        let o = run(&env, &b, &[]);
        assert_eq!(o.status.code(), Some(3), "{field}: {}", text(&o));
        assert!(stderr(&o).contains(want), "{field}: {}", text(&o));
    }
    let b = bundle_of(&env, "default", &["/bin/true"]);
    edit_config(&b, |c| {
        c["mounts"][0]["options"] = serde_json::json!(["bind", "rshared"])
    });
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("rshared"), "{}", text(&o));
    let b = bundle_of(&env, "default", &["/bin/true"]);
    edit_ext(&b, |e| {
        e["landlock"]["fs"][0]["access"] = serde_json::json!(["read_everything"])
    });
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("read_everything"), "{}", text(&o));
}

#[test]
fn a_bundle_made_for_another_user_is_refused() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        // Root may map any id; the agent's own uid must still be mapped.
        edit_config(&b, |c| {
            c["process"]["user"]["uid"] = serde_json::json!(4242)
        });
        let o = run(&env, &b, &[]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(stderr(&o).contains("process.user.uid"), "{}", text(&o));
    } else {
        edit_config(&b, |c| {
            c["linux"]["uidMappings"][0]["hostID"] = serde_json::json!(uid + 1)
        });
        let o = run(&env, &b, &[]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            stderr(&o).contains("regenerate the bundle as this user"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn a_landlock_abi_above_the_kernels_is_refused_when_required() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    edit_ext(&b, |e| e["landlock"]["minAbi"] = serde_json::json!(99));
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(
        stderr(&o).contains("below the bundle's minimum 99"),
        "{}",
        text(&o)
    );
    // Not required: it runs, and says Landlock is partial.
    edit_ext(&b, |e| {
        e["landlock"]["required"] = serde_json::json!(false);
        e["enforcement"]["require"] = serde_json::json!(["namespaces", "seccomp"]);
    });
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("only partly enforced"), "{}", text(&o));
}

#[test]
fn resource_limits_without_a_delegated_cgroup() {
    let env = Env::new();
    let warn = env.profile(
        "limits",
        r#"{"extends": "default", "resources": {"memory": "512m", "pids": 100}}"#,
    );
    let b = bundle_of(&env, &warn, &["/bin/true"]);
    let o = run(&env, &b, &[]);
    if stderr(&o).contains("NOT enforced") {
        // This host has no delegated cgroup v2 with the memory and pids controllers.
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let req = env.profile(
            "limits-required",
            r#"{"extends": "default", "resources": {"memory": "512m"}, "enforcement": {"require": ["namespaces", "landlock-fs", "seccomp", "cgroups"]}}"#,
        );
        let b = bundle_of(&env, &req, &["/bin/true"]);
        let o = run(&env, &b, &[]);
        assert_eq!(o.status.code(), Some(7), "{}", text(&o));
        assert!(stderr(&o).contains("cgroup"), "{}", text(&o));
    } else {
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn a_plain_oci_bundle_with_its_own_root() {
    let env = Env::new();
    let b = env.root.join("plain");
    for d in ["rootfs/bin", "rootfs/proc", "rootfs/dev", "rootfs/tmp"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", b.join("rootfs/bin/busybox")).expect("busybox-static is needed");
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let config = serde_json::json!({
        "ociVersion": "1.1.0",
        "process": {
            "user": {"uid": uid, "gid": gid},
            "args": ["/bin/busybox", "sh", "-c", "echo plain $(/bin/busybox hostname); /bin/busybox ls /"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "plain",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
        ],
        "linux": {
            "namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid"}, {"type": "uts"}, {"type": "network"}],
            "uidMappings": [{"containerID": uid, "hostID": uid, "size": 1}],
            "gidMappings": [{"containerID": gid, "hostID": gid, "size": 1}]
        }
    });
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let before = listing(&b);
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "plain plain\nbin\ndev\nproc\ntmp\n");
    // config.json has no seccomp filter: the run says so.
    assert!(stderr(&o).contains("no seccomp filter"), "{}", text(&o));
    assert_eq!(listing(&b), before, "the bundle directory changed");
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let md = e.metadata().unwrap();
            out.push(format!("{} {:?}", e.path().display(), md.modified().ok()));
            if md.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// Lines of the host's mount table that mention `needle` or omac's own filesystems.
fn our_mounts(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle) || l.contains("omac-root") || l.contains("omac-mask"))
        .map(str::to_string)
        .collect()
}

#[test]
fn nothing_is_left_behind() {
    let env = Env::new();
    // A duration no other test uses marks the agent's background children.
    let nap = format!("30.{}{}", std::process::id(), rand());
    let script = format!("sleep {nap} & sleep {nap} & echo started");
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", &script]);
    let root = env.root.display().to_string();
    let mounts_before = our_mounts(&root);
    let bundle_before = listing(&b);
    let o = run(&env, &b, &[]);
    assert_eq!(stdout(&o), "started\n", "{}", text(&o));
    // The agent's background children died with it (pid namespace), no mount reached the
    // host (private mount namespace), and the bundle is as it was.
    assert_eq!(our_mounts(&root), mounts_before);
    assert_eq!(listing(&b), bundle_before);
    let leftover = command_lines_with(&nap);
    assert!(leftover.is_empty(), "processes outlived the sandbox");
}

/// What a run leaves to omac's parent: a process of the run that outlived omac would be
/// reparented to the nearest subreaper. Here that is a Python process that waits for omac
/// only and never reaps anything else, so such an orphan would stay its child (as a zombie
/// once it exits) and show in its `children` list. omac takes init over from its stage at
/// the end (the stage then exits early): omac must still wait for init.
#[test]
fn no_process_of_a_run_outlives_omac_not_even_as_a_zombie() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", "sleep 0.05 & exit 3"]);
    let script = r#"
import ctypes, os, subprocess, sys, time
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode
time.sleep(0.3)
kids = []
for t in os.listdir("/proc/self/task"):
    kids += open("/proc/self/task/%s/children" % t).read().split()
print(code, len(kids))
"#;
    for _ in 0..3 {
        let o = env
            .omac_via(&["python3", "-c", script])
            .arg("run")
            .arg(&b)
            .output()
            .unwrap();
        assert_eq!(
            stdout(&o),
            "3 0\n",
            "omac's exit code, then the processes of the run that outlived it\n{}",
            text(&o)
        );
    }
}

#[test]
fn verbose_reports_the_enforcement() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    let o = env
        .omac()
        .args(["--verbose", "run"])
        .arg(&b)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    for want in [
        "sandbox mode Namespaced",
        "namespaces       full",
        "landlock-fs      full",
        "seccomp          full",
    ] {
        assert!(e.contains(want), "{want:?} missing:\n{e}");
    }
}

#[test]
fn omac_sandbox_runs_a_command_and_removes_its_bundle() {
    let env = Env::new();
    let tmp = env.root.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = env
        .omac()
        .env("TMPDIR", &tmp)
        .args([
            "sandbox",
            "--profile",
            "strict",
            "--",
            "/bin/sh",
            "-c",
            "echo in-sandbox; hostname",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "in-sandbox\nomac\n", "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary bundle was left behind"
    );
}

#[test]
fn a_missing_command_fails_with_the_sandbox_code() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    edit_config(&b, |c| {
        c["process"]["args"] = serde_json::json!(["/no/such/program"])
    });
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(stderr(&o).contains("/no/such/program"), "{}", text(&o));
}

#[test]
fn stage_runs_only_under_omac() {
    let o = Command::new(OMAC).arg("__sandbox-stage").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ctrl_z_and_fg_in_an_interactive_shell() {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &[
            "/bin/sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.3; done; echo finished",
        ],
    );
    use std::os::unix::process::CommandExt;
    let (mut m, s) = openpty();
    let mut c = Command::new("bash");
    c.args(["--norc", "--noprofile", "-i"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &env.home)
        .env("PS1", "$ ")
        .env("TERM", "dumb")
        .current_dir(&env.work)
        .stdin(Stdio::from(s.try_clone().unwrap()))
        .stdout(Stdio::from(s.try_clone().unwrap()))
        .stderr(Stdio::from(s.try_clone().unwrap()));
    // SAFETY: async-signal-safe calls only.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut shell = c.spawn().unwrap();
    drop(c);
    drop(s);
    m.write_all(format!("{OMAC} run {}\n", b.display()).as_bytes())
        .unwrap();
    let seen = read_until(&mut m, "tick 2");
    assert!(seen.contains("tick 2"), "{seen}");
    m.write_all(b"\x1a").unwrap();
    let seen = read_until(&mut m, "Stopped");
    assert!(
        seen.contains("Stopped"),
        "Ctrl-Z did not stop the job: {seen}"
    );
    // Stopped for a while: no tick gets through.
    std::thread::sleep(Duration::from_millis(800));
    m.write_all(b"fg\n").unwrap();
    let seen = read_until(&mut m, "finished");
    assert!(
        seen.contains("finished"),
        "fg did not resume the agent: {seen}"
    );
    m.write_all(b"exit\n").unwrap();
    let _ = shell.wait();
}

#[test]
fn rlimits_apply_and_a_hard_limit_too_high_is_clamped_with_a_warning() {
    let env = Env::new();
    let b = bundle_of(
        &env,
        "default",
        &["/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"],
    );
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "8192\n8192\n", "{}", text(&o));
    // SAFETY: plain data filled by the kernel.
    let mut cur: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    if cur.rlim_max == libc::RLIM_INFINITY {
        // Nothing is above an unlimited hard limit: there is nothing to clamp here.
        return;
    }
    edit_config(&b, |c| {
        c["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": (cur.rlim_max as u64).saturating_add(1)}
        ])
    });
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("1024\n{}\n", cur.rlim_max),
        "{}",
        text(&o)
    );
    assert!(
        stderr(&o).contains("RLIMIT_NOFILE: the hard limit"),
        "{}",
        text(&o)
    );
}

/// `omac run` starts the sandbox's stage (and init, in its namespaces) ahead while the
/// session prepares; a bundle the runtime then refuses is still refused by name, with the
/// config exit code, and the waiting stage goes away with the run (the test would hang on
/// a stage kept waiting: it holds omac's stderr).
#[test]
fn a_bundle_refused_after_the_stage_started_ahead() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    let path = b.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["process"]["cwd"] = serde_json::json!("relative/dir");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("process.cwd"), "{}", text(&o));
    // The next run of a good bundle in the same place is unaffected.
    let good = bundle_of(&env, "default", &["/bin/sh", "-c", "exit 5"]);
    assert_eq!(run(&env, &good, &[]).status.code(), Some(5));
}

/// The stage starts before the bundle is read; a bundle that fails to load (here an
/// omac.json changed behind config.json's back) is refused as before, and the stage goes
/// away with the run (a stage kept waiting would hold omac's stderr: the test would hang).
#[test]
fn a_bundle_that_fails_to_load_after_the_stage_started() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    let path = b.join("omac.json");
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, json.replacen('{', "{ ", 1)).unwrap();
    let o = run(&env, &b, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stderr(&o).contains("digest"), "{}", text(&o));
}

/// Adds to bundle `b` a tmpfs whose mount point is missing in the work directory: init
/// makes it on the host, and it is removed after the run. Returns its host path.
fn with_a_mount_point_to_make(env: &Env, b: &std::path::Path) -> std::path::PathBuf {
    let mark = env.work.join("made-for-the-run");
    let cfg = b.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": mark, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]
    }));
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    mark
}

/// init mounts the bundle's view as soon as the stage started ahead has the plan's head,
/// creating a missing mount point in the work directory. A run called off after that
/// (here: a run-time socket that does not exist) removes that mount point, mounts nothing
/// on the host, and leaves no process behind.
#[test]
fn a_run_called_off_after_the_view_was_built_leaves_nothing() {
    let env = Env::new();
    // Control: during a run the mount point exists on the host (the test would see one
    // left behind), and it is removed after the run.
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", "sleep 30"]);
    let mark = with_a_mount_point_to_make(&env, &b);
    let mut child = env.spawn_run(&[], &b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !mark.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(mark.is_dir(), "the run made no mount point on the host");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(!mark.exists(), "the mount point outlived the run");

    let root = env.root.display().to_string();
    let mounts_before = our_mounts(&root);
    for _ in 0..5 {
        let o = env
            .omac()
            .arg("run")
            .arg("--socket")
            .arg(format!(
                "facade.sock={}",
                env.outside.join("missing.sock").display()
            ))
            .arg(&b)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        assert!(stderr(&o).contains("missing.sock"), "{}", text(&o));
        assert!(
            !mark.exists(),
            "a mount point was left in the work directory"
        );
        assert_eq!(our_mounts(&root), mounts_before);
        let left = command_lines_with(&b.display().to_string());
        assert!(left.is_empty(), "processes outlived the run: {left:?}");
    }
}

/// A control directory of omac's (`dir`, missing) is covered read-only in a sandbox of
/// `profile`. omac makes it before the run, and it stays: a mount point made and removed
/// per run would let one run's removal take another's cover away.
fn control_dir_is_made_once_and_covered(env: &Env, profile: &str, dir: &std::path::Path) {
    assert!(!dir.exists());
    let plant = format!(
        "mkdir {}/profiles 2>/dev/null || echo covered",
        dir.display()
    );
    let b = bundle_of(env, profile, &["/bin/sh", "-c", &plant]);
    for _ in 0..2 {
        let o = run(env, &b, &[]);
        assert_eq!(stdout(&o), "covered\n", "{}", text(&o));
        assert!(dir.is_dir(), "omac made no {}", dir.display());
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    }
    // Control: the same command without the sandbox creates the directory.
    let o = Command::new("/bin/sh")
        .args(["-c", &plant])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "", "{}", text(&o));
    assert!(dir.join("profiles").is_dir());
}

#[test]
fn the_workdirs_control_directory_is_made_once_and_covered() {
    let env = Env::new();
    control_dir_is_made_once_and_covered(&env, "default", &env.work.join(".omac"));
}

#[test]
fn the_users_control_directory_in_a_writable_home_is_made_once_and_covered() {
    let env = Env::new();
    let profile = env.profile(
        "home-rw",
        &format!(
            r#"{{"extends": "default", "filesystem": {{"allow": ["{}"]}}}}"#,
            env.home.display()
        ),
    );
    control_dir_is_made_once_and_covered(&env, &profile, &env.home.join(".config/omac"));
}

/// omac returns as soon as the agent's status is in, while its stage removes what the run
/// left on the host and waits for init's own exit; omac waits for the stage before it
/// exits. Run under a subreaper, a stage or an init left behind would become the
/// subreaper's child.
#[test]
fn omac_reaps_its_stage_before_it_exits() {
    let env = Env::new();
    let b = bundle_of(&env, "default", &["/bin/true"]);
    let script = r#"
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
def orphans():
    time.sleep(0.2)
    names = []
    for t in os.listdir("/proc/self/task"):
        for pid in open(f"/proc/self/task/{t}/children").read().split():
            names.append(open(f"/proc/{pid}/comm").read().strip())
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return names
subprocess.run(["sh", "-c", "sleep 0.1 &"], check=True)
print("control", *orphans())
for _ in range(3):
    r = subprocess.run(sys.argv[1:])
    assert r.returncode == 0
    print("omac", *orphans())
"#;
    let o = env
        .omac_via(&["python3", "-c", script])
        .arg("run")
        .arg(&b)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{}", text(&o));
    // Control: an orphan does become the subreaper's child.
    assert!(out.starts_with("control sleep\n"), "{out}");
    assert!(
        !out.contains("omac-"),
        "a process of the run outlived omac: {out}"
    );
}

/// On a host with a merged /usr (`/bin -> usr/bin`), the view's /bin, /lib, /lib64 and /sbin
/// are the same links into its read-only /usr, not binds of their own; a bundle that puts
/// something below one of them gets the bind.
#[test]
fn merged_usr_links_stay_links_into_the_read_only_usr() {
    let host = std::fs::read_link("/bin").ok();
    if host.as_deref() != Some(std::path::Path::new("usr/bin")) {
        eprintln!("skipped: this host has no merged /usr (/bin is {host:?})");
        return;
    }
    let env = Env::new();
    let probe = "readlink /bin; ls /bin/sh; touch /bin/x 2>/dev/null || echo read-only; \
                 grep -c ' /bin ' /proc/self/mountinfo";
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", probe]);
    let o = run(&env, &b, &[]);
    assert_eq!(
        stdout(&o),
        "usr/bin\n/bin/sh\nread-only\n0\n",
        "{}",
        text(&o)
    );
    // Control: with a mask below /bin, /bin is a bind (the mask needs a mount to sit on).
    let cfg = b.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("/bin/su"));
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = run(&env, &b, &[]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.starts_with("/bin/sh\nread-only\n"), "{}", text(&o));
    assert_ne!(out.lines().last(), Some("0"), "{}", text(&o));
}

/// omac killed with SIGKILL cannot clean up: its stage, which outlives it for that, kills
/// the sandbox and removes the mount point init created in the work directory.
#[test]
fn killing_omac_leaves_no_mount_point_on_the_host() {
    let env = Env::new();
    let nap = format!("31.{}{}", std::process::id(), rand());
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", &format!("sleep {nap}")]);
    let mark = with_a_mount_point_to_make(&env, &b);
    let mut child = env.spawn_run(&[], &b);
    let wait_until = |cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    };
    // Control: the run made the mount point (a test that never saw it could not see it
    // left behind).
    assert!(
        wait_until(&|| mark.is_dir() && !command_lines_with(&nap).is_empty()),
        "the run made no mount point on the host, or the agent never started"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(
        wait_until(&|| command_lines_with(&nap).is_empty()),
        "the agent outlived omac"
    );
    assert!(
        wait_until(&|| !mark.exists()),
        "the mount point outlived omac"
    );
}

/// Masks and read-only paths are applied after every mount, the run's own ones (its
/// sockets under /run/omac) included: a bundle that masks a run-time socket hides it.
#[test]
fn a_mask_over_a_run_time_socket_hides_it() {
    let env = Env::new();
    let sock = env.outside.join("facade.sock");
    let _l = UnixListener::bind(&sock).unwrap();
    let probe = "if [ -S /run/omac/facade.sock ]; then echo visible; else echo hidden; fi";
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", probe]);
    let run_with_socket = |b: &std::path::Path| {
        env.omac()
            .arg("run")
            .arg("--socket")
            .arg(format!("facade.sock={}", sock.display()))
            .arg(b)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // Control: unmasked, the agent sees the socket.
    let o = run_with_socket(&b);
    assert_eq!(stdout(&o), "visible\n", "{}", text(&o));
    edit_config(&b, |c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("/run/omac/facade.sock"))
    });
    let o = run_with_socket(&b);
    assert_eq!(stdout(&o), "hidden\n", "{}", text(&o));
}

/// `Cpus_allowed_list` of a /proc status file.
fn cpus_of(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The CPUs each thread of `pid` may use (empty once it is gone).
fn thread_cpus(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| cpus_of(&s))
        .collect()
}

/// Runs a bundle whose agent prints its CPUs and waits for a line, with omac restricted to
/// `only` CPU (None: the CPUs this test has). Returns what the agent printed and what omac's
/// threads were allowed once it did (waiting up to 2 s for omac to widen them again).
fn cpus_seen(
    env: &Env,
    b: &std::path::Path,
    only: Option<usize>,
    want: &str,
) -> (String, Vec<String>) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut c = env.omac();
    c.arg("run")
        .arg(b)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(cpu) = only {
        // SAFETY: the hook only calls sched_setaffinity (async-signal-safe).
        unsafe {
            c.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut omac = thread_cpus(pid);
    while omac.iter().any(|c| c != want) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        omac = thread_cpus(pid);
    }
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(child.wait().unwrap().success());
    (line.trim().to_string(), omac)
}

#[test]
fn the_agent_and_omac_keep_the_cpus_omac_was_given() {
    // omac builds the sandbox on a CPU of its own while it prepares the session on another
    // (see runtime/src/cpus.rs); the agent, and omac's threads once the agent runs, get
    // back every CPU omac was given.
    let env = Env::new();
    let probe = "grep Cpus_allowed_list /proc/self/status; read x";
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", probe]);
    let mine = cpus_of(&std::fs::read_to_string("/proc/self/status").unwrap());
    let (agent, omac) = cpus_seen(&env, &b, None, &mine);
    assert_eq!(cpus_of(&agent), mine, "the agent's CPUs: {agent}");
    assert!(!omac.is_empty(), "omac's threads were read");
    assert!(
        omac.iter().all(|c| *c == mine),
        "omac's threads: {omac:?}, want {mine}"
    );
    // Control: the probe reports a restriction that is really there.
    let (agent, omac) = cpus_seen(&env, &b, Some(0), "0");
    assert_eq!(cpus_of(&agent), "0", "{agent}");
    assert!(omac.iter().all(|c| c == "0"), "{omac:?}");
}

/// The stage clones init ahead into the namespaces omac's bundles ask for (see
/// runtime/src/ahead.rs). A bundle that asks for others gets exactly those: here it
/// shares the host's ipc namespace, and init cloned ahead (in a new one) is replaced;
/// control: the default bundle gets a new ipc namespace. No process is left either way.
#[test]
fn a_bundle_with_other_namespaces_than_init_cloned_ahead_gets_its_own() {
    let env = Env::new();
    let host = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let host = host.to_string_lossy().into_owned();
    let b = bundle_of(&env, "default", &["/bin/readlink", "/proc/self/ns/ipc"]);
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let own = stdout(&o).trim().to_string();
    assert!(own.starts_with("ipc:["), "{}", text(&o));
    assert_ne!(
        own, host,
        "control: the default bundle has its own ipc namespace"
    );
    edit_config(&b, |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "ipc")
    });
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), host, "{}", text(&o));
    let left = command_lines_with(&b.display().to_string());
    assert!(left.is_empty(), "left running: {left:?}");
}

/// `omac run` forks a holder at its entry point that makes the sandbox's user, network,
/// mount, ipc, uts and cgroup namespaces while omac starts (runtime/src/holder.rs); init
/// joins them. The sandbox is the same: its own namespaces (not the host's), `lo` up, and
/// afterwards no process of the run, the holder included (a fork of omac: its command line
/// is omac's). Control: with the stage re-executed (`OMAC_STAGE_EXEC`) no holder is
/// forked and the report does not claim one.
#[test]
fn the_namespaces_made_while_omac_starts_are_the_sandboxs() {
    let env = Env::new();
    let script = "readlink /proc/self/ns/user /proc/self/ns/net /proc/self/ns/mnt \
        /proc/self/ns/ipc /proc/self/ns/uts /proc/self/ns/pid; \
        python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); \
        s.listen(); socket.create_connection(s.getsockname()); print(\"lo up\")'";
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", script]);
    let host: Vec<String> = ["user", "net", "mnt", "ipc", "uts", "pid"]
        .iter()
        .map(|n| {
            let l = std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
            l.to_string_lossy().into_owned()
        })
        .collect();
    let verbose_run = |stage_exec: bool| {
        let mut c = env.omac();
        c.args(["run", "--verbose"]).arg(&b).stdin(Stdio::null());
        if stage_exec {
            c.env("OMAC_STAGE_EXEC", "1");
        }
        c.output().unwrap()
    };
    let o = verbose_run(false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stderr(&o).contains("init cloned ahead (namespaces made while omac started)"),
        "the holder's namespaces were not taken:\n{}",
        text(&o)
    );
    let out = stdout(&o);
    let seen: Vec<&str> = out.lines().collect();
    assert_eq!(seen.len(), 7, "{}", text(&o));
    for (inside, outside) in seen.iter().zip(&host) {
        assert_ne!(inside, outside, "shared with the host: {}", text(&o));
    }
    assert_eq!(seen[6], "lo up", "{}", text(&o));
    let left = command_lines_with(&b.display().to_string());
    assert!(left.is_empty(), "left running: {left:?}");
    // Control: the same run without a holder says nothing of one.
    let o = verbose_run(true);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !stderr(&o).contains("made while omac started"),
        "{}",
        text(&o)
    );
    assert_eq!(stdout(&o).lines().last(), Some("lo up"), "{}", text(&o));
}

/// The bundle's `oomScoreAdj` reaches the agent, as root and as an unprivileged user (the
/// agent, not dumpable, could not write its own as such; init sets it first and the agent
/// inherits it). Both the agent's value and init's (pid 1, which the agent reads) are
/// checked against omac's own, which the run must not keep.
#[test]
fn the_bundles_oom_score_adj_reaches_the_agent() {
    let env = Env::new();
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let wanted = if own == 500 { 600 } else { 500 };
    let script = "cat /proc/self/oom_score_adj /proc/1/oom_score_adj";
    let b = bundle_of(&env, "default", &["/bin/sh", "-c", script]);
    edit_config(&b, |c| {
        c["process"]["oomScoreAdj"] = serde_json::json!(wanted)
    });
    let o = run(&env, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let seen: Vec<i32> = stdout(&o)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen, [wanted, wanted], "{}", text(&o));
    assert_ne!(own, wanted);
}
