//! Secrets with real backends: the kernel keyring (a joined session keyring), a GNOME Keyring
//! Secret Service started by the test under `dbus-run-session`, the automatic choice between
//! them, OMAC_KEYRING_BACKEND, masked prompts on a real pseudo-terminal, and the value never
//! showing up on argv, in logs, or in files.

mod skillkit;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sha2::Digest;
use skillkit::{expect, files_containing, have, text, unique, World};

fn fingerprint(v: &str) -> String {
    format!(
        "sha256:{}",
        &hex::encode(sha2::Sha256::digest(v.as_bytes()))[..12]
    )
}

fn workdir_service(w: &World, skill: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let id = hex::encode(sha2::Sha256::digest(w.work.as_os_str().as_bytes()));
    format!("omac/{id}/{skill}")
}

fn secret_fingerprint(w: &World, skill: &str) -> String {
    let o = w.run(&["config", "show", skill, "--json"]);
    expect(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["secrets"][0]["fingerprint"].as_str().unwrap().to_string()
}

/// `omac secrets set SKILL ECHO_API_KEY --stdin` with `value`, which must succeed.
fn set_by_stdin(w: &World, skill: &str, value: &str) -> Output {
    let o = w.run_with_input(
        &["secrets", "set", skill, "ECHO_API_KEY", "--stdin"],
        format!("{value}\n").as_bytes(),
    );
    expect(&o, 0);
    o
}

/// A registered skill whose ECHO_API_KEY is not yet stored.
fn registered(w: &World, prefix: &str) -> String {
    let name = unique(prefix);
    w.skill(&name);
    expect(&w.run(&["register", &name, "--no-secrets"]), 0);
    name
}

#[test]
fn kernel_keyring_round_trip_through_the_cli() {
    let w = World::new();
    let name = registered(&w, "ku");
    let o = set_by_stdin(&w, &name, "kernel-value-42");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("reboot"),
        "the volatility is said: {}",
        text(&o)
    );
    // Another process (a fresh session keyring) finds it.
    assert_eq!(
        secret_fingerprint(&w, &name),
        fingerprint("kernel-value-42")
    );

    // Independently: the key is in the user's persistent keyring, under the store's name.
    let desc = format!("keyring:ECHO_API_KEY@{}", workdir_service(&w, &name));
    let probe = Command::new("keyctl")
        .args(["session", "-", "sh", "-c"])
        .arg(format!(
            "keyctl get_persistent @s >/dev/null && id=$(keyctl search @s user '{desc}') && keyctl pipe $id"
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout),
        "kernel-value-42",
        "{:?}",
        probe
    );

    let o = w.run(&["secrets", "unset", &name, "ECHO_API_KEY"]);
    expect(&o, 0);
    assert_eq!(secret_fingerprint(&w, &name), "<missing>");
    let o = w.run(&["secrets", "unset", &name, "ECHO_API_KEY"]);
    expect(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("[noop]"));
}

#[test]
fn a_dropped_test_world_leaves_no_key_in_the_persistent_keyring() {
    let w = World::new();
    let name = registered(&w, "kgone");
    set_by_stdin(&w, &name, "kept-for-a-moment");
    // Its workdir key and its __defaults__ mirror, as /proc/keys shows the user's keys.
    let listed = || {
        std::fs::read_to_string("/proc/keys")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!("/{name}:")))
            .count()
    };
    assert_eq!(
        listed(),
        2,
        "both keys are stored, so the check below can see them"
    );
    drop(w);
    // Unlinked keys are collected by the kernel shortly after.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while listed() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listed(), 0, "the world's keys are gone");
}

#[test]
fn without_a_secret_service_auto_falls_back_to_the_kernel_keyring() {
    let mut w = World::new();
    w.unvar("OMAC_KEYRING_BACKEND");
    // No session bus at all.
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "keyutils");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no Secret Service") && err.contains("reboot"),
        "{err}"
    );
    // A bus address that leads nowhere is the same.
    w.var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "keyutils");
}

