//! Attacks on the facade: malformed requests, slow clients and strangers on the socket are
//! refused, and a healthy connection running alongside is not disturbed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Status code of a raw answer ("" when the connection closed without one).
fn code(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_without_disturbing_others() {
    let h = Harness::start(Options {
        header_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let sock = h.socket();

    // A healthy stream runs the whole time.
    let healthy = {
        let sock = sock.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&sock).await;
            let req = Request::get("/echo/tick?n=10&gap_ms=200")
                .header("host", "omac")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let body = c
                .send(req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap();
            String::from_utf8_lossy(&body.to_bytes()).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;

    let huge_header = format!(
        "GET /echo/status HTTP/1.1\r\nHost: omac\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let many_headers = format!(
        "GET /echo/status HTTP/1.1\r\nHost: omac\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("dot-dot path", b"GET /../etc/passwd HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("dot-dot in a mount", b"GET /echo/../../etc/passwd HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("encoded dot-dot", b"GET /echo/%2e%2e/%2E%2e/x HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("backslash dot-dot", b"GET /echo/..\\..\\x HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("encoded NUL", b"GET /echo/a%00b HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("encoded CRLF", b"GET /echo/x%0d%0aSet-Cookie:%20a=b HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("bare CR in a header", b"GET /echo/status HTTP/1.1\r\nHost: omac\r\nX-A: a\rInjected: 1\r\n\r\n".to_vec(), &["400"]),
        ("bare LF in a header", b"GET /echo/status HTTP/1.1\r\nHost: omac\r\nX-A: a\nInjected : 1\r\n\r\n".to_vec(), &["400"]),
        ("folded header", b"GET /echo/status HTTP/1.1\r\nHost: omac\r\nX-A: a\r\n Injected: 1\r\n\r\n".to_vec(), &["400"]),
        ("space before colon", b"GET /echo/status HTTP/1.1\r\nHost : omac\r\n\r\n".to_vec(), &["400"]),
        ("CRLF in the request line", b"GET /echo/status\r\nX: y HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("garbage", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), &["400"]),
        ("huge header", huge_header.into_bytes(), &["431"]),
        ("too many headers", many_headers.into_bytes(), &["431"]),
        ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(), &["405", "400"]),
        ("asterisk form", b"OPTIONS * HTTP/1.1\r\nHost: omac\r\n\r\n".to_vec(), &["400"]),
        ("bad content length", b"POST /echo/echo HTTP/1.1\r\nHost: omac\r\nContent-Length: 5x\r\n\r\nhello".to_vec(), &["400"]),
        ("two content lengths", b"POST /echo/echo HTTP/1.1\r\nHost: omac\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), &["400"]),
    ];
    let mut tasks = Vec::new();
    for (name, bytes, want) in cases {
        let sock = sock.clone();
        tasks.push(tokio::spawn(async move {
            let answer = raw(&sock, &bytes).await;
            assert!(
                want.contains(&code(&answer)),
                "{name}: expected {want:?}, got {:?}",
                answer.lines().next()
            );
        }));
    }
    // A slow client: a byte of its head every 300 ms, past the 1 s header timeout.
    let slow = {
        let sock = sock.clone();
        tokio::spawn(async move {
            let mut s = UnixStream::connect(&sock).await.unwrap();
            let started = std::time::Instant::now();
            for b in b"GET /echo/status HTTP/1.1\r\nHost: omac\r\nX-Slow: yes\r\n\r\n" {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if started.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            (
                started.elapsed(),
                String::from_utf8_lossy(&out).into_owned(),
            )
        })
    };
    for t in tasks {
        t.await.expect("case passed");
    }
    let (took, answer) = slow.await.unwrap();
    assert!(
        !answer.contains("200 OK"),
        "the slow client was served: {answer}"
    );
    // Its head would take 17 s at this pace; the 1 s header timeout ends it long before.
    assert!(
        took < Duration::from_secs(15),
        "the slow client held on for {took:?}"
    );

    // The healthy stream got everything, and the facade still serves.
    let text = healthy.await.unwrap();
    assert_eq!(text.matches("event: tick").count(), 10, "{text}");
    assert!(text.contains("event: done"));
    assert_eq!(get(&sock, "/echo/status").await.0, 200);
    // Control: a well-formed raw request over the same helper is served.
    let ok = raw(
        &sock,
        b"GET /echo/status HTTP/1.1\r\nHost: omac\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code(&ok), "200", "{ok}");
    h.stop().await;
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// curl over the socket, as `uid` when given (needs root), printing only the status line.
async fn curl_status(socket: &std::path::Path, as_uid: Option<u32>) -> (String, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "--unix-socket"])
        .arg(socket)
        .arg("http://omac/echo/status")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    if let Some(uid) = as_uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().await.expect("curl runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_another_uid_are_refused() {
    let me = euid();
    if me == 0 {
        // Root: a real client with another uid (omactest's, 1001).
        let other = 1001;
        let h = Harness::start(Options::default()).await;
        let sock = h.socket();
        // First layer: the 0700 directory keeps it from even connecting.
        let (head, err) = curl_status(&sock, Some(other)).await;
        assert!(
            head.is_empty() && !err.is_empty(),
            "connected through a 0700 directory: {head}"
        );
        // Open the file modes so that only SO_PEERCRED stands in the way.
        std::fs::set_permissions(h.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&h.run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (head, err) = curl_status(&sock, Some(other)).await;
        assert!(
            head.starts_with("HTTP/1.1 403"),
            "uid {other} was not refused: {head}{err}"
        );
        assert!(head
            .to_ascii_lowercase()
            .contains("x-omac-reason: peer-uid"));
        assert!(
            curl_status(&sock, None).await.0.starts_with("HTTP/1.1 200"),
            "root itself is served"
        );
        h.stop().await;

        // Control: the same client is served once its uid is allowed (the mapped-uid case).
        let h = Harness::start(Options {
            allowed_uids: vec![0, other],
            ..Options::default()
        })
        .await;
        let sock = h.socket();
        std::fs::set_permissions(h.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&h.run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (head, err) = curl_status(&sock, Some(other)).await;
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "allowed uid refused: {head}{err}"
        );
        h.stop().await;
    } else {
        // Unprivileged: the reverse. A facade that allows only another uid refuses us.
        let h = Harness::start(Options {
            allowed_uids: vec![if me == 1 { 2 } else { 1 }],
            ..Options::default()
        })
        .await;
        let (head, err) = curl_status(&h.socket(), None).await;
        assert!(head.starts_with("HTTP/1.1 403"), "not refused: {head}{err}");
        assert!(head
            .to_ascii_lowercase()
            .contains("x-omac-reason: peer-uid"));
        h.stop().await;
        // Control: allowing our uid serves the same client.
        let h = Harness::start(Options {
            allowed_uids: vec![me],
            ..Options::default()
        })
        .await;
        assert!(curl_status(&h.socket(), None)
            .await
            .0
            .starts_with("HTTP/1.1 200"));
        h.stop().await;
    }
}
