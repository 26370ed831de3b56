//! Running where user namespaces are unavailable. omac names the cause and the fix; a
//! bundle that requires namespaces (every built-in profile) is refused, and one that does
//! not runs with Landlock and seccomp only, with a warning saying what is weaker. Never
//! unsandboxed: the attacks below are refused in the fallback and proven unconfined.
//!
//! Two ways to take user namespaces away: a user namespace whose max_user_namespaces is 0,
//! and a seccomp filter refusing CLONE_NEWUSER (as Docker's default profile does).

#[path = "escape/harness.rs"]
mod harness;

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use harness::*;

const MAX_ZERO: &[&str] = &[
    "unshare",
    "-Ur",
    "--",
    "sh",
    "-c",
    "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
    "sh",
];

fn seccomp_wrapper() -> Vec<String> {
    vec![probe().display().to_string(), "deny-userns-exec".into()]
}

/// A profile like `base` that allows the fallback.
fn fallback_profile(env: &Env, base: &str) -> String {
    env.profile(
        &format!("fallback-{base}"),
        &format!(
            r#"{{"extends": "{base}", "enforcement": {{"require": ["landlock-fs", "seccomp"]}}}}"#
        ),
    )
}

/// Runs a bundle through `wrapper` both ways omac builds a sandbox (itself, and through a
/// re-executed stage); both must agree.
fn run_via(env: &Env, wrapper: &[&str], profile: &str, args: &[&str]) -> std::process::Output {
    let b = env.bundle_via(wrapper, profile, args);
    let run = |exec: bool| {
        let mut c = env.omac_via(wrapper);
        if exec {
            c.env("OMAC_STAGE_EXEC", "1");
        }
        c.arg("run").arg(&b).stdin(Stdio::null()).output().unwrap()
    };
    let (inline, staged) = (run(false), run(true));
    let verdict = |o: &std::process::Output| {
        let out = String::from_utf8_lossy(&o.stdout);
        (
            o.status.code(),
            out.contains("SAFE "),
            out.contains("BREACH"),
        )
    };
    assert_eq!(
        verdict(&inline),
        verdict(&staged),
        "{}\n{}",
        text(&inline),
        text(&staged)
    );
    inline
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bundle_requiring_namespaces_is_refused_with_the_cause_and_the_fix() {
    let env = Env::new();
    let o = run_via(&env, MAX_ZERO, "default", &["status", "seccomp"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("max_user_namespaces is 0"), "{e}");
    assert!(e.contains("fix:") && e.contains("sysctl"), "{e}");
    assert!(o.stdout.is_empty(), "the agent ran: {}", text(&o));
}

#[test]
fn docker_like_seccomp_is_named_as_the_cause() {
    let env = Env::new();
    let w = seccomp_wrapper();
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let o = run_via(&env, &w, "default", &["status", "seccomp"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("seccomp filter refuses to create user namespaces"),
        "{e}"
    );
    assert!(e.contains("seccomp=unconfined"), "{e}");
}

#[test]
fn the_fallback_runs_with_a_warning_that_says_what_is_weaker() {
    let env = Env::new();
    let profile = fallback_profile(&env, "strict");
    let o = run_via(&env, MAX_ZERO, &profile, &["status", "seccomp"]);
    assert_safe(&o);
    let e = stderr(&o);
    assert!(e.contains("user namespaces are unavailable"), "{e}");
    assert!(
        e.contains("weaker") && e.contains("no pid namespace") && e.contains("sockets are refused"),
        "{e}"
    );
    // The agent's code passes through.
    let o = run_via(&env, MAX_ZERO, &profile, &["nonexistent-attack"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn the_fallback_under_a_seccomp_filter() {
    let env = Env::new();
    let w = seccomp_wrapper();
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let profile = fallback_profile(&env, "strict");
    let secret = env.outside.join("secret.txt").display().to_string();
    let o = run_via(&env, &w, &profile, &["read", &secret, &env.secret]);
    assert_safe(&o);
    assert!(
        stderr(&o).contains("seccomp filter refuses"),
        "{}",
        text(&o)
    );
    assert_breach(&env.unconfined(&["read", &secret, &env.secret]));
}

#[test]
fn fallback_refuses_files_outside_the_grants() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    for f in [env.outside.join("secret.txt"), env.home.join(".ssh/id_rsa")] {
        let f = f.display().to_string();
        assert_safe(&run_via(
            &env,
            MAX_ZERO,
            &profile,
            &["read", &f, &env.secret],
        ));
        assert_breach(&env.unconfined(&["read", &f, &env.secret]));
    }
}

#[test]
fn fallback_refuses_writes_outside_the_grants() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    let target = env.outside.join("planted").display().to_string();
    assert_safe(&run_via(&env, MAX_ZERO, &profile, &["write", &target]));
    assert!(!env.outside.join("planted").exists());
    assert_breach(&env.unconfined(&["write", &target]));
}

#[test]
fn fallback_gives_a_private_temporary_directory_and_removes_it() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    // The agent writes into its $TMPDIR and reports the path.
    let b = env.bundle_via(MAX_ZERO, &profile, &[]);
    let cfg = std::fs::read_to_string(b.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["process"]["args"] =
        serde_json::json!(["/bin/sh", "-c", "touch \"$TMPDIR/x\" && echo \"$TMPDIR\""]);
    std::fs::write(b.join("config.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let o = env
        .omac_via(MAX_ZERO)
        .arg("run")
        .arg(&b)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tmp = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(tmp.starts_with("/tmp/omac-run-"), "{tmp}");
    assert!(
        !std::path::Path::new(&tmp).exists(),
        "{tmp} was left behind"
    );
}

#[test]
fn fallback_blocked_mode_refuses_ip_sockets() {
    let env = Env::new();
    let profile = fallback_profile(&env, "strict");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    assert_safe(&run_via(
        &env,
        MAX_ZERO,
        &profile,
        &["connect-tcp", "127.0.0.1", &port],
    ));
    assert!(l.accept().is_err());
    assert_breach(&env.unconfined(&["connect-tcp", "127.0.0.1", &port]));
}

#[test]
fn fallback_refuses_host_unix_sockets() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    let path = env.work.join("service.sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let p = path.display().to_string();
    // Even inside the workdir grant: no Unix socket reaches host services by path.
    assert_safe(&run_via(&env, MAX_ZERO, &profile, &["connect-unix", &p]));
    assert!(l.accept().is_err());
    assert_breach(&env.unconfined(&["connect-unix", &p]));
}

#[test]
fn fallback_refuses_signals_and_ptrace_to_host_processes() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    let target = Sleeper::start(&[("OMAC_ESCAPE_SECRET", &env.secret)]);
    let environ = format!("/proc/{}/environ", target.pid());
    for args in [
        vec!["kill", target.pid().as_str(), "0"],
        vec!["ptrace", target.pid().as_str()],
        vec!["read", environ.as_str(), env.secret.as_str()],
    ] {
        let inside = run_via(&env, MAX_ZERO, &profile, &args);
        assert_safe(&inside);
        assert_breach(&env.unconfined(&args));
    }
}

#[test]
fn fallback_keeps_the_syscall_filter() {
    let env = Env::new();
    let profile = fallback_profile(&env, "default");
    for args in [["userns"], ["io-uring"], ["x32"]] {
        assert_safe(&run_via(&env, MAX_ZERO, &profile, &args));
        assert_breach(&env.unconfined(&args));
    }
}

#[test]
fn fallback_leaves_nothing_running_when_omac_is_killed() {
    let env = Env::new();
    let dir = probe().parent().unwrap().display().to_string();
    let profile = env.profile(
        "fallback-die",
        &format!(
            r#"{{"extends": "default", "filesystem": {{"read": ["{dir}"]}}, "enforcement": {{"require": ["landlock-fs", "seccomp"]}}}}"#
        ),
    );
    let marker = format!("omac-fallback-die-{}", env.secret);
    // The agent tells where its private temporary directory is.
    let told = env.work.join("tmpdir.txt");
    let script = format!(
        "echo \"$TMPDIR\" > {told}; {p} sleep {marker} & {p} sleep {marker} & exec {p} sleep {marker}",
        told = told.display(),
        p = probe().display()
    );
    let b = env.bundle_via(MAX_ZERO, &profile, &[]);
    let cfg = std::fs::read_to_string(b.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    std::fs::write(b.join("config.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let count = || command_lines_with(&format!("sleep\u{0}{marker}")).len();
    /// Kills omac if the test fails half way, so that nothing it started lingers.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut omac = Killed(env.spawn_run(MAX_ZERO, &b));
    let wait = |want: &dyn Fn(usize) -> bool| {
        for _ in 0..250 {
            if want(count()) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    };
    assert!(
        wait(&|n| n == 3),
        "the agent and its children never started"
    );
    let tmp = std::fs::read_to_string(&told).unwrap().trim().to_string();
    // Control: the directory exists while the agent runs.
    assert!(
        tmp.starts_with("/tmp/omac-run-") && std::path::Path::new(&tmp).is_dir(),
        "{tmp}"
    );
    // SAFETY: killing our child.
    unsafe { libc::kill(omac.0.id() as i32, libc::SIGKILL) };
    let _ = omac.0.wait();
    assert!(wait(&|n| n == 0), "{} processes outlived omac", count());
    let gone = || !std::path::Path::new(&tmp).exists();
    for _ in 0..250 {
        if gone() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone(), "{tmp} outlived omac");
}
