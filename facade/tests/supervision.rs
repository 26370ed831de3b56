//! The sidecar supervisor with the real echo-rest sidecar: health progress, restart after a
//! crash (503 meanwhile), health failures with the log's tail, and no sidecar left behind,
//! neither after shutdown nor after omac is killed with SIGKILL.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::*;
use omac_facade::{
    HealthSpec, RestartPolicy, RouteConfig, RouteState, RouteTable, SidecarEvent, SidecarSpec,
    Supervisor, SupervisorConfig,
};

fn status_of(body: &bytes::Bytes) -> (i32, i32) {
    let v = json(body);
    (
        v["pid"].as_i64().unwrap() as i32,
        v["pgid"].as_i64().unwrap() as i32,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sidecar_answers_503_then_comes_back() {
    let h = Harness::start(Options {
        restart: RestartPolicy {
            initial: Duration::from_millis(600),
            ..RestartPolicy::default()
        },
        ..Options::default()
    })
    .await;
    let sock = h.socket();
    let mut events = h.sup.events();
    let (st, _, body) = get(&sock, "/echo/status").await;
    assert_eq!(st, 200);
    let (pid, _) = status_of(&body);
    // SAFETY: killing the sidecar we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };

    // While it is down: 503 (restarting, or sidecar-down in the instant before omac noticed).
    let mut saw = None;
    for _ in 0..500 {
        let (st, hd, _) = get(&sock, "/echo/status").await;
        if st == 503 {
            saw = Some(reason(&hd));
            if saw.as_deref() == Some("restarting") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let saw = saw.expect("a 503 while the sidecar was down");
    assert!(saw == "restarting" || saw == "sidecar-down", "{saw}");
    assert!(matches!(
        h.routes.state("echo"),
        Some(RouteState::Restarting { attempt: 1 }) | Some(RouteState::Ready { .. })
    ));

    // And back, as a new process.
    h.ready().await;
    let (st, _, body) = get(&sock, "/echo/status").await;
    assert_eq!(st, 200);
    assert_ne!(status_of(&body).0, pid, "a new sidecar process");
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(match e {
            SidecarEvent::Exited { code, .. } => format!("exited:{code:?}"),
            SidecarEvent::Restarting { attempt, .. } => format!("restarting:{attempt}"),
            SidecarEvent::Spawned { restart, .. } => format!("spawned:{restart}"),
            SidecarEvent::Healthy { .. } => "healthy".into(),
            _ => continue,
        });
    }
    assert_eq!(
        kinds,
        ["exited:Some(137)", "restarting:1", "spawned:1", "healthy"],
        "events"
    );
    assert_eq!(h.sup.sidecars()[0].restarts, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_keeps_dying_is_given_up() {
    let h = Harness::start(Options {
        restart: RestartPolicy {
            max_restarts: Some(0),
            ..RestartPolicy::default()
        },
        ..Options::default()
    })
    .await;
    let (_, _, body) = get(&h.socket(), "/echo/status").await;
    // SAFETY: killing the sidecar we started.
    unsafe { libc::kill(status_of(&body).0, libc::SIGKILL) };
    let s = h
        .routes
        .wait_for("echo", Duration::from_secs(30), |s| {
            matches!(s, RouteState::Down { .. })
        })
        .await;
    assert!(matches!(s, Some(RouteState::Down { .. })), "{s:?}");
    let (st, hd, _) = get(&h.socket(), "/echo/status").await;
    assert_eq!((st, reason(&hd).as_str()), (503, "sidecar-down"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sidecar_is_left_after_shutdown() {
    let h = Harness::start(Options::default()).await;
    let (_, _, body) = get(&h.socket(), "/echo/status").await;
    let (pid, pgid) = status_of(&body);
    assert_eq!(pid, pgid, "the sidecar leads its own process group");
    assert_ne!(pgid, unsafe { libc::getpgrp() }, "not in omac's group");
    let keeper = h.sup.sidecars()[0].keeper_pid.unwrap() as i32;
    assert!(
        !group_gone(pgid) && !gone(keeper),
        "the probes see them alive"
    );
    let sock = h.socket();
    let _tmp = h.stop().await;
    assert!(group_gone(pgid), "sidecar group {pgid} survived shutdown");
    assert!(gone(keeper), "keeper {keeper} survived shutdown");
    assert!(!sock.exists(), "the socket file was removed");
}

fn write_config(
    dir: &std::path::Path,
    run: &std::path::Path,
    command: serde_json::Value,
) -> std::path::PathBuf {
    let cfg = serde_json::json!({
        "socket": run.join("bridge.sock"),
        "access_log": run.join("logs/facade.log"),
        "stop_grace_ms": 1000,
        "sidecars": [{
            "skill": "echo-rest",
            "mount": "echo",
            "dir": echo_dir(),
            "command": command,
            "config": {"ECHO_GREETING": "hi"},
            "secrets_from_env": {"ECHO_API_KEY": "TEST_ECHO_SECRET"},
            "health": {"initial_delay_ms": 20, "interval_ms": 50, "timeout_ms": 20000}
        }]
    });
    let p = dir.join("facade.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sidecar_outlives_a_killed_omac() {
    let (tmp, run) = scratch();
    // The sidecar leaves a stubborn helper in its group: it ignores SIGTERM, so only the
    // keeper's SIGKILL after the grace period ends it.
    let cfg = write_config(
        tmp.path(),
        &run,
        serde_json::json!([
            "sh",
            "-c",
            "(trap '' TERM; exec sleep 1000) & exec python3 scripts/sidecar.py"
        ]),
    );
    let mut omac = std::process::Command::new(env!("CARGO_BIN_EXE_omac-facade"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TEST_ECHO_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("omac-facade starts");
    let mut line = String::new();
    std::io::BufReader::new(omac.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
    assert_eq!(ready["ready"], true);
    let sock = std::path::PathBuf::from(ready["socket"].as_str().unwrap());
    let (st, _, body) = get(&sock, "/echo/whoami").await;
    assert_eq!(st, 200);
    assert_eq!(json(&body)["secret_fingerprint"], fingerprint());
    let (_, _, body) = get(&sock, "/echo/status").await;
    let (pid, pgid) = status_of(&body);
    let keeper = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<i32>()
        .unwrap();
    // The probes see the group and the keeper alive before the kill.
    assert!(!group_gone(pgid) && !gone(keeper));

    omac.kill().unwrap(); // SIGKILL: no cleanup code of omac runs
    omac.wait().unwrap();
    assert!(
        eventually(20, || group_gone(pgid) && gone(keeper)).await,
        "sidecar group {pgid} or keeper {keeper} outlived the killed omac"
    );
    let log = std::fs::read_to_string(run.join("logs/echo-rest.log")).unwrap();
    assert!(!log.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_facade_shuts_down_cleanly_on_sigterm() {
    let (tmp, run) = scratch();
    let cfg = write_config(
        tmp.path(),
        &run,
        serde_json::json!(["python3", "scripts/sidecar.py"]),
    );
    let mut omac = std::process::Command::new(env!("CARGO_BIN_EXE_omac-facade"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TEST_ECHO_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(omac.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sock = run.join("bridge.sock");
    let (_, _, body) = get(&sock, "/echo/status").await;
    let (_, pgid) = status_of(&body);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(omac.id() as i32, libc::SIGTERM) };
    let st = omac.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    assert!(group_gone(pgid));
    assert!(!sock.exists());
}

fn bare_supervisor(run: &std::path::Path) -> (RouteTable, Supervisor) {
    let routes = RouteTable::new(vec![RouteConfig::new("echo", "echo-rest")]).unwrap();
    let mut sc = SupervisorConfig::new(run.join("logs"));
    sc.keeper = keeper();
    (routes.clone(), Supervisor::new(sc, routes))
}

fn spec(tmp: &std::path::Path, command: &[&str], health: HealthSpec) -> SidecarSpec {
    let mut s = SidecarSpec::new(
        "echo-rest",
        "echo",
        echo_dir(),
        command.iter().map(|s| s.to_string()).collect(),
        tmp,
    );
    s.health = health;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_progress_is_reported() {
    let (tmp, run) = scratch();
    let (routes, sup) = bare_supervisor(&run);
    let mut events = sup.events();
    // The sidecar waits 400 ms before it listens: several probes go unanswered first.
    let s = spec(
        tmp.path(),
        &["sh", "-c", "sleep 0.4; exec python3 scripts/sidecar.py"],
        HealthSpec {
            path: "/status".into(),
            initial_delay: Duration::ZERO,
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(20),
        },
    );
    sup.start(vec![s]).await.expect("healthy in the end");
    assert!(matches!(
        routes.state("echo"),
        Some(RouteState::Ready { .. })
    ));
    let mut probes = Vec::new();
    let mut healthy = None;
    while let Ok(e) = events.try_recv() {
        match e {
            SidecarEvent::Probing { probe, elapsed, .. } => probes.push((probe, elapsed)),
            SidecarEvent::Healthy { waited, .. } => healthy = Some(waited),
            _ => {}
        }
    }
    // The sidecar cannot answer before 400 ms; probes every 50 ms from the start (no fixed
    // sleep first) make several unanswered ones, each reported in order.
    assert!(probes.len() >= 3, "probes: {probes:?}");
    assert_eq!(probes[0].0, 1);
    assert!(probes
        .windows(2)
        .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1));
    assert!(healthy.unwrap() >= Duration::from_millis(400));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_failures_name_the_cause_and_show_the_log() {
    let (tmp, run) = scratch();
    // A sidecar that dies at once.
    let (_, sup) = bare_supervisor(&run);
    let s = spec(
        tmp.path(),
        &[
            "python3",
            "-c",
            "import sys; sys.stderr.write('boom: no config\\n'); sys.exit(3)",
        ],
        HealthSpec::default(),
    );
    let e = sup.start(vec![s]).await.unwrap_err();
    assert_eq!(e.exit_code(), 6);
    let msg = e.to_string();
    assert!(msg.contains("code 3"), "{msg}");
    assert!(
        msg.contains("boom: no config"),
        "the log's tail is shown: {msg}"
    );

    // A sidecar that answers its health path with 404 until the timeout.
    let (run2_tmp, run2) = scratch();
    let (routes, sup) = bare_supervisor(&run2);
    let s = spec(
        run2_tmp.path(),
        &["python3", "scripts/sidecar.py"],
        HealthSpec {
            path: "/not-there".into(),
            initial_delay: Duration::ZERO,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(800),
        },
    );
    let e = sup.start(vec![s]).await.unwrap_err();
    assert!(e.to_string().contains("answered 404"), "{e}");
    assert!(matches!(
        routes.state("echo"),
        Some(RouteState::Down { .. })
    ));
    assert!(
        sup.sidecars()[0].keeper_pid.is_none(),
        "the unhealthy sidecar was stopped"
    );

    // A program that does not exist.
    let (_, sup) = bare_supervisor(&run);
    let e = sup
        .start(vec![spec(
            tmp.path(),
            &["./no-such-program"],
            HealthSpec::default(),
        )])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("code 127"), "{e}");
}

/// Every sidecar.stop in the audit log answers a sidecar.start: a sidecar shut down before
/// its task ever ran (omac start failing right after it asked for its sidecars) started
/// nothing and reports nothing. Control: shut down after the start, it reports both.
#[tokio::test(flavor = "current_thread")]
async fn a_sidecar_shut_down_before_it_started_is_not_reported_stopped() {
    let kinds = |events: &mut tokio::sync::broadcast::Receiver<SidecarEvent>| {
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            kinds.push(match e {
                SidecarEvent::Spawned { .. } => "spawned",
                SidecarEvent::Stopped { .. } => "stopped",
                _ => continue,
            });
        }
        kinds
    };
    let (tmp, run) = scratch();
    let health = HealthSpec {
        path: "/status".into(),
        initial_delay: Duration::ZERO,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(20),
    };
    let (_, sup) = bare_supervisor(&run);
    let mut events = sup.events();
    // On this single-threaded runtime the sidecar's task has not run yet.
    let first = sup
        .start_one(spec(
            tmp.path(),
            &["python3", "scripts/sidecar.py"],
            health.clone(),
        ))
        .unwrap();
    sup.shutdown().await;
    assert!(first.await.is_err(), "no start was reported");
    assert_eq!(kinds(&mut events), Vec::<&str>::new());

    let (_, sup) = bare_supervisor(&run);
    let mut events = sup.events();
    sup.start(vec![spec(
        tmp.path(),
        &["python3", "scripts/sidecar.py"],
        health,
    )])
    .await
    .expect("healthy");
    sup.shutdown().await;
    assert_eq!(kinds(&mut events), ["spawned", "stopped"]);
}
