//! SOCKS5 on the proxy's socket: curl with a domain name (socks5h over the Unix socket),
//! IPv4 and IPv6 requests, and the reply codes of refusals.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_socks5h_with_a_domain_name() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let p = Setup::new(net(&["allowed.test"], &[], false))
        .exempt(origin.addr)
        .name("allowed.test", &["127.0.0.1"])
        .start()
        .await;
    let proxy = format!("socks5h://localhost{}", p.socket.display());
    let (code, out, err) =
        curl(&["--proxy", &proxy, &format!("http://allowed.test:{port}/s")]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /s HTTP/1.1"), "{out}");
    // Refused: curl reports the SOCKS error ("not allowed by ruleset").
    let (code, _, err) = curl(&["--proxy", &proxy, &format!("http://denied.test:{port}/")]).await;
    assert_ne!(code, 0);
    assert!(
        err.to_lowercase().contains("socks") || err.contains("connection"),
        "{err}"
    );
    let ev = p.events();
    assert_eq!(ev[0].via, "socks5");
    assert!(ev[0].allow && !ev[1].allow);
    assert_eq!(ev[1].rule, "not in allowlist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_requests() {
    let v4 = Echo::start("127.0.0.1", None).await;
    let p6 = Echo::start("::1", None).await;
    let p = Setup::new(net(&["127.0.0.1", "[::1]"], &[], false))
        .exempt(v4.addr)
        .exempt(p6.addr)
        .start()
        .await;
    let (code, s) = socks(&p.socket, 1, "127.0.0.1", v4.addr.port()).await;
    assert_eq!(code, 0);
    assert_eq!(echo_through(s, b"four").await, b"four");
    let (code, s) = socks(&p.socket, 4, "::1", p6.addr.port()).await;
    assert_eq!(code, 0);
    assert_eq!(echo_through(s, b"six").await, b"six");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_codes() {
    // A port nobody listens on, exempted, so the refusal comes from the kernel: 0x05.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = Setup::new(net(&["*.test", "127.0.0.1"], &["bad.test"], false))
        .exempt(closed)
        .start()
        .await;
    assert_eq!(socks(&p.socket, 3, "bad.test", 443).await.0, 0x02);
    assert_eq!(socks(&p.socket, 3, "nxdomain.test", 443).await.0, 0x04);
    assert_eq!(
        socks(&p.socket, 1, "127.0.0.1", closed.port()).await.0,
        0x05
    );

    // BIND (0x02) and UDP ASSOCIATE (0x03): command not supported.
    for cmd in [2u8, 3] {
        let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
        s.write_all(&[5, 1, 0, 5, cmd, 0, 1, 127, 0, 0, 1, 0, 80])
            .await
            .unwrap();
        let mut r = [0u8; 12];
        s.read_exact(&mut r).await.unwrap();
        assert_eq!(&r[..2], &[5, 0]);
        assert_eq!(r[3], 0x07, "cmd {cmd}");
    }
    // An unknown address type: 0x08.
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    s.write_all(&[5, 1, 0, 5, 1, 0, 9]).await.unwrap();
    let mut r = [0u8; 12];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r[3], 0x08);
    // Only username/password offered: no acceptable method (the socket is the capability).
    let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    s.write_all(&[5, 1, 2]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [5, 0xff]);
}
