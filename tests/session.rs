//! Sessions end to end: `omac start` with the stand-in agent and the echo-rest skill in each
//! network mode, on a terminal and headless; teardown after a normal exit, Ctrl-C, SIGTERM
//! and SIGKILL; `omac run` of a bundle made earlier in a CI-like environment; the secret's
//! path (the sidecar gets it, the sandbox never sees it); the refusals and their exit
//! codes; the audit log; open and published ports; a filtered session reaching a test host
//! through the egress proxy.

mod sessionkit;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use sessionkit::*;

/// A host with echo-rest registered and its secret in the keychain.
fn echo_host(secret: &str) -> Host {
    let h = Host::new();
    h.install_echo(|y| y);
    h.register_echo(Some(secret));
    h
}

/// `omac start [ARGS] --inner sh -- standin-agent.sh PROTECTED CODE`.
fn start_standin(h: &Host, args: &[&str], code: i32) -> std::process::Output {
    let protected = h.home.join(".ssh/id_rsa").display().to_string();
    let code = code.to_string();
    let mut c = h.omac();
    c.arg("start")
        .args(args)
        .args(["--inner", "sh", "--", "standin-agent.sh"])
        .args([protected.as_str(), code.as_str()]);
    c.output().unwrap()
}

fn check_standin(h: &Host, o: &std::process::Output, secret: &str, what: &str) {
    let r = report(o);
    assert_eq!(
        r.get("done").map(String::as_str),
        Some("yes"),
        "{what}: {}",
        text(o)
    );
    assert_eq!(r["base_status"], "200", "{what}: {}", text(o));
    assert!(
        r["base_body"].contains("\"skill\": \"echo-rest\""),
        "{what}: {}",
        text(o)
    );
    assert_eq!(r["socket_status"], "200", "{what}: {}", text(o));
    assert!(
        r["socket_body"].contains("\"ok\": true"),
        "{what}: {}",
        text(o)
    );
    assert!(
        r["whoami"].contains(&fingerprint(secret)),
        "{what}: the sidecar got the secret: {}",
        text(o)
    );
    assert!(r["protected"].starts_with("denied"), "{what}: {}", text(o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&h.ssh_secret),
        "{what}"
    );
    assert_eq!(r["omac_skills"], "echo", "{what}");
    assert_eq!(r["sandbox_hostname"], "omac", "{what}");
}

fn nothing_left(h: &Host, what: &str) {
    let left = h.wait_no_processes();
    assert!(left.is_empty(), "{what}: processes left: {left:?}");
    assert!(
        h.session_dirs().is_empty(),
        "{what}: {:?}",
        h.session_dirs()
    );
}

