//! Egress: in the blocked and filtered modes the agent has its own network namespace with
//! only `lo`, so nothing of the host's network is reachable; in the open mode Landlock still
//! scopes abstract Unix sockets. Each listener here is the test's; it must see nothing.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// The host's first non-loopback address of `v6` family, if it has one.
fn host_address(v6: bool) -> Option<IpAddr> {
    let mut out = None;
    // SAFETY: getifaddrs allocates a list freed below; only read in between.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut p = list;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() && out.is_none() {
                match (*a).sa_family as i32 {
                    libc::AF_INET if !v6 => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                        if !ip.is_loopback() {
                            out = Some(IpAddr::V4(ip));
                        }
                    }
                    libc::AF_INET6 if v6 => {
                        let sin = &*(a as *const libc::sockaddr_in6);
                        let ip = std::net::Ipv6Addr::from(sin.sin6_addr.s6_addr);
                        if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                            out = Some(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

fn tcp_refused(profile: &str, bind: SocketAddr, connect_ip: IpAddr) {
    let env = Env::new();
    let l = TcpListener::bind(bind).unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let ip = connect_ip.to_string();
    assert_safe(&env.confined(profile, &["connect-tcp", &ip, &port]));
    assert!(
        l.accept().is_err(),
        "the host listener accepted a connection from the sandbox"
    );
    assert_breach(&env.unconfined(&["connect-tcp", &ip, &port]));
}

#[test]
fn blocked_tcp_to_a_host_loopback_listener() {
    tcp_refused(
        "strict",
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    );
}

#[test]
fn blocked_tcp_to_the_host_address() {
    let ip = host_address(false).expect("the host needs a non-loopback IPv4 address");
    tcp_refused("strict", SocketAddr::new(ip, 0), ip);
}

#[test]
fn blocked_ipv6_tcp_to_host_loopback() {
    tcp_refused("strict", "[::1]:0".parse().unwrap(), "::1".parse().unwrap());
}

#[test]
fn blocked_ipv6_tcp_to_the_host_address() {
    let ip = host_address(true).expect("the host needs a global IPv6 address");
    tcp_refused("strict", SocketAddr::new(ip, 0), ip);
}

#[test]
fn filtered_tcp_to_a_host_loopback_listener() {
    tcp_refused(
        "default",
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    );
}

#[test]
fn filtered_tcp_to_the_host_address() {
    let ip = host_address(false).expect("the host needs a non-loopback IPv4 address");
    tcp_refused("default", SocketAddr::new(ip, 0), ip);
}

/// A UDP responder: answers every datagram and counts them.
fn udp_refused(bind: SocketAddr, connect_ip: IpAddr, payload: &str) {
    let env = Env::new();
    let s = UdpSocket::bind(bind).unwrap();
    let port = s.local_addr().unwrap().port().to_string();
    let responder = s.try_clone().unwrap();
    responder
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop2, seen2) = (stop.clone(), seen.clone());
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((n, from)) = responder.recv_from(&mut buf) {
                seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = responder.send_to(&buf[..n], from);
            }
        }
    });
    let ip = connect_ip.to_string();
    let inside = env.confined("strict", &["udp", &ip, &port, payload]);
    let seen_inside = seen.load(std::sync::atomic::Ordering::SeqCst);
    let outside = env.unconfined(&["udp", &ip, &port, payload]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    t.join().unwrap();
    assert_safe(&inside);
    assert_eq!(
        seen_inside, 0,
        "the host responder received a datagram from the sandbox"
    );
    assert_breach(&outside);
}

#[test]
fn blocked_udp_to_host_loopback() {
    udp_refused(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        "ping",
    );
}

#[test]
fn blocked_dns_to_a_resolver_on_the_host_address() {
    let ip = host_address(false).expect("the host needs a non-loopback IPv4 address");
    // A DNS query for omac-escape.test (type A): the responder plays the resolver.
    let query = "hex:12340100000100000000000b6f6d61632d6573636170650474657374000001000001";
    udp_refused(SocketAddr::new(ip, 0), ip, query);
}

#[test]
fn blocked_raw_ip_socket() {
    let env = Env::new();
    assert_safe(&env.confined("strict", &["socket", "2", "3", "1"]));
    assert_breach(&env.unconfined_userns(&["socket", "2", "3", "1"]));
}

#[test]
fn blocked_host_pathname_unix_socket() {
    let env = Env::new();
    let path = env.outside.join("service.sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let p = path.display().to_string();
    assert_safe(&env.confined("strict", &["connect-unix", &p]));
    assert!(l.accept().is_err());
    assert_breach(&env.unconfined(&["connect-unix", &p]));
}

fn abstract_listener(env: &Env) -> (UnixListener, String) {
    let name = format!("omac-escape-{}", env.secret);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = UnixListener::bind_addr(&addr).unwrap();
    l.set_nonblocking(true).unwrap();
    (l, format!("@{name}"))
}

#[test]
fn blocked_host_abstract_unix_socket() {
    let env = Env::new();
    let (l, name) = abstract_listener(&env);
    assert_safe(&env.confined("strict", &["connect-unix", &name]));
    assert!(l.accept().is_err());
    assert_breach(&env.unconfined(&["connect-unix", &name]));
}

#[test]
fn open_mode_host_abstract_unix_socket() {
    // The open mode shares the host's network namespace: Landlock's scope refuses it.
    let env = Env::new();
    let (l, name) = abstract_listener(&env);
    assert_safe(&env.confined("open", &["connect-unix", &name]));
    assert!(l.accept().is_err());
    assert_breach(&env.unconfined(&["connect-unix", &name]));
}

#[test]
fn open_mode_tcp_bind_outside_the_profile_ports() {
    // The open mode shares the host's network namespace: Landlock's port rules let the agent
    // listen on the profile's ports only.
    let env = Env::new();
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (granted, other) = (free(), free());
    let profile = env.profile(
        "listen",
        &format!(r#"{{"extends": "open", "network": {{"listen_port": [{granted}]}}}}"#),
    );
    assert_safe(&env.confined(&profile, &["bind-tcp", &other.to_string()]));
    // The rule is there: the granted port is not refused too.
    let o = env.confined(&profile, &["bind-tcp", &granted.to_string()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("bound 127.0.0.1:{granted}")),
        "the profile's port is refused:\n{}",
        text(&o)
    );
    assert_breach(&env.unconfined(&["bind-tcp", &other.to_string()]));
}

#[test]
fn blocked_dbus_session_bus() {
    let env = Env::new();
    let bus = env.outside.join("bus");
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile", "--print-address"])
        .arg(format!("--address=unix:path={}", bus.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon is needed (Debian package dbus-daemon)");
    // It prints its address once it listens.
    let mut first = [0u8; 16];
    let _ = daemon.stdout.as_mut().unwrap().read(&mut first);
    let b = bus.display().to_string();
    let inside = env
        .omac()
        .arg("run")
        .arg(env.bundle("strict", &["connect-unix", &b]))
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={b}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let outside = env.unconfined(&["connect-unix", &b]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_safe(&inside);
    assert_breach(&outside);
}
