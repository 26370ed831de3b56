//! The filtered network end to end, from inside real sessions (`omac start` in filtered
//! mode, headless): an allowed domain through CONNECT (plain and TLS) and through
//! plain-HTTP forwarding; the 403 of a denied one and what it says; IP literals and names
//! that lead to loopback, link-local, metadata or the host's own addresses refused, with a
//! listener on each proving that it received nothing; clients that ignore the proxy, UDP
//! and raw sockets; SOCKS5; git over SSH through `omac connect`; the prompt flows with the
//! stub backend; one session's proxy out of another's reach; and the audit events of every
//! decision.
//!
//! Every refusal is paired with a positive control (the same path allowed in the same
//! session, or the same probe run unconfined) so that a refusal test would notice a breach.
//! Traffic goes only to listeners on loopback, the host's own address, or addresses added
//! to `lo` in a network namespace the test creates (`unshare -rn`).

mod sessionkit;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::*;

/// A TCP listener on the host counting the connections it accepts; each gets an HTTP 200
/// with `body`.
struct Counted {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Counted {
    /// The connections accepted, once the count has stayed still for 300 ms: a connection
    /// the proxy made may wait in the listen queue after its client has its answer (a
    /// CONNECT's 200 comes when the connection is made, not when it is accepted).
    fn hits(&self) -> usize {
        let mut last = self.hits.load(Ordering::SeqCst);
        let mut still = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(25));
            let now = self.hits.load(Ordering::SeqCst);
            if now != last {
                last = now;
                still = Instant::now();
            } else if still.elapsed() >= Duration::from_millis(300) {
                return now;
            }
        }
    }
}

fn counted(ip: IpAddr, body: &'static str) -> Counted {
    counted_at(SocketAddr::new(ip, 0), body)
}

fn counted_at(addr: SocketAddr, body: &'static str) -> Counted {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Counted { port, hits }
}

/// The host's first global IPv4 address (the proxy's "host's own address").
fn host_ipv4() -> Option<IpAddr> {
    let o = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        w.find(|x| *x == "inet")?;
        w.next()?.split('/').next()?.parse().ok()
    })
}