#[test]
fn each_network_mode_reaches_the_skill_but_not_the_keys() {
    let secret = "ci-secret-one";
    let h = echo_host(secret);
    h.profile(
        "blocked",
        r#"{"extends": "default", "network": {"mode": "blocked"}}"#,
    );
    for (profile, what) in [
        ("default", "filtered"),
        ("blocked", "blocked"),
        ("open", "open"),
    ] {
        let o = start_standin(&h, &["--profile", profile], 7);
        assert_eq!(
            o.status.code(),
            Some(7),
            "{what}: the agent's code: {}",
            text(&o)
        );
        check_standin(&h, &o, secret, what);
        let r = report(&o);
        if what == "open" {
            // No network namespace: the facade's loopback port with the session's token.
            assert!(r["omac_base"].contains("/<token>/"), "{}", text(&o));
        } else {
            assert_eq!(r["omac_base"], "http://127.0.0.1:29170/");
        }
        nothing_left(&h, what);
    }
    // Unconfined, the same probe reads the key: it would have noticed a breach.
    let o = std::process::Command::new("sh")
        .arg(h.work.join("standin-agent.sh"))
        .arg(h.home.join(".ssh/id_rsa"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &h.home)
        .output()
        .unwrap();
    assert!(
        report(&o)["protected"].contains(&h.ssh_secret),
        "{}",
        text(&o)
    );
}

#[test]
fn open_mode_facade_port_refuses_requests_without_the_token() {
    let h = echo_host("tok-secret");
    let o = h
        .omac()
        .args(["start", "--profile", "open", "--inner", "sh", "--", "-c"])
        .arg(
            "curl -s -o /dev/null -w 'bare=%{http_code}\\n' http://$OMAC_HOST:$OMAC_PORT/echo/status; \
             curl -s -o /dev/null -w 'wrong=%{http_code}\\n' http://$OMAC_HOST:$OMAC_PORT/0000/echo/status; \
             curl -s -o /dev/null -w 'token=%{http_code}\\n' ${OMAC_BASE}echo/status",
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("bare=401"), "{}", text(&o));
    assert!(out.contains("wrong=401"), "{}", text(&o));
    assert!(out.contains("token=200"), "{}", text(&o));
}

#[test]
fn on_a_terminal_the_agent_is_interactive_and_ctrl_c_tears_down() {
    let secret = "tty-secret";
    let h = echo_host(secret);
    let protected = h.home.join(".ssh/id_rsa").display().to_string();
    let mut c = h.omac();
    c.args(["start", "--inner", "sh", "--", "-c"]).arg(format!(
        "sh standin-agent.sh {protected} 0; [ -t 0 ] && echo tty=yes; echo ready; \
         read line; echo got=$line; sleep 30; echo not-interrupted"
    ));
    let mut t = OnTerminal::spawn(c);
    let seen = t.read_until("ready");
    assert!(seen.contains("tty=yes"), "{seen}");
    assert!(seen.contains("socket_status=200"), "{seen}");
    assert!(seen.contains(&fingerprint(secret)), "{seen}");
    assert!(seen.contains("protected=denied"), "{seen}");
    t.master.write_all(b"typed-line\r").unwrap();
    let seen = t.read_until("got=typed-line");
    assert!(seen.contains("got=typed-line"), "{seen}");
    // Ctrl-C goes to the agent (in omac's process group): it dies, omac tears down.
    std::thread::sleep(Duration::from_millis(300));
    t.master.write_all(b"\x03").unwrap();
    let (code, rest) = t.wait();
    assert!(!rest.contains("not-interrupted"), "{rest}");
    assert_eq!(code, Some(130), "{rest}");
    nothing_left(&h, "after Ctrl-C");
}

#[test]
fn sigterm_to_omac_reaches_the_agent_and_everything_stops() {
    let h = echo_host("term-secret");
    let nap = format!("31.{}", std::process::id());
    let mut child = h
        .omac()
        .args(["start", "--inner", "sh", "--", "-c"])
        .arg(format!(
            "trap 'echo agent-got-term; exit 42' TERM; echo ready; sleep {nap} & wait"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "ready");
    // The sidecar runs meanwhile.
    assert!(
        h.processes().iter().any(|(_, c)| c.contains("sidecar.py")),
        "{:?}",
        h.processes()
    );
    // SAFETY: signalling our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(42), "{}", text(&o));
    nothing_left(&h, "after SIGTERM");
}

/// Reads the child's stdout until a line equals `want`.
fn wait_for_line(child: &mut std::process::Child, want: &str) {
    use std::io::BufRead;
    let out = child.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "the session ended before {want:?}");
        if line.trim_end() == want {
            return;
        }
    }
}

