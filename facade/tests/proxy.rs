//! Plain forwarding through the facade to the real echo-rest sidecar: routes, answers,
//! headers, limits, the access log, the TCP token.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_round_trip_and_skill_md() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let mut c = Client::connect(&sock).await;

    // Status document at `/`.
    let (st, hd, body) = c.get("/").await;
    assert_eq!(st, 200);
    assert_eq!(hd["content-type"], "application/json");
    let doc = json(&body);
    assert_eq!(doc["skills"], serde_json::json!(["echo"]));
    assert_eq!(doc["states"]["echo"], "ready");
    assert!(doc["version"].is_string());

    // JSON round trip on the same keep-alive connection.
    let sent = serde_json::json!({"hello": "world", "n": 7, "nested": {"ok": [1, 2, 3]}});
    let req = Request::post("/echo/echo")
        .header("host", "omac")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(sent.to_string())))
        .unwrap();
    let (st, _, body) = collect(c.send(req).await.unwrap()).await;
    assert_eq!(st, 200);
    let got = json(&body);
    assert_eq!(got["you_sent"], sent);
    assert_eq!(got["skill"], "echo-rest");

    // The prefix, the config values and the query reach the sidecar; `//` is collapsed.
    let (st, _, body) = c.get("//echo//whoami?x=1").await;
    assert_eq!(st, 200);
    let who = json(&body);
    assert_eq!(who["forwarded_prefix"], "/echo");
    assert_eq!(who["config"]["ECHO_GREETING"], "bonjour");
    assert_eq!(who["config"]["ECHO_MODE"], "strict");
    assert_eq!(who["config"]["ECHO_MAX_TICK"], 50);

    // SKILL.md at the mount root, with and without the trailing slash.
    for p in ["/echo", "/echo/"] {
        let (st, hd, body) = c.get(p).await;
        assert_eq!(st, 200, "{p}");
        assert_eq!(hd["x-omac-discovery"], "skill-md");
        assert!(hd["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown"));
        let on_disk = std::fs::read(echo_dir().join("SKILL.md")).unwrap();
        assert_eq!(body.as_ref(), on_disk.as_slice());
    }

    // Unknown mount: 404 with the reason; sidecar 404s pass through untouched.
    let (st, hd, _) = c.get("/nope/status").await;
    assert_eq!((st, reason(&hd).as_str()), (404, "unknown-mount"));
    let (st, hd, body) = c.get("/echo/no-such-route").await;
    assert_eq!(st, 404);
    assert_eq!(reason(&hd), "", "the sidecar's own 404");
    assert_eq!(json(&body)["path"], "/no-such-route");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_reaches_the_sidecar_and_nothing_else() {
    let h = Harness::start(Options::default()).await;
    let (st, _, body) = get(&h.socket(), "/echo/whoami").await;
    assert_eq!(st, 200);
    let who = json(&body);
    assert_eq!(who["secret_present"], true);
    assert_eq!(who["secret_fingerprint"], fingerprint());

    // Not on the sidecar's (or the keeper's) command line, not in any log.
    let (_, _, body) = get(&h.socket(), "/echo/status").await;
    let pid = json(&body)["pid"].as_i64().unwrap();
    let keeper = h.sup.sidecars()[0].keeper_pid.unwrap();
    for p in [pid, keeper as i64] {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(SECRET),
            "argv of {p}"
        );
    }
    // Control: the probe above reads the real environment, where the secret is.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains(&format!("ECHO_API_KEY={SECRET}")));
    let run = h.run.clone();
    let _keep = h.stop().await;
    for f in std::fs::read_dir(run.join("logs")).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(
            !text.contains(SECRET),
            "{} holds the secret",
            f.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_the_unix_socket() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(&sock)
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"from":"curl"}"#,
            "http://omac/echo/echo",
        ])
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["you_sent"]["from"], "curl");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let h = Harness::start(Options {
        max_body: 1000,
        ..Options::default()
    })
    .await;
    let sock = h.socket();
    // Declared too large: refused before anything reaches the sidecar.
    let mut c = Client::connect(&sock).await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    let req = Request::post("/echo/echo")
        .header("host", "omac")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let (st, hd, _) = collect(c.send(req).await.unwrap()).await;
    assert_eq!((st, reason(&hd).as_str()), (413, "body-too-large"));

    // Chunked (no length given): cut off at the limit.
    let mut chunked =
        b"POST /echo/echo HTTP/1.1\r\nHost: omac\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 500, "b".repeat(500)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&sock, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("x-omac-reason: body-too-large"));

    // Just under the limit passes (control: the limit is not simply "refuse bodies").
    let ok = format!("{{\"x\":\"{}\"}}", "a".repeat(900));
    let req = Request::post("/echo/echo")
        .header("host", "omac")
        .body(Full::new(Bytes::from(ok)))
        .unwrap();
    let (st, _, _) = collect(Client::connect(&sock).await.send(req).await.unwrap()).await;
    assert_eq!(st, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stop_at_the_facade() {
    let h = Harness::start(Options {
        verbose: true,
        ..Options::default()
    })
    .await;
    let mut c = Client::connect(&h.socket()).await;
    let req = Request::get("/echo/whoami")
        .header("host", "omac")
        .header("connection", "keep-alive, X-Hop-Secret")
        .header("x-hop-secret", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .header("x-forwarded-prefix", "/spoofed")
        .header("x-omac-facade-token", "never-forwarded")
        .header("x-end-to-end", "passes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, _, body) = collect(c.send(req).await.unwrap()).await;
    assert_eq!(st, 200);
    let who = json(&body);
    let seen: std::collections::HashMap<String, String> = who["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string()))
        .collect();
    for h in [
        "x-hop-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "x-omac-facade-token",
    ] {
        assert!(!seen.contains_key(h), "{h} reached the sidecar: {seen:?}");
    }
    assert_eq!(seen["x-end-to-end"], "passes");
    assert_eq!(seen["x-forwarded-prefix"], "/echo");
    assert!(seen["host"].starts_with("127.0.0.1:"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_without_secrets() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let mut c = Client::connect(&sock).await;
    let req = Request::post("/echo/echo?token=in-query")
        .header("host", "omac")
        .header("authorization", "Bearer sidecar-credential")
        .body(Full::new(Bytes::from_static(
            br#"{"body":"private-body-text"}"#,
        )))
        .unwrap();
    assert_eq!(collect(c.send(req).await.unwrap()).await.0, 200);
    assert_eq!(c.get("/nope").await.0, 404);
    let log = h.run.join("logs/facade.log");
    assert!(
        eventually(10, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2)
        .await,
        "two lines in the access log"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for bad in ["private-body-text", "sidecar-credential", "in-query"] {
        assert!(!text.contains(bad), "{bad} in the access log:\n{text}");
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let post = lines
        .iter()
        .find(|l| l["method"] == "POST")
        .expect("the POST line");
    assert_eq!(post["mount"], "echo");
    assert_eq!(post["path"], "/echo");
    assert_eq!(post["status"], 200);
    assert_eq!(post["bytes_in"], 28);
    assert!(
        post.get("reason").is_none(),
        "a complete answer has no reason: {post}"
    );
    assert!(post["bytes_out"].as_u64().unwrap() > 0);
    assert!(post["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(post["ts"].as_str().unwrap().ends_with('Z'));
    let miss = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("the 404 line");
    assert_eq!(miss["reason"], "unknown-mount");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_the_token_and_never_forwards_it() {
    let h = Harness::start(Options {
        tcp: true,
        verbose: true,
        ..Options::default()
    })
    .await;
    let f = h.facade.as_ref().unwrap();
    let addr = f.tcp_addr().expect("tcp listener");
    assert!(addr.ip().is_loopback());
    let token = f.token().unwrap().to_string();
    assert_eq!(token.len(), 64);
    let curl = |extra: Vec<String>| {
        let url = format!("http://{addr}/echo/whoami");
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
                .args(extra)
                .arg(url)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap();
            (code.to_string(), body.to_string())
        }
    };
    assert_eq!(curl(vec![]).await.0, "401");
    assert_eq!(
        curl(vec!["-H".into(), "Authorization: Bearer wrong".into()])
            .await
            .0,
        "401"
    );
    let (code, body) = curl(vec!["-H".into(), format!("Authorization: Bearer {token}")]).await;
    assert_eq!(code, "200");
    assert!(
        !body.contains(&token),
        "the token reached the sidecar: {body}"
    );
    let (code, body) = curl(vec!["-H".into(), format!("X-Omac-Facade-Token: {token}")]).await;
    assert_eq!(code, "200");
    assert!(!body.contains(&token));
    // The Unix socket needs no token.
    assert_eq!(get(&h.socket(), "/echo/status").await.0, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_states_answer_without_the_sidecar() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let cases = [
        (omac_facade::RouteState::Starting, 503, "starting"),
        (
            omac_facade::RouteState::Restarting { attempt: 1 },
            503,
            "restarting",
        ),
        (
            omac_facade::RouteState::Down { detail: "x".into() },
            503,
            "sidecar-down",
        ),
        (
            omac_facade::RouteState::Broken {
                detail: "not approved".into(),
            },
            502,
            "skill-broken",
        ),
        (
            omac_facade::RouteState::PendingCredentials {
                detail: "ECHO_API_KEY".into(),
            },
            409,
            "pending-credentials",
        ),
    ];
    let port = h.ready().await;
    for (state, code, why) in cases {
        h.routes.set_state("echo", state);
        let (st, hd, _) = get(&sock, "/echo/status").await;
        assert_eq!((st, reason(&hd).as_str()), (code, why));
    }
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port });
    assert_eq!(get(&sock, "/echo/status").await.0, 200);
    // A ready route whose port has nothing behind it: 503 sidecar-down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port: dead });
    let (st, hd, _) = get(&sock, "/echo/status").await;
    assert_eq!((st, reason(&hd).as_str()), (503, "sidecar-down"));
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port });
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_connections_are_kept_alive_and_reused() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let mut ports = std::collections::HashSet::new();
    // Sequential requests on one client connection, then on new client connections.
    let mut c = Client::connect(&sock).await;
    for _ in 0..10 {
        let (st, _, body) = c.get("/echo/whoami").await;
        assert_eq!(st, 200);
        ports.insert(json(&body)["client_port"].as_u64().unwrap());
    }
    for _ in 0..10 {
        let (_, _, body) = get(&sock, "/echo/whoami").await;
        ports.insert(json(&body)["client_port"].as_u64().unwrap());
    }
    // One connection per facade worker at most.
    assert!(
        ports.len() <= 2,
        "20 sequential requests used {} sidecar connections",
        ports.len()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_beyond_the_pool_cap_are_not_held_back() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    // More concurrent never-ending streams than the pool's soft cap (32 per worker): each
    // must still get its own sidecar connection and its first event.
    let mut tasks = Vec::new();
    for _ in 0..80 {
        let sock = sock.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&sock).await;
            let req = Request::get("/echo/tick?n=2&gap_ms=30000")
                .header("host", "omac")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let mut body = c.send(req).await.unwrap().into_body();
            let first = http_body_util::BodyExt::frame(&mut body)
                .await
                .unwrap()
                .unwrap();
            assert!(String::from_utf8_lossy(first.data_ref().unwrap()).contains("tick"));
            // Keep the stream (and the sidecar connection) open until the end of the test.
            (c, body)
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        let mut held = Vec::new();
        for t in tasks {
            held.push(t.await.unwrap());
        }
        held
    })
    .await
    .expect("every stream got its first event (none waited for another to end)");
    assert_eq!(all.len(), 80);
    drop(all);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_sidecar_closed_are_not_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A sidecar that answers one request per connection, keep-alive in words but closing
    // the connection right after: every pooled connection is stale when reused.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                // closes here
            });
        }
    });
    let h = Harness::start(Options::default()).await;
    let real = h.ready().await;
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port });
    let mut c = Client::connect(&h.socket()).await;
    for i in 0..6 {
        let (st, hd, body) = c.get("/echo/x").await;
        assert_eq!(
            (st, body.as_ref()),
            (200, &b"ok"[..]),
            "request {i}: {hd:?}"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 6,
        "a new connection each time"
    );
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port: real });
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_hanging_up_without_an_answer_gives_502() {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b).await; // take the request, answer nothing, hang up
        }
    });
    let h = Harness::start(Options::default()).await;
    let real = h.ready().await;
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port });
    let (st, hd, _) = get(&h.socket(), "/echo/status").await;
    assert_eq!((st, reason(&hd).as_str()), (502, "upstream-error"));
    h.routes
        .set_state("echo", omac_facade::RouteState::Ready { port: real });
    assert_eq!(get(&h.socket(), "/echo/status").await.0, 200);
    h.stop().await;
}