/// `omac start --profile PROFILE --inner sh -- -c SCRIPT` on `h`, headless.
fn start(h: &Host, profile: &str, script: &str) -> Output {
    h.omac()
        .args([
            "start",
            "--profile",
            profile,
            "--inner",
            "sh",
            "--",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

/// A command with the same clean environment as `h.omac()`, for wrappers around omac.
fn host_cmd(h: &Host, prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.current_dir(&h.work)
        .env_clear()
        .env("HOME", &h.home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("PWD", &h.work)
        .stdin(Stdio::null());
    for (k, v) in &h.vars {
        c.env(k, v);
    }
    c
}

/// The audit log's `net.decision` events.
fn decisions(h: &Host) -> Vec<serde_json::Value> {
    h.audit()
        .into_iter()
        .filter(|e| e["type"] == "net.decision")
        .collect()
}

/// Whether a `net.decision` for `host` (and `port`, unless 0) with `allow` was logged,
/// with every `(field, value)` of `also`.
fn logged(
    ds: &[serde_json::Value],
    host: &str,
    port: u16,
    allow: bool,
    also: &[(&str, &str)],
) -> bool {
    ds.iter().any(|d| {
        d["host"] == host
            && (port == 0 || d["port"] == port)
            && d["allow"] == allow
            && also.iter().all(|(k, v)| d[*k] == *v)
    })
}

/// A shell function for the scripts run inside: `t NAME URL` tries URL through the proxy
/// by forwarding, by a CONNECT tunnel and by SOCKS5 (proxy exceptions switched off, so
/// that loopback goes to the proxy too), and prints `NAME fwd=CODE tun=CODE socks=EXIT`;
/// the forwarded answer's body goes to `out/NAME`.
const PROBE: &str = r#"mkdir -p out
t() {
  f=$(curl -g -s -m 15 --noproxy '' -o "out/$1" -w '%{http_code}' "$2")
  c=$(curl -g -s -m 15 --noproxy '' -p -o /dev/null -w '%{http_connect}' "$2")
  curl -g -s -m 15 --noproxy '' -x "$ALL_PROXY" -o /dev/null "$2"; s=$?
  echo "$1 fwd=$f tun=$c socks=$s"
}
"#;

/// The `t` lines of an output: name -> (fwd, tun, socks).
fn probes(o: &Output) -> std::collections::HashMap<String, (String, String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let f = w.next()?.strip_prefix("fwd=")?.to_string();
            let c = w.next()?.strip_prefix("tun=")?.to_string();
            let s = w.next()?.strip_prefix("socks=")?.to_string();
            Some((name, (f, c, s)))
        })
        .collect()
}

/// Asserts that probe `name` was refused three ways, its 403 body naming `rule`.
fn assert_refused(h: &Host, o: &Output, name: &str, rule: &str) {
    let p = probes(o);
    let Some((f, c, s)) = p.get(name) else {
        panic!("probe {name} did not run: {}", text(o));
    };
    assert_eq!(f, "403", "{name}: forwarded: {}", text(o));
    assert_eq!(c, "403", "{name}: CONNECT: {}", text(o));
    assert_ne!(s, "0", "{name}: SOCKS5 went through: {}", text(o));
    let body = std::fs::read_to_string(h.work.join("out").join(name)).unwrap_or_default();
    assert!(
        body.contains(&format!("rule: {rule}:")),
        "{name}: the 403 names rule {rule}: {body}"
    );
}

/// Asserts that probe `name` got through all three ways.
fn assert_through(o: &Output, name: &str) {
    let p = probes(o);
    assert_eq!(
        p.get(name),
        Some(&("200".to_string(), "200".to_string(), "0".to_string())),
        "{name}: {}",
        text(o)
    );
}

/// A profile `tests` extending the default (filtered, prompt off) with `allow` added to
/// the allowlist.
fn allow_profile(h: &Host, allow: &[&str]) {
    h.profile(
        "tests",
        &serde_json::json!({
            "extends": "default",
            "network": {"allow_domain": allow, "network_prompt": {"enabled": false}}
        })
        .to_string(),
    );
}

/// Self-signed certificate and key for `name` in `dir` (cert.pem, key.pem).
fn certificate(dir: &Path, name: &str) {
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(o.status.success(), "{}", text(&o));
}

/// A TLS server (`openssl s_server -www`) on 127.0.0.1 with `dir`'s certificate.
struct Tls {
    child: std::process::Child,
    port: u16,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server(dir: &Path) -> Tls {
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Tls { child, port }
}

#[test]
fn an_allowed_domain_goes_through_connect_tls_and_forwarding_a_denied_one_gets_the_403() {
    let mut h = Host::new();
    let allowed = counted(IpAddr::from([127, 0, 0, 1]), "allowed-body");
    let other = counted(IpAddr::from([127, 0, 0, 1]), "other-body");
    certificate(&h.work, "allowed.test");
    let tls = tls_server(&h.work);
    allow_profile(&h, &["allowed.test"]);
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "allowed.test=127.0.0.1,other.test=127.0.0.1",
    );
    // Every listener is reachable for the proxy: only the policy stands between the
    // sandbox and other.test.
    h.var(
        "OMAC_TEST_EGRESS_EXEMPT",
        format!(
            "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            allowed.port, other.port, tls.port
        ),
    );
    let (a, d, t) = (allowed.port, other.port, tls.port);
    let o = start(
        &h,
        "tests",
        &format!(
            "echo fwd=$(curl -s -m 10 http://allowed.test:{a}/)
             echo tun=$(curl -s -m 10 -p http://allowed.test:{a}/)
             echo tls=$(curl -s -m 10 --cacert cert.pem https://allowed.test:{t}/ | grep -q s_server && echo served)
             echo tls_verified=$(curl -s -m 10 -o /dev/null -w '%{{ssl_verify_result}}' --cacert cert.pem https://allowed.test:{t}/)
             echo denied=$(curl -s -m 10 -o denied.body -w '%{{http_code}}' http://other.test:{d}/)
             echo denied_header=$(curl -s -m 10 -D - -o /dev/null http://other.test:{d}/ | tr -d '\\r' | sed -n 's/^[Xx]-[Oo]mac-[Ss]andbox: //p')
             echo denied_tun=$(curl -s -m 10 -p -o /dev/null -w '%{{http_connect}}' http://other.test:{d}/)
             echo denied_tls=$(curl -s -m 10 -o /dev/null -w '%{{http_connect}}' https://other.test:{d}/)
             echo https_forward=$(curl -s -m 10 --noproxy '*' -o https.body -w '%{{http_code}}' --request-target https://allowed.test:{t}/ http://127.0.0.1:29171/)"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["fwd"], "allowed-body", "{}", text(&o));
    assert_eq!(r["tun"], "allowed-body", "{}", text(&o));
    // The TLS session is the server's own, verified against its certificate: the proxy
    // tunnels it untouched.
    assert_eq!(r["tls"], "served", "{}", text(&o));
    assert_eq!(r["tls_verified"], "0", "{}", text(&o));
    assert_eq!(r["denied"], "403", "{}", text(&o));
    assert_eq!(r["denied_header"], "denied", "{}", text(&o));
    assert_eq!(r["denied_tun"], "403", "{}", text(&o));
    assert_eq!(r["denied_tls"], "403", "{}", text(&o));
    // https:// sent for forwarding is refused (CONNECT is the way), explained and audited.
    assert_eq!(r["https_forward"], "400", "{}", text(&o));
    let https = std::fs::read_to_string(h.work.join("https.body")).unwrap();
    assert!(https.contains("rule: unsupported:"), "{https}");
    assert!(https.contains("CONNECT"), "{https}");
    assert_eq!(allowed.hits(), 2, "forwarding and the tunnel");
    assert_eq!(other.hits(), 0, "the denied host received nothing");

    let body = std::fs::read_to_string(h.work.join("denied.body")).unwrap();
    let profile = h.work.join(".omac/profiles/tests.json");
    assert!(
        body.contains(&format!("the connection to other.test:{d} was refused")),
        "{body}"
    );
    assert!(body.contains("rule: not in allowlist:"), "{body}");
    assert!(
        body.contains(&format!(
            "to allow it: add \"other.test\" to network.allow_domain in {}",
            profile.display()
        )),
        "{body}"
    );

    let ds = decisions(&h);
    // One event per request the proxy decided, no more, no less: nine curl requests, four
    // of them allowed.
    assert_eq!(ds.len(), 9, "{ds:?}");
    assert_eq!(
        ds.iter().filter(|d| d["allow"] == true).count(),
        4,
        "{ds:?}"
    );
    for (port, via) in [
        (a, "http-forward"),
        (a, "http-connect"),
        (t, "http-connect"),
    ] {
        assert!(
            logged(&ds, "allowed.test", port, true, &[("via", via)]),
            "{via}: {ds:?}"
        );
    }
    assert!(
        logged(
            &ds,
            "other.test",
            d,
            false,
            &[("rule", "not in allowlist"), ("via", "http-forward")]
        ),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "other.test", d, false, &[("via", "http-connect")]),
        "{ds:?}"
    );
    assert!(
        logged(
            &ds,
            "allowed.test",
            t,
            false,
            &[("via", "http-forward"), ("rule", "unsupported")]
        ),
        "{ds:?}"
    );
    // The same denied listener answers when asked directly: it would have counted a breach.
    let got = Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg(format!("http://127.0.0.1:{d}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "other-body");
    assert_eq!(other.hits(), 1);
}

#[test]
fn literals_and_names_leading_to_loopback_or_the_host_are_refused_and_reach_nothing() {
    let mut h = Host::new();
    let lo = IpAddr::from([127, 0, 0, 1]);
    let control = counted(lo, "control-body");
    let target = counted(lo, "loopback-body");
    let v6 = TcpListener::bind("[::1]:0")
        .ok()
        .map(|l| {
            let a = l.local_addr().unwrap();
            drop(l);
            counted_at(a, "v6-body")
        })
        .or_else(|| {
            eprintln!("skipping the [::1] case: IPv6 loopback cannot be bound here");
            None
        });
    let host_ip = host_ipv4();
    let on_host = host_ip.map(|ip| counted(ip, "host-body"));
    if host_ip.is_none() {
        eprintln!("skipping the host-address cases: this machine has no global IPv4 address");
    }
    allow_profile(&h, &["allowed.test", "lo.test", "host.test", "lo6.test"]);
    let mut names = "allowed.test=127.0.0.1,lo.test=127.0.0.1,lo6.test=::1".to_string();
    if let Some(ip) = host_ip {
        names.push_str(&format!(",host.test={ip}"));
    }
    h.var("OMAC_TEST_EGRESS_RESOLVE", names);
    h.var(
        "OMAC_TEST_EGRESS_EXEMPT",
        format!("127.0.0.1:{}", control.port),
    );
    let (c, p) = (control.port, target.port);
    let mut script = format!(
        "{PROBE}
         t control http://allowed.test:{c}/
         t v4 http://127.0.0.1:{p}/
         t mapped http://[::ffff:127.0.0.1]:{p}/
         t nat64 http://[64:ff9b::7f00:1]:{p}/
         t nat64local http://[64:ff9b:1::7f00:1]:{p}/
         t decimal http://2130706433:{p}/
         t localhost http://localhost:{p}/
         t name http://lo.test:{p}/
         t unspecified http://0.0.0.0:{p}/
         t compat http://[::127.0.0.1]:{p}/
         t sixtofour http://[2002:7f00:1::1]:{p}/
         t dotted http://localhost.:{p}/
         t sublocal http://api.LocalHost:{p}/
         t upper http://LO.TEST:{p}/
         t trailing http://lo.test.:{p}/
        "
    );
    if let Some(v6) = &v6 {
        script.push_str(&format!(
            "t v6 http://[::1]:{0}/\nt name6 http://lo6.test:{0}/\n",
            v6.port
        ));
    }
    if let (Some(ip), Some(l)) = (host_ip, &on_host) {
        let q = l.port;
        script.push_str(&format!(
            "t hostip http://{ip}:{q}/\nt hostmapped http://[::ffff:{ip}]:{q}/\nt hostname http://host.test:{q}/\n"
        ));
    }
    let o = start(&h, "tests", &script);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The same session reaches an allowed name on an (exempt) loopback listener three ways.
    assert_through(&o, "control");
    assert_eq!(control.hits(), 3);
    for name in [
        "v4",
        "mapped",
        "nat64",
        "nat64local",
        "localhost",
        "name",
        "compat",
        "sixtofour",
        "dotted",
        "sublocal",
        "upper",
        "trailing",
    ] {
        assert_refused(&h, &o, name, "loopback");
    }
    // "2130706433" is refused as a numeric name, or, when curl turned it into 127.0.0.1
    // first, as loopback.
    let p_ = probes(&o);
    assert_eq!(p_["decimal"].0, "403", "{}", text(&o));
    assert_eq!(p_["unspecified"].0, "403", "{}", text(&o));
    assert_refused(&h, &o, "unspecified", "unspecified");
    if v6.is_some() {
        assert_refused(&h, &o, "v6", "loopback");
        assert_refused(&h, &o, "name6", "loopback");
    }
    if on_host.is_some() {
        for name in ["hostip", "hostmapped", "hostname"] {
            assert_refused(&h, &o, name, "host-address");
        }
    }
    assert_eq!(target.hits(), 0, "the loopback listener was reached");
    if let Some(v6) = &v6 {
        assert_eq!(v6.hits(), 0, "the [::1] listener was reached");
    }
    if let Some(l) = &on_host {
        assert_eq!(l.hits(), 0, "the host-address listener was reached");
    }
    let ds = decisions(&h);
    assert!(
        logged(
            &ds,
            "lo.test",
            p,
            false,
            &[("rule", "loopback"), ("source", "hard-deny")]
        ),
        "{ds:?}"
    );
    for via in ["http-forward", "http-connect", "socks5"] {
        assert!(
            logged(
                &ds,
                "127.0.0.1",
                p,
                false,
                &[("rule", "loopback"), ("via", via)]
            ),
            "{via}: {ds:?}"
        );
    }
    // Each listener answers when asked directly, unconfined.
    let mut direct = vec![(format!("http://127.0.0.1:{p}/"), &target)];
    if let (Some(ip), Some(l)) = (host_ip, &on_host) {
        direct.push((format!("http://{ip}:{}/", l.port), l));
    }
    if let Some(v6) = &v6 {
        direct.push((format!("http://[::1]:{}/", v6.port), v6));
    }
    for (url, l) in direct {
        let got = Command::new("curl")
            .args(["-g", "-s", "-m", "5", "--noproxy", "*", &url])
            .output()
            .unwrap();
        assert!(got.status.success(), "{url}");
        assert_eq!(l.hits(), 1, "{url}");
    }
}

/// Listens on the given `ADDR:PORT`s, appends the listening address to `argv[1]` for each
/// connection accepted and answers it with an HTTP 200; touches `argv[2]` when ready.
const NETNS_LISTENER: &str = r#"import socket, sys, threading
log, ready = sys.argv[1], sys.argv[2]
def serve(s, name):
    while True:
        c, _ = s.accept()
        with open(log, "a") as f:
            f.write(name + "\n")
        try:
            c.settimeout(5)
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass
        c.close()
for spec in sys.argv[3:]:
    host, port = spec.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    threading.Thread(target=serve, args=(s, spec), daemon=True).start()
open(ready, "w").close()
threading.Event().wait()
"#;

#[test]
fn metadata_and_link_local_addresses_are_refused_with_real_listeners_on_them() {
    // The addresses exist only in a network namespace of the test's own (`unshare -rn`,
    // as root or not), where the whole session runs: listeners on 169.254.169.254:80,
    // 100.100.100.200:80, 169.254.1.1:8080 and [fd00:ec2::254]:80 could be reached by the
    // proxy if it ever dialled them.
    let mut h = Host::new();
    allow_profile(&h, &["allowed.test", "md.test", "ll.test", "md6.test"]);
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "allowed.test=127.0.0.1,md.test=169.254.169.254,ll.test=169.254.1.1,md6.test=fd00:ec2::254",
    );
    h.var("OMAC_TEST_EGRESS_EXEMPT", "127.0.0.1:8081");
    std::fs::write(h.root.join("listen.py"), NETNS_LISTENER).unwrap();
    let inner = format!(
        "{PROBE}
         t control http://allowed.test:8081/
         t md http://169.254.169.254/
         t mdname http://md.test/
         t mdmapped http://[::ffff:169.254.169.254]/
         t mdnat64 http://[64:ff9b::a9fe:a9fe]/
         t mdgoogle http://metadata.google.internal/
         t alibaba http://100.100.100.200/
         t ll http://169.254.1.1:8080/
         t llname http://ll.test:8080/
         t llmapped http://[::ffff:169.254.1.1]:8080/
         t md6 http://[fd00:ec2::254]/
         t md6name http://md6.test/
        "
    );
    let root = h.root.display().to_string();
    let wrapper = format!(
        r#"set -e
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
ip addr add 100.100.100.200/32 dev lo
ip addr add 169.254.1.1/32 dev lo
v6=
if ip -6 addr add fd00:ec2::254/128 dev lo nodad 2>/dev/null; then v6='[fd00:ec2::254]:80'; fi
python3 {root}/listen.py {root}/hits.log {root}/ready 127.0.0.1:8081 169.254.169.254:80 100.100.100.200:80 169.254.1.1:8080 $v6 &
lp=$!
n=0; while [ ! -e {root}/ready ]; do sleep 0.05; n=$((n+1)); [ $n -lt 400 ]; done
set +e
"$OMAC" start --profile tests --inner sh -- -c "$INNER" > {root}/inner.out 2> {root}/inner.err
echo "omac=$?"
cp {root}/hits.log {root}/hits.session 2>/dev/null || : > {root}/hits.session
: > {root}/hits.log
for u in http://169.254.169.254/ http://100.100.100.200/ http://169.254.1.1:8080/; do
  curl -s -m 5 --noproxy '*' -o /dev/null "$u"
done
[ -n "$v6" ] && curl -g -s -m 5 --noproxy '*' -o /dev/null 'http://[fd00:ec2::254]/'
echo "v6=${{v6:+yes}}"
kill $lp
"#
    );
    let o = host_cmd(&h, "unshare")
        .args(["-rn", "sh", "-c", &wrapper])
        .env("OMAC", OMAC)
        .env("INNER", &inner)
        .output()
        .unwrap();
    let inner_out = Output {
        status: o.status,
        stdout: std::fs::read(h.root.join("inner.out")).unwrap_or_default(),
        stderr: std::fs::read(h.root.join("inner.err")).unwrap_or_default(),
    };
    let r = report(&o);
    assert_eq!(
        r.get("omac").map(String::as_str),
        Some("0"),
        "{}\n{}",
        text(&o),
        text(&inner_out)
    );
    assert_through(&inner_out, "control");
    for (name, rule) in [
        ("md", "metadata"),
        ("mdname", "metadata"),
        ("mdmapped", "metadata"),
        ("mdnat64", "metadata"),
        ("mdgoogle", "metadata"),
        ("alibaba", "metadata"),
        ("ll", "link-local"),
        ("llname", "link-local"),
        ("llmapped", "link-local"),
        ("md6", "metadata"),
        ("md6name", "metadata"),
    ] {
        assert_refused(&h, &inner_out, name, rule);
    }
    let during = std::fs::read_to_string(h.root.join("hits.session")).unwrap();
    assert_eq!(
        during.lines().filter(|l| *l != "127.0.0.1:8081").count(),
        0,
        "a forbidden listener was reached during the session: {during}"
    );
    assert_eq!(
        during.lines().count(),
        3,
        "the control went through: {during}"
    );
    // Unconfined in the same namespace, each listener counts the connection.
    let after = std::fs::read_to_string(h.root.join("hits.log")).unwrap();
    let mut want = vec![
        "169.254.169.254:80",
        "100.100.100.200:80",
        "169.254.1.1:8080",
    ];
    if r.get("v6").map(String::as_str) == Some("yes") {
        want.push("[fd00:ec2::254]:80");
    } else {
        eprintln!("IPv6 is off in the test namespace: the fd00:ec2::254 listener is not checked");
    }
    for w in want {
        assert!(
            after.lines().any(|l| l == w),
            "{w} not reached unconfined: {after}"
        );
    }
    let ds = decisions(&h);
    assert!(
        logged(&ds, "169.254.169.254", 80, false, &[("rule", "metadata")]),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "ll.test", 8080, false, &[("rule", "link-local")]),
        "{ds:?}"
    );
}

/// Sends one UDP datagram to each `IP:PORT` argument and prints `udp IP:PORT ok|ERROR`;
/// then tries a raw ICMP socket and prints `raw ok|ERROR`.
const UDP_RAW_PROBE: &str = r#"import socket, sys
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"breach", (host, int(port)))
        print("udp", spec, "ok")
    except OSError as e:
        print("udp", spec, type(e).__name__ + ":" + str(e.errno))
try:
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("raw ok")
except OSError as e:
    print("raw", type(e).__name__ + ":" + str(e.errno))
"#;

/// A host UDP socket: the datagrams it received within `wait`.
fn udp_received(s: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        got.push(buf[..n].to_vec());
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    got
}

#[test]
fn clients_that_ignore_the_proxy_udp_and_raw_sockets_get_nowhere() {
    let h = Host::new();
    let lo = IpAddr::from([127, 0, 0, 1]);
    let mut tcp = vec![counted(lo, "loopback-body")];
    let mut udp = vec![UdpSocket::bind((lo, 0)).unwrap()];
    match host_ipv4() {
        Some(ip) => {
            tcp.push(counted(ip, "host-body"));
            udp.push(UdpSocket::bind((ip, 0)).unwrap());
        }
        None => eprintln!("no global IPv4 address here: only loopback listeners are used"),
    }
    let tcp_targets: Vec<String> = tcp
        .iter()
        .zip(&udp)
        .map(|(t, u)| SocketAddr::new(u.local_addr().unwrap().ip(), t.port).to_string())
        .collect();
    let udp_targets: Vec<String> = udp
        .iter()
        .map(|u| u.local_addr().unwrap().to_string())
        .collect();
    std::fs::write(h.work.join("probe.py"), UDP_RAW_PROBE).unwrap();
    let mut script = String::new();
    for (i, a) in tcp_targets.iter().enumerate() {
        script.push_str(&format!(
            "echo direct{i}=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{{http_code}}' http://{a}/)\n\
             echo env{i}=$(env -u http_proxy -u HTTP_PROXY -u ALL_PROXY -u all_proxy curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://{a}/)\n\
             echo tcp{i}=$(python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)' {} {} 2>/dev/null; echo $?)\n",
            a.rsplit_once(':').unwrap().0,
            a.rsplit_once(':').unwrap().1
        ));
    }
    script.push_str(&format!("python3 probe.py {}\n", udp_targets.join(" ")));
    let o = start(&h, "default", &script);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for i in 0..tcp_targets.len() {
        assert_eq!(r[&format!("direct{i}")], "000", "{out}");
        assert_eq!(r[&format!("env{i}")], "000", "{out}");
        assert_ne!(r[&format!("tcp{i}")], "0", "{out}");
    }
    for t in &tcp {
        assert_eq!(t.hits(), 0, "a TCP listener was reached: {out}");
    }
    // Sending fails at once (no route: the namespace has only lo), or, for 127.0.0.1, lands
    // on the sandbox's own loopback; either way nothing arrives on the host.
    for (a, s) in udp_targets.iter().zip(&udp) {
        assert!(out.contains(&format!("udp {a} ")), "{out}");
        assert!(
            udp_received(s, Duration::from_millis(500)).is_empty(),
            "{a} received a datagram: {out}"
        );
    }
    assert!(
        out.lines().any(|l| l.starts_with("raw ") && l != "raw ok"),
        "a raw socket was opened: {out}"
    );

    // Unconfined, the same probes reach every listener, and a raw socket opens in a user
    // namespace of the test's own: the checks above would have noticed a breach.
    for (t, a) in tcp.iter().zip(&tcp_targets) {
        let got = Command::new("curl")
            .args(["-s", "-m", "5", "--noproxy", "*"])
            .arg(format!("http://{a}/"))
            .output()
            .unwrap();
        assert!(got.status.success(), "{a}");
        assert_eq!(t.hits(), 1, "{a}");
    }
    let o = host_cmd(&h, "python3")
        .arg(h.work.join("probe.py"))
        .args(&udp_targets)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for (a, s) in udp_targets.iter().zip(&udp) {
        assert!(out.contains(&format!("udp {a} ok")), "{out}");
        assert_eq!(
            udp_received(s, Duration::from_secs(5)),
            vec![b"breach".to_vec()],
            "{a}"
        );
    }
    let o = host_cmd(&h, "unshare")
        .args(["-rn", "python3"])
        .arg(h.work.join("probe.py"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("raw ok"),
        "{}",
        text(&o)
    );
}

/// A raw SOCKS client on the loopback bridge: `python3 socks.py HOST PORT CMD` prints the
/// reply code of a request with command CMD (1 CONNECT, 2 BIND, 3 UDP ASSOCIATE) for
/// HOST:PORT as a domain name; `python3 socks.py 4 ...` tries SOCKS4 CONNECT instead.
const RAW_SOCKS: &str = r#"import socket, struct, sys
host, port, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", 29171), timeout=10)
if cmd == 4:
    s.sendall(struct.pack(">BBH", 4, 1, port) + bytes([127, 0, 0, 1]) + b"u\0")
    r = s.recv(8)
    print("socks4", r[1] if len(r) > 1 else "closed")
    sys.exit(0)
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
name = host.encode()
s.sendall(bytes([5, cmd, 0, 3, len(name)]) + name + struct.pack(">H", port))
r = s.recv(10)
print("cmd%d" % cmd, r[1] if len(r) > 1 else "closed")
"#;

#[test]
fn socks5_reaches_an_allowed_host_and_is_refused_a_denied_one() {
    let mut h = Host::new();
    let lo = IpAddr::from([127, 0, 0, 1]);
    let allowed = counted(lo, "socks-allowed");
    let other = counted(lo, "socks-other");
    let literal = counted(lo, "socks-literal");
    allow_profile(&h, &["allowed.test"]);
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "allowed.test=127.0.0.1,other.test=127.0.0.1",
    );
    h.var(
        "OMAC_TEST_EGRESS_EXEMPT",
        format!("127.0.0.1:{},127.0.0.1:{}", allowed.port, other.port),
    );
    let (a, d, l) = (allowed.port, other.port, literal.port);
    std::fs::write(h.work.join("socks.py"), RAW_SOCKS).unwrap();
    // curl takes ALL_PROXY (socks5h://127.0.0.1:29171, set by the session) for every scheme
    // once the HTTP variables are out of the way; socks5h sends the name, not an address.
    let o = start(
        &h,
        "tests",
        &format!(
            "case \"$ALL_PROXY\" in socks5h://*) echo scheme=socks5h;; *) echo scheme=$ALL_PROXY;; esac
             unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY
             echo allowed=$(curl -s -m 10 http://allowed.test:{a}/)
             curl -s -m 10 -o /dev/null http://other.test:{d}/; echo denied=$?
             curl -s -m 10 -o /dev/null http://127.0.0.1:{l}/ --noproxy ''; echo literal=$?
             python3 socks.py allowed.test {a} 1
             python3 socks.py allowed.test {a} 2
             python3 socks.py allowed.test {a} 3
             python3 socks.py allowed.test {a} 4"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["scheme"], "socks5h", "{}", text(&o));
    assert_eq!(r["allowed"], "socks-allowed", "{}", text(&o));
    // 97: CURLE_PROXY, the SOCKS5 server refused the request.
    assert_eq!(r["denied"], "97", "{}", text(&o));
    assert_eq!(r["literal"], "97", "{}", text(&o));
    // Raw SOCKS: CONNECT succeeds (0), BIND and UDP ASSOCIATE are not supported (7),
    // SOCKS4 is rejected (0x5b = 91).
    let out = String::from_utf8_lossy(&o.stdout);
    for want in ["cmd1 0", "cmd2 7", "cmd3 7", "socks4 91"] {
        assert!(out.lines().any(|x| x == want), "{want}: {}", text(&o));
    }
    assert_eq!(allowed.hits(), 2);
    assert_eq!(other.hits(), 0, "the denied host was reached");
    assert_eq!(literal.hits(), 0, "the loopback literal was reached");
    let ds = decisions(&h);
    for what in ["BIND", "UDP ASSOCIATE"] {
        assert!(
            logged(
                &ds,
                "allowed.test",
                a,
                false,
                &[("via", "socks5"), ("rule", "unsupported")]
            ),
            "{what}: {ds:?}"
        );
    }
    assert_eq!(
        ds.iter().filter(|d| d["rule"] == "unsupported").count(),
        3,
        "BIND, UDP ASSOCIATE and SOCKS4: {ds:?}"
    );
    assert!(
        logged(
            &ds,
            "127.0.0.1",
            a,
            false,
            &[("via", "socks4"), ("rule", "unsupported")]
        ),
        "{ds:?}"
    );
    // One event per request: three curls, four raw SOCKS requests.
    assert_eq!(ds.len(), 7, "{ds:?}");
    assert!(
        logged(&ds, "allowed.test", a, true, &[("via", "socks5")]),
        "{ds:?}"
    );
    assert!(
        logged(
            &ds,
            "other.test",
            d,
            false,
            &[("via", "socks5"), ("rule", "not in allowlist")]
        ),
        "{ds:?}"
    );
    assert!(
        logged(
            &ds,
            "127.0.0.1",
            l,
            false,
            &[("via", "socks5"), ("rule", "loopback")]
        ),
        "{ds:?}"
    );
}

/// sshd on 127.0.0.1, run as the invoking user with its own host key and configuration,
/// accepting `client.pub` from `dir`.
struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn must(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sshd(dir: &Path, client_pub: &Path) -> Result<Sshd, String> {
    let exe = "/usr/sbin/sshd";
    if !Path::new(exe).exists() {
        panic!("sshd is needed (Debian package openssh-server, in .ci/apt-packages)");
    }
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        // As root sshd wants its privilege-separation directory (the service makes it).
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("hostkey")),
    );
    std::fs::copy(client_pub, dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n"
        ),
    )
    .unwrap();
    let child = Command::new(exe)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
        .spawn()
        .unwrap();
    let mut s = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || matches!(s.child.try_wait(), Ok(Some(_))) {
            return Err(std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(s)
}

/// The invoking user's name.
fn user_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        assert!(!pw.is_null());
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com");
    c
}

#[test]
fn git_over_ssh_goes_out_through_omac_connect_as_the_session_sets_it_up() {
    let mut h = Host::new();
    let srv = h.root.join("sshd");
    std::fs::create_dir_all(&srv).unwrap();
    // The client key lives in the workdir, where the sandbox can read it.
    let keys = h.work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.join("client")),
    );
    let sshd = match sshd(&srv, &keys.join("client.pub")) {
        Ok(s) => s,
        Err(log) => {
            // SAFETY: getuid cannot fail.
            assert_ne!(unsafe { libc::getuid() }, 0, "sshd failed as root: {log}");
            eprintln!("skipping git over SSH: sshd cannot run as this user here: {log}");
            return;
        }
    };
    // A bare repository with one commit, served over SSH.
    let repo = h.root.join("repo.git");
    must(
        git(&h.root)
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&repo),
    );
    let seed = h.root.join("seed");
    must(git(&h.root).args(["init", "-q", "-b", "main"]).arg(&seed));
    std::fs::write(seed.join("README"), "through omac connect\n").unwrap();
    must(git(&seed).args(["add", "README"]));
    must(git(&seed).args(["commit", "-q", "-m", "one"]));
    must(git(&seed).args(["push", "-q"]).arg(&repo).arg("main"));
    let head = must(
        git(&h.root)
            .arg("--git-dir")
            .arg(&repo)
            .args(["rev-parse", "main"]),
    );

    allow_profile(&h, &["git.test"]);
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "git.test=127.0.0.1,other.test=127.0.0.1",
    );
    h.var(
        "OMAC_TEST_EGRESS_EXEMPT",
        format!("127.0.0.1:{}", sshd.port),
    );
    let (user, port, repo_s) = (user_name(), sshd.port, repo.display().to_string());
    // The session's own GIT_SSH_COMMAND (ProxyCommand = the omac inside) with only what a
    // test server needs added: the key, no known_hosts, no questions.
    let o = start(
        &h,
        "tests",
        &format!(
            "echo ssh_command=$GIT_SSH_COMMAND
             export GIT_SSH_COMMAND=\"$GIT_SSH_COMMAND -F /dev/null -i $PWD/keys/client -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes -o LogLevel=ERROR\"
             echo ls_remote=$(git ls-remote ssh://{user}@git.test:{port}{repo_s} refs/heads/main | cut -f1)
             git clone -q ssh://{user}@git.test:{port}{repo_s} clone 2>clone.err; echo clone=$?
             echo readme=$(cat clone/README)
             git ls-remote ssh://{user}@other.test:{port}{repo_s} 2>denied.err; echo denied=$?
             ssh -F /dev/null -o ProxyCommand='/run/omac/bin/omac connect %h %p' -i $PWD/keys/client -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes -o LogLevel=ERROR -p {port} {user}@git.test echo ran-over-ssh; echo ssh=$?"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(
        r["ssh_command"],
        "ssh -o ProxyCommand=\"/run/omac/bin/omac connect %h %p\"",
        "{}",
        text(&o)
    );
    assert_eq!(
        r["ls_remote"],
        head.trim(),
        "{}\n{}",
        text(&o),
        std::fs::read_to_string(srv.join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(
        r["clone"],
        "0",
        "{}",
        std::fs::read_to_string(h.work.join("clone.err")).unwrap_or_default()
    );
    assert_eq!(r["readme"], "through omac connect");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ran-over-ssh"),
        "{}",
        text(&o)
    );
    assert_eq!(r["ssh"], "0");
    assert_ne!(r["denied"], "0");
    let err = std::fs::read_to_string(h.work.join("denied.err")).unwrap();
    assert!(
        err.contains(&format!("other.test:{port} was refused")) && err.contains("not in allowlist"),
        "{err}"
    );
    let ds = decisions(&h);
    assert!(
        logged(&ds, "git.test", port, true, &[("via", "http-connect")]),
        "{ds:?}"
    );
    assert!(logged(&ds, "other.test", port, false, &[]), "{ds:?}");
}

/// A profile `asks` with the prompt on (2 s timeout, `on_unavailable` as given).
fn asking_profile(h: &Host, on_unavailable: &str) {
    h.profile(
        "asks",
        &serde_json::json!({
            "extends": "default",
            "network": {"network_prompt": {
                "enabled": true, "prompt_timeout_secs": 2, "on_unavailable": on_unavailable
            }}
        })
        .to_string(),
    );
}

/// The stub prompt's answers (`@record` added) for the next session.
fn stub_answers(h: &mut Host, answers: serde_json::Value, record: &Path) {
    let mut a = answers;
    a["@record"] = serde_json::Value::String(record.display().to_string());
    let f = h.root.join("answers.json");
    std::fs::write(&f, a.to_string()).unwrap();
    h.var("OMAC_PROMPT_STUB", "1");
    h.var("OMAC_PROMPT_DECISIONS", f);
}

/// The hosts the stub was asked about, one per dialog shown.
fn asked(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

const ASK_HOSTS: &str = "once.test,sess.test,perm.test,denyperm.test,shared.test,slow.test,nope.test,api.sfx.test,www.sfx.test,x.psfx.test,y.psfx.test";

fn resolve_all(h: &mut Host, hosts: &str, port: u16) {
    let names: Vec<String> = hosts.split(',').map(|n| format!("{n}=127.0.0.1")).collect();
    h.var("OMAC_TEST_EGRESS_RESOLVE", names.join(","));
    h.var("OMAC_TEST_EGRESS_EXEMPT", format!("127.0.0.1:{port}"));
}

#[test]
fn prompt_choices_once_session_permanent_shared_and_timed_out() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "asked-body");
    let e = l.port;
    asking_profile(&h, "deny");
    resolve_all(&mut h, ASK_HOSTS, e);
    let record = h.root.join("asked.log");
    stub_answers(
        &mut h,
        serde_json::json!({
            "once.test": "allow-once",
            "sess.test": "allow-session",
            "perm.test": "allow-permanent",
            "denyperm.test": "deny-permanent",
            "shared.test": {"choice": "allow-once", "delay_ms": 1500},
            "slow.test": {"choice": "allow-once", "delay_ms": 8000},
            "api.sfx.test": "allow-session-suffix",
            "x.psfx.test": "allow-permanent-suffix",
            "*": "deny-once",
        }),
        &record,
    );
    let script = format!(
        "c() {{ curl -s -m 30 -o /dev/null -w '%{{http_code}}' http://$1:{e}/; }}
         echo once1=$(c once.test)
         echo once2=$(c once.test)
         echo sess1=$(c sess.test)
         echo sess2=$(c sess.test)
         echo perm=$(c perm.test)
         echo denyperm=$(c denyperm.test)
         c shared.test > s1 & c shared.test > s2 & c shared.test > s3 & wait
         echo shared=$(cat s1),$(cat s2),$(cat s3)
         echo slow=$(curl -s -m 30 -o slow.body -w '%{{http_code}}' http://slow.test:{e}/)
         echo nope=$(curl -s -m 30 -o nope.body -w '%{{http_code}}' http://nope.test:{e}/)
         echo sfx=$(c api.sfx.test),$(c www.sfx.test)
         echo psfx=$(c x.psfx.test)"
    );
    let o = start(&h, "asks", &script);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    for (k, v) in [
        ("once1", "200"),
        ("once2", "200"),
        ("sess1", "200"),
        ("sess2", "200"),
        ("perm", "200"),
        ("denyperm", "403"),
        ("shared", "200,200,200"),
        ("slow", "403"),
        ("nope", "403"),
        ("sfx", "200,200"),
        ("psfx", "200"),
    ] {
        assert_eq!(r[k], v, "{k}: {}", text(&o));
    }
    assert_eq!(l.hits(), 11, "only the allowed requests arrived");
    let mut a = asked(&record);
    a.sort();
    assert_eq!(
        a,
        [
            "api.sfx.test",
            "denyperm.test",
            "nope.test",
            "once.test",
            "once.test",
            "perm.test",
            "sess.test",
            "shared.test",
            "slow.test",
            "x.psfx.test"
        ],
        "once asks each time, the session choice once, three concurrent requests share one dialog"
    );
    let slow = std::fs::read_to_string(h.work.join("slow.body")).unwrap();
    assert!(slow.contains("rule: prompt timeout:"), "{slow}");
    assert!(slow.contains("within 2 s"), "{slow}");
    let nope = std::fs::read_to_string(h.work.join("nope.body")).unwrap();
    assert!(
        nope.contains("rule: prompt declined: denied in the prompt (once)"),
        "{nope}"
    );

    // The permanent choices, in the Go omac's and nono's format, beside the profile.
    let pages_path = h.work.join(".omac/profiles/asks.pages.json");
    let pages: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pages_path).unwrap()).unwrap();
    assert_eq!(pages["schema"], 1, "{pages}");
    let entries = pages["entries"].as_array().unwrap();
    let has = |host: &str, scope: &str, decision: &str| {
        entries
            .iter()
            .any(|x| x["host"] == host && x["scope"] == scope && x["decision"] == decision)
    };
    assert!(has("perm.test", "host", "allow"), "{pages}");
    assert!(has("denyperm.test", "host", "deny"), "{pages}");
    assert!(has("psfx.test", "suffix", "allow"), "{pages}");
    assert_eq!(entries.len(), 3, "{pages}");

    let ds = decisions(&h);
    assert!(
        logged(
            &ds,
            "perm.test",
            e,
            true,
            &[("source", "prompt"), ("scope", "permanent")]
        ) && ds
            .iter()
            .any(|d| d["host"] == "perm.test" && d["persisted"] == true),
        "{ds:?}"
    );
    assert!(
        ds.iter()
            .any(|d| d["host"] == "denyperm.test" && d["allow"] == false && d["persisted"] == true),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "sess.test", e, true, &[("source", "session")]),
        "the second request was decided by the session choice: {ds:?}"
    );
    assert!(
        logged(&ds, "slow.test", e, false, &[("rule", "prompt timeout")]),
        "{ds:?}"
    );
    assert_eq!(
        ds.iter().filter(|d| d["host"] == "shared.test").count(),
        3,
        "one decision event per request: {ds:?}"
    );

    // A second session: the permanent choices hold without a dialog, the session choice
    // is gone (asked again, and denied once this time).
    let record2 = h.root.join("asked2.log");
    stub_answers(&mut h, serde_json::json!({"*": "deny-once"}), &record2);
    let o = start(
        &h,
        "asks",
        &format!(
            "c() {{ curl -s -m 30 -o /dev/null -w '%{{http_code}}' http://$1:{e}/; }}
             echo perm=$(c perm.test)
             echo denyperm=$(curl -s -m 30 -o denyperm.body -w '%{{http_code}}' http://denyperm.test:{e}/)
             echo sess=$(c sess.test)
             echo psfx=$(c y.psfx.test)
             echo sfx=$(c www.sfx.test)"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["perm"], "200", "{}", text(&o));
    assert_eq!(r["denyperm"], "403", "{}", text(&o));
    assert_eq!(r["sess"], "403", "{}", text(&o));
    assert_eq!(
        r["psfx"],
        "200",
        "the learned suffix covers a sibling: {}",
        text(&o)
    );
    assert_eq!(
        r["sfx"],
        "403",
        "the session's suffix choice is gone: {}",
        text(&o)
    );
    assert_eq!(
        asked(&record2),
        ["sess.test", "www.sfx.test"],
        "learned hosts are not asked about"
    );
    let body = std::fs::read_to_string(h.work.join("denyperm.body")).unwrap();
    assert!(body.contains("rule: learned:"), "{body}");
    assert!(
        body.contains(&pages_path.display().to_string()),
        "the 403 names the file to edit: {body}"
    );
    assert_eq!(l.hits(), 13);
    let ds = decisions(&h);
    assert!(
        logged(&ds, "perm.test", e, true, &[("source", "learned")]),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "denyperm.test", e, false, &[("rule", "learned")]),
        "{ds:?}"
    );
}

#[test]
fn headless_without_a_dialog_on_unavailable_decides_and_the_403_says_so() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "headless-body");
    let e = l.port;
    resolve_all(&mut h, "new.test", e);
    let probe =
        format!("echo code=$(curl -s -m 30 -o body -w '%{{http_code}}' http://new.test:{e}/)");
    // No stub and no terminal: no dialog can be shown, and the default is to deny.
    asking_profile(&h, "deny");
    let o = start(&h, "asks", &probe);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report(&o)["code"], "403", "{}", text(&o));
    assert_eq!(l.hits(), 0);
    let body = std::fs::read_to_string(h.work.join("body")).unwrap();
    assert!(body.contains("rule: no display:"), "{body}");
    assert!(body.contains("headless"), "{body}");
    assert!(
        body.contains("network.network_prompt.on_unavailable is \"deny\""),
        "{body}"
    );
    assert!(
        body.contains("add \"new.test\" to network.allow_domain in"),
        "{body}"
    );
    // The same request with on_unavailable "allow" goes through: the refusal above was
    // the setting's doing.
    asking_profile(&h, "allow");
    let o = start(&h, "asks", &probe);
    assert_eq!(report(&o)["code"], "200", "{}", text(&o));
    assert_eq!(l.hits(), 1);
    let ds = decisions(&h);
    assert!(
        logged(
            &ds,
            "new.test",
            e,
            false,
            &[("rule", "no display"), ("source", "unavailable")]
        ),
        "{ds:?}"
    );
    assert!(
        logged(
            &ds,
            "new.test",
            e,
            true,
            &[("rule", "on_unavailable allow")]
        ),
        "{ds:?}"
    );
}

#[test]
fn a_broken_pages_file_is_reported_and_left_untouched() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "pages-body");
    let e = l.port;
    asking_profile(&h, "deny");
    resolve_all(&mut h, "keep.test", e);
    let pages_path = h.work.join(".omac/profiles/asks.pages.json");
    let broken = "{\"schema\": 1, \"entries\": [ {\"host\": \"keep.test\", oops\n";
    std::fs::write(&pages_path, broken).unwrap();
    let record = h.root.join("asked.log");
    stub_answers(
        &mut h,
        serde_json::json!({"keep.test": "allow-permanent"}),
        &record,
    );
    let o = start(
        &h,
        "asks",
        &format!(
            "c() {{ curl -s -m 30 -o /dev/null -w '%{{http_code}}' http://$1:{e}/; }}
             echo first=$(c keep.test)
             echo second=$(c keep.test)"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    // The choice holds for this session (asked once), but is not saved over the file.
    assert_eq!(r["first"], "200", "{}", text(&o));
    assert_eq!(r["second"], "200", "{}", text(&o));
    assert_eq!(asked(&record), ["keep.test"]);
    assert_eq!(std::fs::read_to_string(&pages_path).unwrap(), broken);
    let err = stderr(&o);
    assert!(
        err.contains(&pages_path.display().to_string()),
        "the broken file is named: {err}"
    );
    assert!(
        err.contains("left untouched") || err.contains("will not overwrite"),
        "{err}"
    );
}

#[test]
fn a_second_session_cannot_reach_the_first_sessions_proxy() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "first-only");
    let e = l.port;
    allow_profile(&h, &["first-only.test"]);
    h.profile("second", r#"{"extends": "default"}"#);
    h.var("OMAC_TEST_EGRESS_RESOLVE", "first-only.test=127.0.0.1");
    h.var("OMAC_TEST_EGRESS_EXEMPT", format!("127.0.0.1:{e}"));
    // The first session waits (at most 60 s) for the second one to be done.
    let first = h
        .omac()
        .args(["start", "--profile", "tests", "--inner", "sh", "--", "-c"])
        .arg(format!(
            "touch first.ready; n=0; while [ ! -e second.done ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
             echo first=$(curl -s -m 10 http://first-only.test:{e}/)"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h.work.join("first.ready").exists() {
        assert!(Instant::now() < deadline, "the first session did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let socks: Vec<_> = h
        .session_dirs()
        .into_iter()
        .map(|d| d.join("egress.sock"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(socks.len(), 1, "{socks:?}");
    let sock = socks[0].display().to_string();

    // From the host, the socket is the first session's live proxy.
    let mut s = std::os::unix::net::UnixStream::connect(&socks[0]).unwrap();
    write!(
        s,
        "CONNECT first-only.test:{e} HTTP/1.1\r\nHost: first-only.test:{e}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(s);
    let control_hits = l.hits();
    assert_eq!(control_hits, 1);

    // The second session (its own proxy, which does not allow first-only.test) tries the
    // first one's socket by its host path, and the loopback bridge port.
    let o = h
        .omac()
        .env_remove("OMAC_TEST_EGRESS_EXEMPT")
        .args(["start", "--profile", "second", "--inner", "sh", "--", "-c"])
        .arg(format!(
            "test -e {sock} && echo visible=yes || echo visible=no
             echo rundir=$(ls $XDG_RUNTIME_DIR/omac 2>/dev/null | wc -l)
             curl -s -m 5 --unix-socket {sock} -p -o /dev/null http://first-only.test:{e}/; echo unix=$?
             python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(\"py=connected\")' {sock} 2>/dev/null || echo py=refused
             echo bridge=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://first-only.test:{e}/)"
        ))
        .output()
        .unwrap();
    let after_second = l.hits();
    std::fs::write(h.work.join("second.done"), "").unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["visible"], "no", "{}", text(&o));
    assert_eq!(r["rundir"], "0", "{}", text(&o));
    assert_ne!(r["unix"], "0", "{}", text(&o));
    assert_eq!(r["py"], "refused", "{}", text(&o));
    // 127.0.0.1:29171 inside the second sandbox is the second session's own proxy, which
    // refuses the host: the first session's bridge lives in another namespace.
    assert_eq!(r["bridge"], "403", "{}", text(&o));
    assert_eq!(
        after_second, control_hits,
        "the second session reached the listener"
    );
    // The first session's own requests still go through its proxy.
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(report(&first)["first"], "first-only", "{}", text(&first));
    assert_eq!(l.hits(), control_hits + 1);
}

#[test]
fn omac_run_of_a_filtered_bundle_goes_through_its_own_proxy() {
    let mut h = Host::new();
    let allowed = counted(IpAddr::from([127, 0, 0, 1]), "bundle-allowed");
    let other = counted(IpAddr::from([127, 0, 0, 1]), "bundle-other");
    let (a, d) = (allowed.port, other.port);
    allow_profile(&h, &["allowed.test"]);
    h.var(
        "OMAC_TEST_EGRESS_RESOLVE",
        "allowed.test=127.0.0.1,other.test=127.0.0.1",
    );
    h.var(
        "OMAC_TEST_EGRESS_EXEMPT",
        format!("127.0.0.1:{a},127.0.0.1:{d}"),
    );
    let bundle = h.root.join("bundle");
    let o = h
        .omac()
        .args(["bundle", "create", "--profile", "tests", "--out"])
        .arg(&bundle)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "echo fwd=$(curl -s -m 10 http://allowed.test:{a}/)
             echo tun=$(curl -s -m 10 -p http://allowed.test:{a}/)
             echo denied=$(curl -s -m 10 -o /dev/null -w '%{{http_code}}' http://other.test:{d}/)
             echo direct=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{d}/)"
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = h.omac().arg("run").arg(&bundle).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["fwd"], "bundle-allowed", "{}", text(&o));
    assert_eq!(r["tun"], "bundle-allowed", "{}", text(&o));
    assert_eq!(r["denied"], "403", "{}", text(&o));
    assert_eq!(r["direct"], "000", "{}", text(&o));
    assert_eq!(allowed.hits(), 2);
    assert_eq!(other.hits(), 0);
    let ds = decisions(&h);
    assert!(
        ds.iter()
            .any(|x| x["host"] == "allowed.test" && x["allow"] == true && x["mode"] == "run"),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "other.test", d, false, &[("mode", "run")]),
        "{ds:?}"
    );
}

#[test]
fn the_agent_cannot_plant_learned_decisions() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "planted-body");
    let e = l.port;
    allow_profile(&h, &[]);
    resolve_all(&mut h, "planted.test", e);
    let entry = r#"{"schema": 1, "entries": [{"host": "planted.test", "scope": "host", "decision": "allow"}]}"#;
    // Beside a workdir profile and in the user's profile directory (the built-in
    // profile's pages file), from inside: both refused, and the host is still denied.
    let work_pages = h.work.join(".omac/profiles/tests.pages.json");
    let user_pages = h.home.join(".config/omac/profiles/default.pages.json");
    let script = format!(
        "echo '{entry}' > {w} 2>/dev/null; echo work_write=$?
         mkdir -p {ud} 2>/dev/null; echo '{entry}' > {u} 2>/dev/null; echo user_write=$?
         echo code=$(curl -s -m 10 -o body.$P -w '%{{http_code}}' http://planted.test:{e}/)",
        w = work_pages.display(),
        u = user_pages.display(),
        ud = user_pages.parent().unwrap().display(),
    );
    for profile in ["tests", "default"] {
        let o = start(&h, profile, &script.replace("$P", profile));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = report(&o);
        assert_ne!(r["work_write"], "0", "{profile}: {}", text(&o));
        assert_eq!(r["code"], "403", "{profile}: {}", text(&o));
        assert!(!work_pages.exists(), "{profile}");
        assert!(!user_pages.exists(), "{profile}: {}", text(&o));
    }
    // The built-in profile cannot be edited: its 403 says which file to create, and how.
    let body = std::fs::read_to_string(h.work.join("body.default")).unwrap();
    assert!(
        body.contains(&format!(
            "add \"planted.test\" to network.allow_domain in {}",
            h.home.join(".config/omac/profiles/default.json").display()
        )) && body.contains("{\"extends\": \"default\"}"),
        "{body}"
    );
    assert_eq!(l.hits(), 0);
    // The same entries written on the host are honoured: the probe would have noticed.
    std::fs::write(&work_pages, entry).unwrap();
    std::fs::create_dir_all(user_pages.parent().unwrap()).unwrap();
    std::fs::write(&user_pages, entry).unwrap();
    for profile in ["tests", "default"] {
        let o = start(
            &h,
            profile,
            &format!("echo code=$(curl -s -m 10 -o /dev/null -w '%{{http_code}}' http://planted.test:{e}/)"),
        );
        assert_eq!(report(&o)["code"], "200", "{profile}: {}", text(&o));
    }
    assert_eq!(l.hits(), 2);
    let ds = decisions(&h);
    assert!(
        logged(&ds, "planted.test", e, true, &[("source", "learned")]),
        "{ds:?}"
    );
}

/// A corporate-style upstream proxy (`python3 upstream.py PORT NAME=ADDR...`): CONNECT
/// and absolute-form `http://` requests, resolving NAME with its own table (as a proxy on
/// another resolver would), anything else with the system's. Appends each target it
/// dials to `upstream.log` beside itself.
const UPSTREAM_PROXY: &str = r#"import os, socket, sys, threading
port = int(sys.argv[1])
table = dict(a.split("=", 1) for a in sys.argv[2:])
log = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream.log")
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(65536)
        if not d:
            return
        head += d
    line, rest = head.split(b"\r\n", 1)
    method, target, version = line.decode().split(" ")
    if method == "CONNECT":
        host, p = target.rsplit(":", 1)
        body = rest.split(b"\r\n\r\n", 1)[1]
    else:
        hostport, path = target[len("http://"):].split("/", 1)
        host, p = (hostport.rsplit(":", 1) + ["80"])[:2]
        body = ("%s /%s %s\r\n" % (method, path, version)).encode() + rest
    with open(log, "a") as f:
        f.write("%s:%s\n" % (host, p))
    s = socket.create_connection((table.get(host, host), int(p)))
    if method == "CONNECT":
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    if body:
        s.sendall(body)
    threading.Thread(target=pipe, args=(s, c), daemon=True).start()
    pipe(c, s)
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port))
l.listen(64)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A child killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn through_an_upstream_proxy_names_that_resolve_to_forbidden_addresses_are_still_refused() {
    let mut h = Host::new();
    let lo = IpAddr::from([127, 0, 0, 1]);
    let public = counted(lo, "via-upstream");
    let secret = counted(lo, "host-service");
    let dir = h.root.join("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upstream.py"), UPSTREAM_PROXY).unwrap();
    let up = free_port();
    // The upstream resolves both names to its own loopback: public.test stands for a real
    // site (reached through the upstream: the control), sneaky.test for a public name that
    // points at 127.0.0.1 (there are such names in public DNS).
    let _upstream = Killed(
        Command::new("python3")
            .arg(dir.join("upstream.py"))
            .arg(up.to_string())
            .args(["public.test=127.0.0.1", "sneaky.test=127.0.0.1"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", up)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the upstream proxy did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Blocklist mode (no allowlist, no prompt): only the hard deny stands in the way.
    h.profile(
        "up",
        &serde_json::json!({
            "network": {"mode": "filtered", "allow_domain": [],
                        "network_prompt": {"enabled": false}}
        })
        .to_string(),
    );
    h.var("HTTPS_PROXY", format!("http://127.0.0.1:{up}"));
    h.var("HTTP_PROXY", format!("http://127.0.0.1:{up}"));
    // omac's own resolver sees what the host's DNS would say: sneaky.test is loopback.
    // public.test does not resolve on the host (as behind a corporate proxy).
    h.var("OMAC_TEST_EGRESS_RESOLVE", "sneaky.test=127.0.0.1");
    let (p, s) = (public.port, secret.port);
    let o = start(
        &h,
        "up",
        &format!(
            "echo public=$(curl -s -m 10 http://public.test:{p}/)
             echo public_tun=$(curl -s -m 10 -p http://public.test:{p}/)
             echo sneaky=$(curl -s -m 10 -o /dev/null -w '%{{http_code}}' http://sneaky.test:{s}/)
             echo sneaky_rule=$(curl -s -m 10 http://sneaky.test:{s}/ | grep '^rule:' | cut -d: -f2)
             echo sneaky_tun=$(curl -s -m 10 -p -o /dev/null -w '%{{http_connect}}' http://sneaky.test:{s}/)"
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["public"], "via-upstream", "{}", text(&o));
    assert_eq!(r["public_tun"], "via-upstream", "{}", text(&o));
    assert_eq!(public.hits(), 2);
    assert_eq!(r["sneaky"], "403", "{}", text(&o));
    assert_eq!(r["sneaky_tun"], "403", "{}", text(&o));
    assert_eq!(
        secret.hits(),
        0,
        "a host service was reached through the upstream"
    );
    // (This profile grants no writable workdir: the rule comes back on stdout.)
    assert_eq!(r["sneaky_rule"], " loopback", "{}", text(&o));
    let log = std::fs::read_to_string(dir.join("upstream.log")).unwrap_or_default();
    assert!(!log.contains("sneaky.test"), "{log}");
    // The host service answers whoever reaches it: a breach would have been counted.
    let got = Command::new("curl")
        .args(["-s", "-m", "5", "--noproxy", "*"])
        .arg(format!("http://127.0.0.1:{s}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "host-service");
    assert_eq!(secret.hits(), 1);
    let ds = decisions(&h);
    assert!(
        logged(&ds, "sneaky.test", s, false, &[("rule", "loopback")]),
        "{ds:?}"
    );
}

#[test]
fn on_a_terminal_with_a_display_the_desktop_dialog_decides() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "dialog-body");
    let e = l.port;
    asking_profile(&h, "deny");
    resolve_all(&mut h, "ask.test,no.test", e);
    // A stand-in zenity (no X server here): records its arguments and picks the choice
    // the real one would print for the radio list, by the host in its text.
    let bin = h.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = h.root.join("zenity.log");
    let z = bin.join("zenity");
    std::fs::write(
        &z,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\ncase \"$*\" in\n  *ask.test:*) echo 'Allow for this session (this host)';;\n  *) echo 'Deny once';;\nesac\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&z, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = h.omac();
    c.env(
        "PATH",
        format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
    )
    .env("DISPLAY", ":9")
    .args(["start", "--profile", "asks", "--inner", "sh", "--", "-c"])
    .arg(format!(
        "c() {{ curl -s -m 30 -o /dev/null -w '%{{http_code}}' http://$1:{e}/; }}
             echo ask=$(c ask.test),$(c ask.test) no=$(c no.test) end"
    ));
    let t = OnTerminal::spawn(c);
    let (code, seen) = t.wait();
    assert_eq!(code, Some(0), "{seen}");
    assert!(seen.contains("ask=200,200 no=403 end"), "{seen}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.matches("--radiolist").count(),
        2,
        "one dialog per host: {calls}"
    );
    assert!(calls.contains(&format!("ask.test:{e}")), "{calls}");
    assert!(calls.contains("Allow permanently (this host)"), "{calls}");
    assert_eq!(l.hits(), 2);
    let ds = decisions(&h);
    assert!(
        logged(
            &ds,
            "ask.test",
            e,
            true,
            &[("source", "prompt"), ("scope", "session")]
        ),
        "{ds:?}"
    );
    assert!(
        logged(&ds, "no.test", e, false, &[("rule", "prompt declined")]),
        "{ds:?}"
    );
}

/// Through the loopback bridge: CONNECT to `argv[1]:argv[2]`, send `argv[3]` bytes of a
/// pattern, half-close, read everything back and compare; prints `echo OK|...`.
const HALF_CLOSE: &str = r#"import socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", 29171), timeout=30)
s.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port, host.encode(), port))
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 200"), head
data = bytes(i % 251 for i in range(n))
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
t.join()
print("echo", "OK" if bytes(got) == data else "MISMATCH %d of %d" % (len(got), n))
"#;

#[test]
fn a_tunnel_through_the_bridge_carries_bulk_both_ways_and_passes_a_half_close() {
    let mut h = Host::new();
    // An echo server that answers until the client half-closes, then closes its side.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let e = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    allow_profile(&h, &["echo.test"]);
    resolve_all(&mut h, "echo.test", e);
    std::fs::write(h.work.join("halfclose.py"), HALF_CLOSE).unwrap();
    let o = start(
        &h,
        "tests",
        &format!("python3 halfclose.py echo.test {e} 25000000"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report_words(&o, "echo"), "OK", "{}", text(&o));
}

/// The rest of the first stdout line starting with `word `.
fn report_words(o: &Output, word: &str) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn two_sessions_learning_at_once_lose_nothing() {
    let mut h = Host::new();
    let l = counted(IpAddr::from([127, 0, 0, 1]), "learned");
    let e = l.port;
    asking_profile(&h, "deny");
    let hosts: Vec<String> = (0..6).map(|i| format!("h{i}.test")).collect();
    resolve_all(&mut h, &hosts.join(","), e);
    let mut answers = serde_json::Map::new();
    for x in &hosts {
        answers.insert(
            x.clone(),
            serde_json::json!({"choice": "allow-permanent", "delay_ms": 300}),
        );
    }
    let record = h.root.join("asked.log");
    stub_answers(&mut h, serde_json::Value::Object(answers), &record);
    // Two sessions of one profile, each learning three hosts, their dialogs overlapping.
    let children: Vec<_> = [&hosts[..3], &hosts[3..]]
        .iter()
        .map(|part| {
            let script = part
                .iter()
                .map(|x| format!("curl -s -m 30 -o /dev/null http://{x}:{e}/ &"))
                .collect::<Vec<_>>()
                .join("\n")
                + "\nwait";
            h.omac()
                .args(["start", "--profile", "asks", "--inner", "sh", "--", "-c"])
                .arg(script)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert_eq!(l.hits(), 6);
    let pages_path = h.work.join(".omac/profiles/asks.pages.json");
    let pages: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pages_path).unwrap()).unwrap();
    let mut learned: Vec<String> = pages["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["host"].as_str().unwrap().to_string())
        .collect();
    learned.sort();
    assert_eq!(learned, hosts, "{pages}");
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(pages_path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|x| x.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "asks.json" && n != "asks.pages.json" && !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