#[test]
fn sigkill_of_omac_leaves_nothing_running_and_the_next_start_cleans_up() {
    let h = echo_host("kill-secret");
    let nap = format!("32.{}", std::process::id());
    let mut child = h
        .omac()
        .args(["start", "--inner", "sh", "--", "-c"])
        .arg(format!("echo ready; sleep {nap}; echo survived"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "ready");
    assert_eq!(h.session_dirs().len(), 1);
    // SAFETY: signalling our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // Sidecar, keeper, sandbox: all die with omac.
    let left = h.wait_no_processes();
    assert!(left.is_empty(), "processes outlived omac: {left:?}");
    let stale = h.session_dirs();
    assert_eq!(
        stale.len(),
        1,
        "the dead session's directory stays until the next start"
    );
    let o = h.run(&["start", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !stale[0].exists(),
        "the next start removed {}",
        stale[0].display()
    );
    nothing_left(&h, "after the next start");
}

#[test]
fn a_start_failing_after_its_sidecars_started_stops_them() {
    // omac start starts the sidecars as soon as their values are known, before the rest of
    // the session is prepared; a failure after that point (here the harness's state
    // directory cannot be created: ~/.cache is a file) must stop them all the same.
    let h = echo_host("early-secret");
    std::fs::write(h.home.join(".cache"), "not a directory\n").unwrap();
    let o = h.run(&["start", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        stderr(&o).contains(".cache/opencode"),
        "the error names the directory: {}",
        text(&o)
    );
    nothing_left(&h, "after the failed start");
    let events = h.audit();
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        count("sidecar.start"),
        count("sidecar.stop"),
        "every sidecar started is recorded stopped: {events:?}"
    );
    assert_eq!(count("process.exec"), 0, "no agent ran: {events:?}");
}

#[test]
fn a_bundle_runs_in_ci_with_the_secret_only_in_the_environment() {
    let h = Host::new();
    h.install_echo(|y| y);
    h.register_echo(None);
    // A profile that passes every host variable: the secret's variable must still not pass.
    h.profile(
        "wide",
        r#"{"extends": "default", "environment": {"allow_vars": ["*"]}}"#,
    );
    let bundle = h.root.join("bundle");
    // The probe is told the value in two halves, so that no variable it sees holds it.
    // grep reads the value from a file, so that no command line holds it either.
    let probe = "n=${NEEDLE_DIR:-/dev/shm}/needle; printf %s \"$PROBE_HEAD$PROBE_TAIL\" > $n; \
        sh standin-agent.sh /nonexistent 0; \
        echo env_hits=$(env | grep -c -F -f $n); \
        echo proc_hits=$(cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c -F -f $n); \
        echo file_hits=$(grep -rls -F -f $n /tmp \"$HOME\" /run/omac \"$PWD\" 2>/dev/null | wc -l); \
        echo proc_keys=$(cat /proc/keys 2>/dev/null | wc -l); \
        echo keyctl=$(keyctl show @u 2>&1 | head -1)";
    let o = h
        .omac()
        .args(["bundle", "create", "--profile", "wide", "--out"])
        .arg(&bundle)
        .args(["--", "/bin/sh", "-c", probe])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ext: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("omac.json")).unwrap()).unwrap();
    assert_eq!(ext["sidecars"][0]["skill"], "echo-rest");
    assert_eq!(ext["skills"][0]["name"], "echo-rest");
    let tail = format!("{}x{}", std::process::id(), h.root.as_os_str().len());
    let secret = format!("CIKEY{tail}");
    // env -i with the secret only in ECHO_API_KEY (the skill's env_passthrough).
    let o = std::process::Command::new(OMAC)
        .current_dir(&h.root)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &h.home)
        .env("ECHO_API_KEY", &secret)
        .env("PROBE_HEAD", "CIKEY")
        .env("PROBE_TAIL", &tail)
        .arg("run")
        .arg("--json")
        .arg(&bundle)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert!(
        r["whoami"].contains(&fingerprint(&secret)),
        "the sidecar got it: {}",
        text(&o)
    );
    assert_eq!(r["env_hits"], "0", "{}", text(&o));
    assert_eq!(r["proc_hits"], "0", "{}", text(&o));
    assert_eq!(r["file_hits"], "0", "{}", text(&o));
    assert_eq!(r["proc_keys"], "0", "/proc/keys is masked: {}", text(&o));
    assert!(
        !r["keyctl"].contains("Keyring"),
        "keyctl is refused: {}",
        text(&o)
    );
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["mode"], "run");
    assert_eq!(summary["enforcement"]["mode"], "namespaced", "{summary}");
    assert_eq!(summary["denials"]["network"], 0);
    assert_eq!(summary["sidecars"][0]["skill"], "echo-rest");
    assert!(summary["sidecars"][0]["healthy_ms"].as_f64().unwrap() > 0.0);
    assert!(summary["duration_ms"].as_f64().unwrap() > 0.0);
    // Nothing on the host's disk holds the secret either (logs, audit, runtime directory).
    assert!(
        files_with(&h.root, &secret).is_empty(),
        "{:?}",
        files_with(&h.root, &secret)
    );
    assert!(files_with(&h.run, &secret).is_empty());
    // Unconfined, the probe finds the value where it is (it would notice a leak).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && {probe}", h.work.display()))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &h.home)
        .env("ECHO_API_KEY", &secret)
        .env("PROBE_HEAD", "CIKEY")
        .env("PROBE_TAIL", &tail)
        .env("NEEDLE_DIR", &h.root)
        .output()
        .unwrap();
    let r = report(&o);
    assert_eq!(r["env_hits"], "1", "{}", text(&o));
    assert_ne!(r["proc_hits"], "0", "{}", text(&o));
    assert!(r["keyctl"].contains("Keyring"), "{}", text(&o));
    nothing_left(&h, "ci run");
}

