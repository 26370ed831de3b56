//! HTTP through the proxy: CONNECT tunnels and plain-HTTP forwarding, with curl (through a
//! TCP relay standing in for init's loopback bridge: curl's --unix-socket turns its proxy
//! off) and with a raw client on the Unix socket; refusals and their explanations.

mod common;

use common::*;
use omac_egress::audit::{Scope, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_connect_and_forwarding_to_an_allowed_domain() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let p = Setup::new(net(&["allowed.test"], &[], false))
        .exempt(origin.addr)
        .name("allowed.test", &["127.0.0.1"])
        .start()
        .await;
    let bridge = relay(&p.socket).await;
    let proxy = format!("http://{bridge}");

    // CONNECT (curl -p tunnels even plain http through CONNECT).
    let url = format!("http://allowed.test:{port}/tunnelled");
    let (code, out, err) = curl(&["-p", "-x", &proxy, &url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /tunnelled HTTP/1.1"), "{out}");

    // Absolute-URI forwarding: origin-form upstream, Host from the URI, hop-by-hop,
    // Connection-named and Proxy-* headers dropped.
    let url = format!("http://allowed.test:{port}/fwd?q=1");
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0",
        "-H",
        "Connection: x-hop",
        "-H",
        "X-Hop: secret",
        "-H",
        "X-Kept: 1",
        "-D",
        "-",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /fwd?q=1 HTTP/1.1"), "{out}");
    assert!(
        out.contains(&format!("host: allowed.test:{port}"))
            || out.contains(&format!("Host: allowed.test:{port}")),
        "{out}"
    );
    assert!(out.contains("X-Kept: 1"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(!lower.contains("proxy-authorization"), "{out}");
    assert!(!lower.contains("proxy-connection"), "{out}");
    assert!(!lower.contains("x-hop: secret"), "{out}");
    // The origin's hop-by-hop Keep-Alive is not passed back to the client.
    assert!(
        lower.contains("x-origin: yes") && !lower.contains("keep-alive: timeout"),
        "{out}"
    );

    let ev = p.events();
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .all(|e| e.allow && e.source == Source::Allowlist && e.scope == Scope::Policy));
    assert_eq!((ev[0].via, ev[1].via), ("http-connect", "http-forward"));
    assert_eq!(ev[0].host, "allowed.test");
    assert_eq!(ev[0].port, port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_connect_tunnel_carries_bytes_both_ways_and_half_closes() {
    let echo = Echo::start("127.0.0.1", Some(b"HELLO\n")).await;
    let p = Setup::new(net(&["*.svc.test"], &[], false))
        .exempt(echo.addr)
        .name("echo.svc.test", &["127.0.0.1"])
        .start()
        .await;
    let (status, head, early, s) =
        connect(&p.socket, &format!("echo.svc.test:{}", echo.addr.port())).await;
    assert_eq!(status, 200, "{head}");
    // A server that speaks first (as sshd does), then echoes what the client sent after
    // the client's half-close.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut got = early.into_bytes();
    got.extend(echo_through(s, &payload).await);
    assert_eq!(&got[..6], b"HELLO\n");
    assert_eq!(got.len(), 6 + payload.len());
    assert!(got[6..] == payload[..], "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_domain_gets_a_403_that_says_host_rule_and_fix() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let p = Setup::new(net(&["allowed.test"], &["blocked.test"], false))
        .exempt(origin.addr)
        .name("other.test", &["127.0.0.1"])
        .name("blocked.test", &["127.0.0.1"])
        .start()
        .await;
    let profile = p.profile_file.display().to_string();

    let (status, head, body, _) = connect(&p.socket, &format!("other.test:{port}")).await;
    assert_eq!(status, 403);
    assert_eq!(header(&head, "x-omac-sandbox").as_deref(), Some("denied"));
    assert_eq!(
        header(&head, "x-omac-rule").as_deref(),
        Some("not in allowlist")
    );
    assert!(body.contains(&format!("other.test:{port}")), "{body}");
    assert!(body.contains("rule: not in allowlist"), "{body}");
    assert!(
        body.contains(&format!(
            "add \"other.test\" to network.allow_domain in {profile}"
        )),
        "{body}"
    );

    let (status, head, body, _) = connect(&p.socket, &format!("blocked.test:{port}")).await;
    assert_eq!(status, 403);
    assert_eq!(header(&head, "x-omac-rule").as_deref(), Some("deny_domain"));
    assert!(
        body.contains(&format!(
            "remove \"blocked.test\" from network.deny_domain in {profile}"
        )),
        "{body}"
    );
    // A deny_domain refusal needs no DNS lookup.
    assert!(!p.resolver.lookups().contains(&"blocked.test".to_string()));

    // Through curl's plain forwarding the body reaches the user.
    let bridge = relay(&p.socket).await;
    let (code, out, _) = curl(&[
        "-x",
        &format!("http://{bridge}"),
        "-D",
        "-",
        &format!("http://other.test:{port}/"),
    ])
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("x-omac-sandbox: denied"), "{out}");
    assert!(out.contains("to allow it: add \"other.test\""), "{out}");
    assert!(origin.heads().is_empty(), "nothing reached the origin");
    let ev = p.events();
    assert!(ev.iter().all(|e| !e.allow));
    assert_eq!(ev[0].rule, "not in allowlist");
    assert_eq!(ev[1].source, Source::Blocklist);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_clearly() {
    let p = Setup::new(net(&[], &[], false)).start().await;
    // An origin-form request: the proxy is not a web server.
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut s).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // https:// in absolute form must use CONNECT.
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    s.write_all(b"GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut s).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-omac-rule: unsupported"),
        "{head}"
    );
    // A numeric "name" that inet_aton would read as 127.0.0.1, and port 0.
    for target in ["2130706433:80", "0x7f000001:80", "a.test:0"] {
        let (status, head, body, _) = connect(&p.socket, target).await;
        assert_eq!(status, 400, "{target}: {head}");
        assert!(body.contains("rule: invalid target"), "{body}");
    }
    // SOCKS4 is answered in its own format, not parsed as HTTP.
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    s.write_all(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).await.unwrap();
    let mut r = [0u8; 8];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r[1], 0x5b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_connections_serve_several_requests() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let p = Setup::new(net(&["a.test", "b.test"], &[], false))
        .exempt(origin.addr)
        .name("a.test", &["127.0.0.1"])
        .name("b.test", &["127.0.0.1"])
        .start()
        .await;
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    for (i, h) in ["a.test", "b.test", "c.test", "a.test"].iter().enumerate() {
        let req = format!("GET http://{h}:{port}/r{i} HTTP/1.1\r\nHost: {h}:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, mut rest) = read_head(&mut s).await.unwrap();
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        while rest.len() < len {
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).await.unwrap();
            rest.extend_from_slice(&b[..n]);
        }
        if *h == "c.test" {
            assert!(head.starts_with("HTTP/1.1 403"), "{head}");
        } else {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(String::from_utf8_lossy(&rest).contains(&format!("GET /r{i} ")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_not_stolen() {
    use std::os::unix::fs::PermissionsExt;
    let p = Setup::new(net(&[], &[], false)).start().await;
    let mode = std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second proxy on the same live socket is refused.
    let again = omac_egress::Builder::new(
        net(&[], &[], false),
        omac_egress::ProfileRef {
            name: "x".into(),
            file: None,
            user_dir: None,
        },
    )
    .bind(&p.socket);
    assert!(again.is_err());
    // A regular file in the way is not deleted.
    let file = p.dir.path().join("file.sock");
    std::fs::write(&file, "keep").unwrap();
    let b = omac_egress::Builder::new(
        net(&[], &[], false),
        omac_egress::ProfileRef {
            name: "x".into(),
            file: None,
            user_dir: None,
        },
    );
    assert!(b.bind(&file).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // A stale socket (nobody listening) is replaced; shutdown removes it.
    let sock = p.socket.clone();
    let dir = p.stop().await;
    assert!(!sock.exists());
    let stale = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    drop(stale);
    let h = omac_egress::Builder::new(
        net(&[], &[], false),
        omac_egress::ProfileRef {
            name: "x".into(),
            file: None,
            user_dir: None,
        },
    )
    .bind(&sock)
    .unwrap()
    .spawn();
    assert!(tokio::net::UnixStream::connect(&sock).await.is_ok());
    h.shutdown().await;
    drop(dir);
}