#[test]
fn omac_keyring_backend_picks_or_refuses() {
    let mut w = World::new();
    w.var("OMAC_KEYRING_BACKEND", "keyutils");
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&"chosen by OMAC_KEYRING_BACKEND".to_string())
    );
    w.var("OMAC_KEYRING_BACKEND", "secret-service");
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 8);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fix:"),
        "{}",
        text(&o)
    );
    w.var("OMAC_KEYRING_BACKEND", "macos");
    expect(&w.run(&["secrets", "backend"]), 8);
    w.var("OMAC_KEYRING_BACKEND", "floppy");
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("secret-service"),
        "{}",
        text(&o)
    );
}

/// Starts one GNOME Keyring daemon on the session bus with an unlocked login collection,
/// waits until it owns `org.freedesktop.secrets` and the `default` alias names the login
/// collection (asking earlier lets D-Bus activate a second, locked daemon), then runs the
/// test named `$1` of the binary `$0`. The daemon exits with the bus.
const START_KEYRING: &str = r#"
printf %s test-keyring-password | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
n=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus         org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'   && dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets         org.freedesktop.Secret.Service.ReadAlias string:default 2>/dev/null | grep -q collection/login; do
  n=$((n+1)); [ $n -gt 200 ] && { echo "gnome-keyring did not come up" >&2; exit 97; }; sleep 0.05
done
exec "$0" --exact "$1" --ignored --nocapture --test-threads=1
"#;

/// Runs the ignored test `inner` of this binary inside a D-Bus session with an unlocked GNOME
/// Keyring (started by this test; gone when the session ends).
fn in_secret_service_session(inner: &str) {
    for tool in [
        "dbus-run-session",
        "dbus-send",
        "gnome-keyring-daemon",
        "secret-tool",
    ] {
        assert!(
            have(tool),
            "{tool} is missing: install dbus, gnome-keyring and libsecret-tools (.ci/apt-packages)"
        );
    }
    let home = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let out = Command::new("dbus-run-session")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(START_KEYRING)
        .arg(&me)
        .arg(inner)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("OMAC_TEST_IN_SESSION", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the inner test failed:\n{}",
        text(&out)
    );
}

#[test]
fn secret_service_round_trip() {
    in_secret_service_session("inner_secret_service_round_trip");
}

fn secret_tool(args: &[&str], input: Option<&str>) -> Output {
    let mut c = Command::new("secret-tool");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// Every process command line we can read, joined.
fn all_cmdlines() -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            out.extend(b);
            out.push(b'\n');
        }
    }
    out
}

#[test]
#[ignore = "runs inside the D-Bus session of secret_service_round_trip"]
fn inner_secret_service_round_trip() {
    assert_eq!(
        std::env::var("OMAC_TEST_IN_SESSION").as_deref(),
        Ok("1"),
        "run through secret_service_round_trip"
    );
    let mut w = World::new();
    w.unvar("OMAC_KEYRING_BACKEND");
    w.var(
        "DBUS_SESSION_BUS_ADDRESS",
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").unwrap(),
    );

    // auto chooses the Secret Service when one answers.
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "secret-service",
        "{}",
        text(&o)
    );

    let name = registered(&w, "ss");
    let service = workdir_service(&w, &name);
    let value = "ss-value-Zq81";
    let o = set_by_stdin(&w, &name, value);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("reboot"),
        "no volatility notice: {}",
        text(&o)
    );
    assert_eq!(secret_fingerprint(&w, &name), fingerprint(value));
    assert!(
        !all_cmdlines()
            .windows(value.len())
            .any(|x| x == value.as_bytes()),
        "a value is on some argv"
    );

    // Stored the way go-keyring stores it: attributes service + username, its label.
    let o = secret_tool(
        &["lookup", "service", &service, "username", "ECHO_API_KEY"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), value, "{o:?}");
    let o = secret_tool(&["search", "--all", "service", &service], None);
    let listing = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        listing.contains(&format!(
            "label = Password for 'ECHO_API_KEY' on '{service}'"
        )),
        "{listing}"
    );

    // A secret written as the Go omac writes it is read by omac.
    let go = registered(&w, "go");
    let go_service = workdir_service(&w, &go);
    let o = secret_tool(
        &[
            "store",
            "--label",
            &format!("Password for 'ECHO_API_KEY' on '{go_service}'"),
            "service",
            &go_service,
            "username",
            "ECHO_API_KEY",
        ],
        Some("written-by-go"),
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(secret_fingerprint(&w, &go), fingerprint("written-by-go"));
    // Its unscoped fallback too (omac/<skill>, used by global skills and older registrations).
    let o = secret_tool(
        &["clear", "service", &go_service, "username", "ECHO_API_KEY"],
        None,
    );
    assert!(o.status.success());
    let o = secret_tool(
        &[
            "store",
            "--label",
            "x",
            "service",
            &format!("omac/{go}"),
            "username",
            "ECHO_API_KEY",
        ],
        Some("global-go"),
    );
    assert!(o.status.success());
    assert_eq!(secret_fingerprint(&w, &go), fingerprint("global-go"));

    // unset removes it from the Secret Service.
    expect(&w.run(&["secrets", "unset", &name, "ECHO_API_KEY"]), 0);
    let o = secret_tool(
        &["lookup", "service", &service, "username", "ECHO_API_KEY"],
        None,
    );
    assert!(o.stdout.is_empty(), "{o:?}");
    expect(&w.run(&["secrets", "unset", &go, "ECHO_API_KEY"]), 0);

    // OMAC_KEYRING_BACKEND overrides the automatic choice even with a Secret Service present.
    w.var("OMAC_KEYRING_BACKEND", "keyutils");
    let o = w.run(&["secrets", "backend"]);
    expect(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "keyutils");
}