/// Files under `root` containing `needle`.
fn files_with(root: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(m) = std::fs::symlink_metadata(root) else {
        return out;
    };
    if m.is_dir() {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            out.extend(files_with(&e.path(), needle));
        }
    } else if m.is_file() {
        if let Ok(b) = std::fs::read(root) {
            if b.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                out.push(root.to_path_buf());
            }
        }
    }
    out
}

#[test]
fn unregistered_changed_and_missing_skills_are_refused_with_their_codes() {
    let h = Host::new();
    let dir = h.install_echo(|y| {
        y.replace(
            "      required: false\n      pattern: \"^[A-Za-z0-9_-]{3,}$\"",
            "      required: true\n      pattern: \"^[A-Za-z0-9_-]{3,}$\"",
        )
    });
    // Unregistered: exit 4 with the line that registers it.
    let o = h.run(&["start", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        stderr(&o).contains("omac register echo-rest"),
        "{}",
        text(&o)
    );
    assert!(h.processes().is_empty());

    // Registered without its (now required) secret: exit 9 naming it and the ways to give it.
    h.register_echo(None);
    let o = h.run(&["start", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("secret ECHO_API_KEY is missing"), "{e}");
    assert!(e.contains("omac secrets set echo-rest ECHO_API_KEY"), "{e}");
    assert!(e.contains("OMAC_SECRET_ECHO_API_KEY="), "{e}");
    // The same for `omac run` of a bundle: exit 9, headless.
    let bundle = h.root.join("b");
    let o = h
        .omac()
        .args(["bundle", "create", "--out"])
        .arg(&bundle)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = h.omac().arg("run").arg(&bundle).output().unwrap();
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    // With the secret in the environment it runs.
    let o = h
        .omac()
        .env("ECHO_API_KEY", "from-env")
        .arg("run")
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Changed since registration: refused (exit 3), runs with --accept-skill-changes, loudly.
    std::fs::write(dir.join("notes.txt"), "an edit the agent made\n").unwrap();
    let o = h
        .omac()
        .env("OMAC_SECRET_ECHO_API_KEY", "abc")
        .args(["start", "--inner", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains("changed since it was registered"),
        "{}",
        text(&o)
    );
    let o = h
        .omac()
        .env("OMAC_SECRET_ECHO_API_KEY", "abc")
        .args(["start", "--accept-skill-changes", "--inner", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stderr(&o).contains("WARNING: skill echo-rest CHANGED"),
        "{}",
        text(&o)
    );
    assert!(h
        .audit()
        .iter()
        .any(|e| e["type"] == "skill.change_accepted"));
    nothing_left(&h, "refusals");
}

#[test]
fn a_harness_that_is_not_installed_or_unknown_is_refused() {
    let h = Host::new();
    let o = h.run(&["start", "vim"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("opencode (oc), claude-code (claude, cc), codex (cx)"),
        "{}",
        text(&o)
    );
    // opencode is not installed in this environment's PATH (a clean one).
    let o = h
        .omac()
        .env("PATH", "/nonexistent")
        .args(["start", "cc"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        stderr(&o).contains("`claude` is not installed"),
        "{}",
        text(&o)
    );
    let o = h.run(&["start", "--publish", "29170", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn the_audit_log_records_the_session_in_order_with_secrets_redacted() {
    let secret = "audit-secret-value";
    let h = echo_host(secret);
    // The secret even appears in the agent's argv: the log must not show it.
    let o = h
        .omac()
        .args(["start", "--inner", "sh", "--", "-c"])
        .arg("curl -s --unix-socket $OMAC_SOCKET http://omac/echo/status >/dev/null; exit 3")
        .arg(secret)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let path = h.home.join(".local/state/omac/audit.jsonl");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains(secret), "the secret is in the audit log");
    assert!(raw.contains("[redacted]"), "{raw}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let events = read_audit(&path);
    let run_id = events.last().unwrap()["run_id"].clone();
    let ours: Vec<&serde_json::Value> = events.iter().filter(|e| e["run_id"] == run_id).collect();
    let seqs: Vec<u64> = ours.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{ours:?}"
    );
    let types: Vec<&str> = ours.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "session.start",
        "sidecar.start",
        "sidecar.healthy",
        "process.exec",
        "facade.request",
        "process.exit",
        "sidecar.stop",
        "session.stop",
    ] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
    assert_eq!(types[0], "session.start");
    assert_eq!(*types.last().unwrap(), "session.stop");
    let pos = |t: &str| types.iter().position(|x| *x == t).unwrap();
    assert!(pos("sidecar.healthy") < pos("process.exec"));
    assert!(pos("process.exec") < pos("process.exit"));
    for e in &ours {
        assert_eq!(e["mode"], "start");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    }
    let exit = ours.iter().find(|e| e["type"] == "process.exit").unwrap();
    assert_eq!(exit["code"], 3);
    assert_eq!(exit["enforcement"]["mode"], "namespaced");
    let req = ours.iter().find(|e| e["type"] == "facade.request").unwrap();
    assert_eq!(req["mount"], "echo");
    assert_eq!(req["status"], 200);

    // --audit-log PATH writes there; --no-audit writes nothing.
    let other = h.root.join("elsewhere/audit.jsonl");
    let o = h
        .omac()
        .args(["start", "--audit-log"])
        .arg(&other)
        .args(["--inner", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(read_audit(&other)
        .iter()
        .any(|e| e["type"] == "session.stop"));
    let before = std::fs::read_to_string(&path).unwrap().len();
    let o = h.run(&["start", "--no-audit", "--inner", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), before);
}

#[test]
fn open_and_published_ports_round_trip() {
    if !have("python3") {
        panic!("python3 is needed (.ci/apt-packages)");
    }
    let h = Host::new();
    // A service on the host's loopback that the agent may reach.
    let host_port = http_server("from-the-host");
    let publish = free_port();
    let script = format!(
        "curl -s -m 5 http://127.0.0.1:{host_port}/; echo; \
         python3 -c \"
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b=b'from-the-sandbox'; self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s=socketserver.TCPServer(('127.0.0.1', {publish}), H); print('listening', flush=True); s.handle_request()\""
    );
    let mut child = h
        .omac()
        .args([
            "start",
            "--open-port",
            &host_port.to_string(),
            "--publish",
            &publish.to_string(),
            "--inner",
            "sh",
            "--",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "from-the-host");
    wait_for_line(&mut child, "listening");
    // The host reaches the server inside through the published port.
    let got = std::process::Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg(format!("http://127.0.0.1:{publish}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "from-the-sandbox");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Without --open-port the same host service is out of reach.
    let o = h
        .omac()
        .args(["start", "--inner", "sh", "--", "-c"])
        .arg(format!(
            "curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{host_port}/ || true"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "000", "{}", text(&o));
    nothing_left(&h, "ports");
}

#[test]
fn a_filtered_session_reaches_an_allowed_host_through_the_proxy() {
    let mut h = Host::new();
    let port = http_server("allowed-body");
    h.profile(
        "tests",
        r#"{"extends": "default", "network": {"allow_domain": ["allowed.test"], "network_prompt": {"enabled": false}}}"#,
    );
    // Test-only hooks (compiled into the omac that `cargo test` builds): the names resolve to
    // the test listener, which the proxy may reach despite its loopback hard deny.
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "allowed.test=127.0.0.1,other.test=127.0.0.1",
    );
    h.var("OMAC_TEST_EGRESS_EXEMPT", format!("127.0.0.1:{port}"));
    let o = h
        .omac()
        .args(["start", "--profile", "tests", "--json", "--inner", "sh", "--", "-c"])
        .arg(format!(
            "echo allowed=$(curl -s -m 5 http://allowed.test:{port}/); \
             echo other=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://other.test:{port}/); \
             echo direct=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/ || true)"
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["allowed"], "allowed-body", "{}", text(&o));
    assert_eq!(r["other"], "403", "{}", text(&o));
    assert_eq!(r["direct"], "000", "no way around the proxy: {}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["denials"]["network"], 1, "{summary}");
    assert_eq!(summary["network"]["allowed"], 1, "{summary}");
    let decisions: Vec<serde_json::Value> = h
        .audit()
        .into_iter()
        .filter(|e| e["type"] == "net.decision")
        .collect();
    assert!(
        decisions
            .iter()
            .any(|d| d["host"] == "allowed.test" && d["allow"] == true),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d["host"] == "other.test" && d["allow"] == false),
        "{decisions:?}"
    );
}

#[test]
fn a_bundle_cannot_run_layers_or_commands_that_were_not_approved() {
    let h = Host::new();
    let dir = h.install_echo(|y| y);
    h.register_echo(Some("xyz"));
    let bundle = h.root.join("b");
    let o = h
        .omac()
        .args(["bundle", "create", "--out"])
        .arg(&bundle)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The plan says to run something else on the host: refused, even with both files
    // consistent (the digest annotation updated too).
    let ext_path = bundle.join("omac.json");
    let mut ext: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ext_path).unwrap()).unwrap();
    let marker = h.root.join("pwned");
    ext["sidecars"][0]["command"] =
        serde_json::json!(["sh", "-c", format!("touch {}", marker.display())]);
    let text_ext = serde_json::to_vec(&ext).unwrap();
    std::fs::write(&ext_path, &text_ext).unwrap();
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let digest = std::process::Command::new("sha256sum")
        .arg(&ext_path)
        .output()
        .unwrap();
    let hex = String::from_utf8_lossy(&digest.stdout)[..64].to_string();
    cfg["annotations"]["org.omac.extension.digest"] = format!("sha256:{hex}").into();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let o = h.omac().arg("run").arg(&bundle).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains("does not match the omac.yaml of its layer"),
        "{}",
        text(&o)
    );
    assert!(!marker.exists(), "the tampered command ran");

    // A layer the store does not have: exit 4 with the command that imports it.
    let bundle2 = h.root.join("b2");
    let o = h
        .omac()
        .args(["bundle", "create", "--out"])
        .arg(&bundle2)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let store = h.home.join(".local/share/omac");
    let moved = h.root.join("store-aside");
    std::fs::rename(&store, &moved).unwrap();
    let o = h.omac().arg("run").arg(&bundle2).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let line = stderr(&o)
        .lines()
        .find(|l| l.contains("omac skills import"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no import command: {}", text(&o)))
        .to_string();
    assert!(line.contains(&dir.display().to_string()), "{line}");
    // Running the command it gives makes the bundle run.
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let o = h.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = h.omac().arg("run").arg(&bundle2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    nothing_left(&h, "bundle checks");
}

#[test]
fn keep_running_keeps_the_facade_until_a_stop_signal() {
    let h = echo_host("keep-secret");
    let mut child = h
        .omac()
        .args([
            "start",
            "--keep-running",
            "--inner",
            "sh",
            "--",
            "-c",
            "exit 5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the message naming the host socket.
    use std::io::BufRead;
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let socket = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no keep-running message"
        );
        if let Some(i) = line.find("keep running (--keep-running) at ") {
            let rest = &line[i + "keep running (--keep-running) at ".len()..];
            break rest.split(':').next().unwrap().trim().to_string();
        }
    };
    let got = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "--unix-socket",
            &socket,
            "http://omac/echo/status",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("\"ok\": true"),
        "{got:?}"
    );
    // SAFETY: signalling our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(5), "the agent's code");
    nothing_left(&h, "keep-running");
}

#[test]
fn no_sandbox_runs_on_the_host_loudly_and_is_audited() {
    let h = echo_host("nosb");
    let o = h
        .omac()
        .args([
            "start",
            "--no-sandbox",
            "--inner",
            "sh",
            "--",
            "standin-agent.sh",
        ])
        .arg(h.home.join(".ssh/id_rsa"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("WITHOUT a sandbox"), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["base_status"], "200", "{}", text(&o));
    assert_eq!(r["socket_status"], "200", "{}", text(&o));
    assert!(
        r["protected"].contains(&h.ssh_secret),
        "unsandboxed, as asked"
    );
    let start = h
        .audit()
        .into_iter()
        .find(|e| e["type"] == "session.start")
        .unwrap();
    assert_eq!(start["sandboxed"], false);
    nothing_left(&h, "no-sandbox");
}

#[test]
fn doctor_reports_each_skill_and_exits_3_when_one_is_broken() {
    let h = echo_host("doc-secret");
    let o = h.run(&["doctor"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for want in [
        "\nKeychain\n",
        "\nConfig\n",
        "\nSkills\n",
        "echo-rest (workdir, mount /echo/): layer in the store, secrets and fields present",
        "\nHarnesses\n",
        "\nNetwork prompts\n",
        "\nSandbox\n",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert_ne!(o.status.code(), Some(3), "{out}");
    std::fs::write(
        h.work.join(".agents/skills/echo-rest/omac.yaml"),
        "name: echo-rest\nsidecar:\n  command: []\n",
    )
    .unwrap();
    let o = h.run(&["doctor"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("[fail] echo-rest:"), "{out}");
    // A broken config file too.
    std::fs::create_dir_all(h.work.join(".omac")).unwrap();
    std::fs::write(h.work.join(".omac/config.yaml"), "facade:\n  max_bdy: 1\n").unwrap();
    let o = h.run(&["doctor"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("max_bdy"), "{out}");
}
