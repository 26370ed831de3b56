//! The hard deny attacked: IP literals and names resolving to loopback, link-local,
//! metadata, private, unspecified and the IPv6 forms embedding them; DNS rebinding. Each
//! refusal is checked against a listener that counts connections, and the same listener is
//! reached once unconfined (directly, and through the proxy with an explicit test
//! exemption) to prove the probe would notice a breach.

mod common;

use common::*;
use omac_egress::audit::Source;

/// Every listed host is in allow_domain, so only the hard deny can refuse.
const ALLOW_ALL: &[&str] = &[
    "*.test",
    "localhost",
    "metadata.google.internal",
    "metadata.azure.internal",
    "127.0.0.1",
    "127.0.0.9",
    "[::1]",
    "169.254.169.254",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "[::ffff:127.0.0.9]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::7f00:9]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:7f00:9::1]",
    "10.1.2.3",
    "192.168.0.1",
    "0.0.0.0",
    "[::]",
    "224.0.0.1",
    "255.255.255.255",
    "[fe80::1]",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_and_names_of_forbidden_addresses_are_refused_by_every_protocol() {
    // The probe: a listener on 127.0.0.9 that counts connections.
    let probe = Echo::start("127.0.0.9", None).await;
    let port = probe.addr.port();
    let p = Setup::new(net(ALLOW_ALL, &[], false))
        .name("lo.test", &["127.0.0.9"])
        .name("lo6.test", &["::1"])
        .name("ll.test", &["169.254.7.7"])
        .name("meta.test", &["169.254.169.254"])
        .name("meta6.test", &["fd00:ec2::254"])
        .name("alibaba.test", &["100.100.100.200"])
        .name("priv.test", &["192.168.1.20"])
        .name("cgnat.test", &["100.64.3.3"])
        .name("ula.test", &["fd12:3456::1"])
        .name("mapped.test", &["::ffff:127.0.0.9"])
        .name("nat64.test", &["64:ff9b::7f00:9"])
        .name("sixtofour.test", &["2002:7f00:9::1"])
        .name("compat.test", &["::127.0.0.9"])
        .name("zero.test", &["0.0.0.0"])
        .name("mixed.test", &["203.0.113.7", "127.0.0.9"])
        .start()
        .await;
    let cases: &[(&str, &str)] = &[
        ("127.0.0.9", "loopback"),
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("localhost", "loopback"),
        ("app.localhost", "loopback"),
        ("[::ffff:127.0.0.9]", "loopback"),
        ("[64:ff9b::7f00:9]", "loopback"),
        ("[2002:7f00:9::1]", "loopback"),
        ("169.254.169.254", "metadata"),
        ("[::ffff:169.254.169.254]", "metadata"),
        ("[64:ff9b::a9fe:a9fe]", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("100.100.100.200", "metadata"),
        ("metadata.google.internal", "metadata"),
        ("metadata.azure.internal", "metadata"),
        ("[fe80::1]", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "multicast"),
        ("lo.test", "loopback"),
        ("lo6.test", "loopback"),
        ("ll.test", "link-local"),
        ("meta.test", "metadata"),
        ("meta6.test", "metadata"),
        ("alibaba.test", "metadata"),
        ("priv.test", "private"),
        ("cgnat.test", "private"),
        ("ula.test", "private"),
        ("mapped.test", "loopback"),
        ("nat64.test", "loopback"),
        ("sixtofour.test", "loopback"),
        ("compat.test", "loopback"),
        ("zero.test", "unspecified"),
        ("mixed.test", "loopback"),
    ];
    for (host, rule) in cases {
        let target = format!("{host}:{port}");
        let (status, head, body, _) = connect(&p.socket, &target).await;
        assert_eq!(status, 403, "CONNECT {target}: {head}");
        assert_eq!(
            header(&head, "x-omac-rule").as_deref(),
            Some(*rule),
            "{target}: {body}"
        );
        if *rule == "private" {
            assert!(body.contains("network.allow_private"), "{body}");
        }
        // SOCKS5: by name (or by address for literals), reply 0x02.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let atyp = if bare.parse::<std::net::Ipv4Addr>().is_ok() {
            1
        } else if bare.parse::<std::net::Ipv6Addr>().is_ok() {
            4
        } else {
            3
        };
        let (code, _) = socks(&p.socket, atyp, bare, port).await;
        assert_eq!(code, 0x02, "SOCKS5 {target}");
    }
    // Plain forwarding too.
    let bridge = relay(&p.socket).await;
    for host in ["127.0.0.9", "lo.test", "[::ffff:127.0.0.9]"] {
        let (code, out, _) = curl(&[
            "-x",
            &format!("http://{bridge}"),
            "-D",
            "-",
            &format!("http://{host}:{port}/"),
        ])
        .await;
        assert_eq!(code, 0);
        assert!(out.starts_with("HTTP/1.1 403"), "{host}: {out}");
    }
    assert_eq!(probe.count(), 0, "a refused destination was connected to");
    assert!(p
        .events()
        .iter()
        .all(|e| !e.allow && e.source == Source::HardDeny));

    // The unconfined counterpart: the probe does count a connection made directly...
    drop(direct(probe.addr).await);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(probe.count(), 1);
    // ...and one the proxy makes when (and only when) a test exempts it explicitly.
    let exempt = Setup::new(net(ALLOW_ALL, &[], false))
        .exempt(probe.addr)
        .name("lo.test", &["127.0.0.9"])
        .start()
        .await;
    let (status, _, _, s) = connect(&exempt.socket, &format!("lo.test:{port}")).await;
    assert_eq!(status, 200);
    assert_eq!(echo_through(s, b"ping").await, b"ping");
    assert_eq!(probe.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_cannot_reach_loopback() {
    // 127.0.0.2 plays the public server (exempted), 127.0.0.3 the internal one.
    let public = Echo::start("127.0.0.2", Some(b"public\n")).await;
    let l = tokio::net::TcpListener::bind(("127.0.0.3", public.addr.port())).await;
    let internal = match l {
        Ok(l) => Echo::on(l, Some(b"internal\n")),
        Err(_) => Echo::start("127.0.0.3", Some(b"internal\n")).await,
    };
    let p = Setup::new(net(&["rebind.test"], &[], false))
        .exempt(public.addr)
        .start()
        .await;
    // The first answer is "public", every later one points inside.
    p.resolver
        .answer("rebind.test", &["127.0.0.2".parse().unwrap()])
        .answer("rebind.test", &["127.0.0.3".parse().unwrap()]);
    let target = format!("rebind.test:{}", public.addr.port());
    let (status, _, early, s) = connect(&p.socket, &target).await;
    assert_eq!(status, 200);
    let mut got = early.into_bytes();
    got.extend(echo_through(s, b"x").await);
    assert_eq!(got, b"public\nx");
    // One lookup for one request: the connection went to the checked, pinned address.
    assert_eq!(p.resolver.lookups(), ["rebind.test"]);
    // The rebound answer is checked like any other and refused.
    for _ in 0..3 {
        let (status, head, _, _) = connect(&p.socket, &target).await;
        assert_eq!(status, 403);
        assert_eq!(header(&head, "x-omac-rule").as_deref(), Some("loopback"));
    }
    if internal.addr.port() == public.addr.port() {
        let (code, _) = socks(&p.socket, 3, "rebind.test", public.addr.port()).await;
        assert_eq!(code, 0x02);
    }
    assert_eq!(internal.count(), 0, "the internal service was reached");
    assert_eq!(public.count(), 1);
    assert_eq!(
        p.resolver.lookups().len(),
        4 + usize::from(internal.addr.port() == public.addr.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ranges_open_only_where_allow_private_says_and_host_addresses_never() {
    let mut n = net(&["*.corp.test"], &[], false);
    n.allow_private = vec!["10.20.0.0/16".into()];
    let own: Vec<std::net::IpAddr> = omac_egress::ifaddrs::read()
        .into_iter()
        .filter(|a| !a.is_loopback())
        .collect();
    let mut s = Setup::new(n)
        .name("git.corp.test", &["10.20.1.5"])
        .name("db.corp.test", &["10.21.0.5"]);
    if let Some(a) = own.first() {
        s = s.name("me.corp.test", &[&a.to_string()]);
    }
    let p = s.start().await;
    let policy = p.handle.as_ref().unwrap().policy().clone();
    // Allowed by the policy: the route is the pinned private address (not connected here:
    // the address is not on this machine's network).
    let r = policy.check("git.corp.test", 443, "test").await.unwrap();
    assert_eq!(
        r,
        omac_egress::policy::Route::Direct(vec!["10.20.1.5:443".parse().unwrap()])
    );
    let d = policy.check("db.corp.test", 443, "test").await.unwrap_err();
    assert_eq!(d.rule.name(), "private");
    assert!(
        d.fix
            .contains("add \"10.21.0.5/32\" (or its whole range) to network.allow_private in"),
        "{}",
        d.fix
    );
    if let Some(a) = own.first() {
        let d = policy.check("me.corp.test", 443, "test").await.unwrap_err();
        assert_eq!(d.rule.name(), "host-address", "{a}");
    }
}