#[test]
fn secret_values_never_reach_argv_logs_or_files() {
    let mut w = World::new();
    let name = registered(&w, "leak");
    let value = "leak-check-V4lue";
    w.var("OMAC_LOG", "trace");

    // While omac waits for the value on stdin, its argv and environment do not hold it.
    let mut child = w
        .cmd(&["-v", "secrets", "set", &name, "ECHO_API_KEY", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let proc = Path::new("/proc").join(child.id().to_string());
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).unwrap();
    drop(stdin);
    let mut during = cmdline.clone();
    if let Ok(env) = std::fs::read(proc.join("environ")) {
        during.extend(env);
    }
    let out = child.wait_with_output().unwrap();
    expect(&out, 0);
    let has = |hay: &[u8]| hay.windows(value.len()).any(|x| x == value.as_bytes());
    assert!(
        !has(&during),
        "the value is in /proc/<pid>/cmdline or environ"
    );
    assert!(
        !has(&out.stdout) && !has(&out.stderr),
        "the value is in the output: {}",
        text(&out)
    );
    // The probe works: the argv it read is omac's.
    assert!(
        String::from_utf8_lossy(&cmdline).contains("secrets"),
        "the probe read no argv"
    );

    // Verbose commands that read the secret print only its fingerprint.
    for args in [
        vec!["-v", "config", "show", name.as_str()],
        vec!["-v", "secrets", "list", name.as_str()],
        vec!["-v", "list"],
    ] {
        let o = w.run(&args);
        expect(&o, 0);
        assert!(
            !has(&o.stdout) && !has(&o.stderr),
            "{args:?} printed the value: {}",
            text(&o)
        );
    }
    // Registering with the value in OMAC_SECRET_*: not in the output, not in any file.
    let other = unique("leak2");
    w.skill(&other);
    w.var("OMAC_SECRET_ECHO_API_KEY", value);
    let o = w.run(&["-v", "register", &other]);
    expect(&o, 0);
    assert!(!has(&o.stdout) && !has(&o.stderr), "{}", text(&o));
    assert_eq!(
        files_containing(w.tmp.path(), value.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    w.unvar("OMAC_SECRET_ECHO_API_KEY");
    for n in [&name, &other] {
        let _ = w.run(&["deregister", n, "--purge-secrets", "--purge-defaults"]);
    }
}

/// Runs omac with `args` on a pseudo-terminal, typing `steps`; returns its exit code and
/// what the terminal showed, followed by whether echo was on afterwards.
fn drive(w: &World, steps: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut sh = format!("'{}'", skillkit::OMAC);
    for a in args {
        sh.push_str(&format!(" '{a}'"));
    }
    drive_sh(w, steps, &sh)
}

/// As [`drive`], for any shell command.
fn drive_sh(w: &World, steps: &[(&str, &str)], command: &str) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/skillkit/pty_drive.py");
    let steps =
        serde_json::to_string(&steps.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>()).unwrap();
    // After the command exits, the same terminal reports whether echo is back on.
    let sh = format!(
        "trap : INT; {command}; rc=$?; stty -a | grep -o -- '-\\?echo ' | head -1; exit $rc"
    );
    let c = w.cmd(&[]);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(steps)
        .arg("--")
        .args(["sh", "-c", &sh]);
    cmd.env_clear().current_dir(&w.work);
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "the pty driver failed");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["status"].as_i64().unwrap() as i32,
        v["output"].as_str().unwrap().to_string(),
    )
}

