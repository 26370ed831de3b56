//! Chaining through an upstream proxy: a second omac proxy (behind a TCP relay) and
//! tinyproxy with basic auth, configured by the profile or by the host's environment;
//! no_proxy bypass; upstream refusals.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_through_a_second_omac_proxy_with_no_proxy_bypass() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let echo = Echo::start("127.0.0.1", None).await;
    // The "corporate" proxy: allows allowed.test only, resolves it itself.
    let corp = Setup::new(net(&["allowed.test"], &[], false))
        .exempt(origin.addr)
        .name("allowed.test", &["127.0.0.1"])
        .start()
        .await;
    let corp_tcp = relay(&corp.socket).await;
    let mut n = net(
        &["allowed.test", "other.test", "direct.test", "sneaky.test"],
        &[],
        false,
    );
    n.upstream_proxy = Some(format!("http://corp.test:{}", corp_tcp.port()));
    n.no_proxy = vec!["direct.test".into()];
    let p = Setup::new(n)
        .exempt(echo.addr)
        .name("corp.test", &["127.0.0.1"])
        .name("direct.test", &["127.0.0.1"])
        .name("sneaky.test", &["127.0.0.1"])
        .start()
        .await;

    // CONNECT through the chain.
    let (status, head, _, mut s) = connect(&p.socket, &format!("allowed.test:{port}")).await;
    assert_eq!(status, 200, "{head}");
    s.write_all(format!("GET /chained HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (resp, _) = read_head(&mut s).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Plain forwarding through the chain: absolute form to the parent, origin form at the end.
    let bridge = relay(&p.socket).await;
    let (code, out, err) = curl(&[
        "-x",
        &format!("http://{bridge}"),
        &format!("http://allowed.test:{port}/fwd"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /fwd HTTP/1.1"), "{out}");
    // The destination was looked up here only to be checked (this host's DNS does not
    // know allowed.test, so the parent resolved it); nothing was dialled but the parent.
    assert_eq!(
        p.resolver.lookups(),
        ["allowed.test", "corp.test", "allowed.test", "corp.test"]
    );
    // A name this host's DNS puts on loopback is refused before the parent is asked:
    // the parent would dial it (on its own loopback, this machine's for a local parent).
    let before = corp.events().len();
    let (status, head, _, _) = connect(&p.socket, &format!("sneaky.test:{port}")).await;
    assert_eq!(
        (status, header(&head, "x-omac-rule").as_deref()),
        (403, Some("loopback"))
    );
    assert_eq!(corp.events().len(), before);

    // The parent refuses: 502 with X-Omac-Sandbox: upstream-error; SOCKS5: not allowed.
    let (status, head, body, _) = connect(&p.socket, &format!("other.test:{port}")).await;
    assert_eq!(status, 502, "{head}");
    assert_eq!(
        header(&head, "x-omac-sandbox").as_deref(),
        Some("upstream-error")
    );
    assert!(body.contains("403"), "{body}");
    assert_eq!(socks(&p.socket, 3, "other.test", port).await.0, 0x02);

    // no_proxy: dialled directly (resolved here, the parent sees nothing).
    let before = corp.events().len();
    let (status, _, _, s) = connect(&p.socket, &format!("direct.test:{}", echo.addr.port())).await;
    assert_eq!(status, 200);
    assert_eq!(echo_through(s, b"d").await, b"d");
    assert_eq!(corp.events().len(), before);
    assert!(p.resolver.lookups().contains(&"direct.test".to_string()));
    // The local policy still applies before anything is chained.
    let (status, head, _, _) = connect(&p.socket, &format!("unlisted.test:{port}")).await;
    assert_eq!(
        (status, header(&head, "x-omac-rule").as_deref()),
        (403, Some("not in allowlist"))
    );
    let (status, head, _, _) = connect(&p.socket, &format!("127.0.0.1:{port}")).await;
    assert_eq!(
        (status, header(&head, "x-omac-rule").as_deref()),
        (403, Some("loopback"))
    );
}

struct Tinyproxy {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn tinyproxy() -> Tinyproxy {
    let exe = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("tinyproxy is needed (Debian package tinyproxy, listed in .ci/apt-packages)");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("tp.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogLevel Critical\nLogFile \"{d}/tp.log\"\nPidFile \"{d}/tp.pid\"\nBasicAuth user s3cret\nDisableViaHeader Yes\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(exe)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Tinyproxy {
                child,
                port,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tinyproxy did not start on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_through_tinyproxy_with_basic_auth_from_the_environment() {
    let origin = Origin::start("127.0.0.1").await;
    let port = origin.addr.port();
    let mut tp = tinyproxy().await;
    // A scheme-less HTTPS_PROXY with credentials, as users set it.
    let env: HashMap<String, String> = [(
        "HTTPS_PROXY".to_string(),
        format!("user:s3cret@127.0.0.1:{}", tp.port),
    )]
    .into();
    let mut s = Setup::new(net(&["127.0.0.1"], &[], false)).exempt(origin.addr);
    s.env = env;
    let p = s.start().await;
    let (status, head, _, mut c) = connect(&p.socket, &format!("127.0.0.1:{port}")).await;
    assert_eq!(status, 200, "{head}");
    c.write_all(b"GET /via-tinyproxy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (resp, _) = read_head(&mut c).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(c);
    let bridge = relay(&p.socket).await;
    let (code, out, err) = curl(&[
        "-x",
        &format!("http://{bridge}"),
        &format!("http://127.0.0.1:{port}/fwd"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /fwd HTTP/1.1"), "{out}");
    assert!(origin
        .heads()
        .iter()
        .all(|h| !h.to_ascii_lowercase().contains("proxy-authorization")));

    // Wrong credentials: the parent's refusal (tinyproxy says 401 to CONNECT) becomes a
    // 502 that names it and where the proxy setting came from.
    let env: HashMap<String, String> = [(
        "https_proxy".to_string(),
        format!("http://user:wrong@127.0.0.1:{}", tp.port),
    )]
    .into();
    let mut s = Setup::new(net(&["127.0.0.1"], &[], false)).exempt(origin.addr);
    s.env = env;
    let p = s.start().await;
    let (status, head, body, _) = connect(&p.socket, &format!("127.0.0.1:{port}")).await;
    assert_eq!(status, 502, "{head}");
    assert_eq!(
        header(&head, "x-omac-sandbox").as_deref(),
        Some("upstream-error")
    );
    assert!(
        (body.contains("407") || body.contains("401")) && body.contains("https_proxy"),
        "{body}"
    );
    let _ = tp.child.kill().await;
}