#[test]
fn prompts_are_masked_retry_on_pattern_and_restore_the_terminal() {
    let w = World::new();
    let name = registered(&w, "tty");
    let typed = "typed-Secret-77";
    let (code, screen) = drive(
        &w,
        &[("? ECHO_API_KEY", &format!("{typed}\n"))],
        &["secrets", "set", &name, "ECHO_API_KEY"],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        !screen.contains(typed),
        "the typed value was echoed:\n{screen}"
    );
    assert!(
        screen.contains("echo ") && !screen.contains("-echo "),
        "echo not restored:\n{screen}"
    );
    assert_eq!(secret_fingerprint(&w, &name), fingerprint(typed));

    // The pattern (^[A-Za-z0-9_-]{3,}$) is checked; three bad tries end with exit 9.
    let (code, screen) = drive(
        &w,
        &[
            ("? ECHO_API_KEY", "a\n"),
            ("? ECHO_API_KEY", "b\n"),
            ("? ECHO_API_KEY", "c\n"),
        ],
        &["secrets", "set", &name, "ECHO_API_KEY"],
    );
    assert_eq!(code, 9, "{screen}");
    assert!(screen.matches("[retry]").count() == 2, "{screen}");
    assert_eq!(
        secret_fingerprint(&w, &name),
        fingerprint(typed),
        "the stored value is unchanged"
    );

    // register asks for config fields in the clear and for secrets masked.
    let (code, screen) = drive(
        &w,
        &[
            ("? ECHO_API_KEY", "second-Secret-88\n"),
            ("? ECHO_GREETING", "howdy\n"),
            ("? ECHO_VERBOSE", "\n"),
            ("? ECHO_MAX_TICK", "\n"),
            ("? ECHO_MODE", "\n"),
        ],
        &["register", &name, "--reprompt-secrets", "--reprompt-fields"],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("second-Secret-88"), "{screen}");
    assert!(screen.contains("howdy"), "fields echo: {screen}");
    let o = w.run(&["config", "get", &name, "ECHO_GREETING"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "howdy");
    let _ = w.run(&["deregister", &name, "--purge-secrets", "--purge-defaults"]);
}

#[test]
fn an_interrupted_prompt_leaves_echo_on() {
    let w = World::new();
    let name = registered(&w, "intr");
    // Ctrl-C (ETX) while the masked prompt waits.
    let (code, screen) = drive(
        &w,
        &[("? ECHO_API_KEY", "\u{3}")],
        &["secrets", "set", &name, "ECHO_API_KEY"],
    );
    assert_eq!(code, 130, "killed by SIGINT: {screen}");
    assert!(
        screen.contains("echo ") && !screen.contains("-echo "),
        "echo left off:\n{screen}"
    );
    // The probe sees a breach: a program killed with echo off leaves the terminal so.
    let (_, screen) = drive_sh(
        &w,
        &[("ready", "\u{3}")],
        "sh -c 'stty -echo; echo ready; exec sleep 30'",
    );
    assert!(
        screen.contains("-echo "),
        "the probe cannot see echo left off:\n{screen}"
    );
}
