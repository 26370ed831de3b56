//! Test fixtures: a proxy on a Unix socket in a temp dir, test servers on loopback, the TCP
//! relay that plays init's loopback bridge, and small clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use omac_bundle::ext::{NetworkPolicy, Prompt};
use omac_egress::audit::{MemoryAudit, NetDecision};
use omac_egress::prompt::stub::StubPrompter;
use omac_egress::prompt::Prompter;
use omac_egress::resolve::StaticResolver;
use omac_egress::{Builder, Handle, ProfileRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// A network policy: filtered, kernel, with these lists and the prompt on or off.
pub fn net(allow: &[&str], deny: &[&str], prompt: bool) -> NetworkPolicy {
    NetworkPolicy {
        mode: "filtered".into(),
        enforcement: "kernel".into(),
        allow_domains: allow.iter().map(|s| s.to_string()).collect(),
        deny_domains: deny.iter().map(|s| s.to_string()).collect(),
        listen_ports: vec![],
        allow_tcp_connect: vec![],
        open_ports: vec![],
        publish_ports: vec![],
        prompt: Prompt {
            enabled: prompt,
            timeout_secs: 60,
            on_unavailable: "deny".into(),
        },
        upstream_proxy: None,
        no_proxy: vec![],
        proxy_injection: vec![],
        allow_private: vec![],
    }
}

/// One running proxy and what the test can look at.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub profile_file: PathBuf,
    pub pages: PathBuf,
    pub decisions: PathBuf,
    pub resolver: Arc<StaticResolver>,
    pub audit: Arc<MemoryAudit>,
    pub stub: Arc<StubPrompter>,
    pub handle: Option<Handle>,
}

/// How a test wants its proxy.
pub struct Setup {
    pub network: NetworkPolicy,
    pub exempt: Vec<SocketAddr>,
    pub names: Vec<(String, Vec<IpAddr>)>,
    pub decisions: serde_json::Value,
    pub prompter: Option<Arc<dyn Prompter>>,
    pub env: HashMap<String, String>,
    /// Reuse the directory (and so the pages file) of an earlier proxy.
    pub dir: Option<tempfile::TempDir>,
}

impl Setup {
    pub fn new(network: NetworkPolicy) -> Setup {
        Setup {
            network,
            exempt: vec![],
            names: vec![],
            decisions: serde_json::json!({}),
            prompter: None,
            env: HashMap::new(),
            dir: None,
        }
    }

    pub fn exempt(mut self, a: SocketAddr) -> Setup {
        self.exempt.push(a);
        self
    }

    pub fn name(mut self, host: &str, addrs: &[&str]) -> Setup {
        self.names.push((
            host.to_string(),
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
        ));
        self
    }

    pub fn decisions(mut self, d: serde_json::Value) -> Setup {
        self.decisions = d;
        self
    }

    pub async fn start(self) -> Proxy {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let socket = dir.path().join("egress.sock");
        let profile_file = dir.path().join("work.json");
        let decisions = dir.path().join("decisions.json");
        std::fs::write(&decisions, self.decisions.to_string()).unwrap();
        let resolver = Arc::new(StaticResolver::new());
        for (h, a) in &self.names {
            resolver.answer(h, a);
        }
        let audit = Arc::new(MemoryAudit::default());
        let stub = Arc::new(StubPrompter::from_file(Some(decisions.clone())));
        let profile = ProfileRef {
            name: "work".into(),
            file: Some(profile_file.clone()),
            user_dir: None,
        };
        let pages = profile.pages_path().unwrap();
        let mut b = Builder::new(self.network, profile)
            .resolver(resolver.clone())
            .audit(audit.clone())
            .prompter(self.prompter.unwrap_or_else(|| stub.clone()))
            .environment(self.env);
        for e in self.exempt {
            b = b.exempt_for_tests(e);
        }
        let handle = b.bind(&socket).unwrap().spawn();
        Proxy {
            dir,
            socket,
            profile_file,
            pages,
            decisions,
            resolver,
            audit,
            stub,
            handle: Some(handle),
        }
    }
}

impl Proxy {
    pub fn events(&self) -> Vec<NetDecision> {
        self.audit.events()
    }

    /// Stops the proxy and hands back its directory (for a second "session").
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.dir
    }
}

/// An HTTP origin on loopback: answers 200 with the request head in the body, keeps
/// every head it saw.
pub struct Origin {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
}

pub async fn read_head(s: &mut (impl AsyncReadExt + Unpin)) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return Some((head, buf[i + 4..].to_vec()));
        }
    }
}

impl Origin {
    pub async fn start(ip: &str) -> Origin {
        let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    while let Some((head, _)) = read_head(&mut s).await {
                        h.lock().unwrap().push(head.clone());
                        let body = format!("origin saw:\n{head}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Origin: yes\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Origin { addr, heads }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A TCP service that counts connections and echoes; with `banner`, it speaks first.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Echo {
    pub async fn start(ip: &str, banner: Option<&'static [u8]>) -> Echo {
        let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        Echo::on(l, banner)
    }

    pub fn on(l: TcpListener, banner: Option<&'static [u8]>) -> Echo {
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Some(b) = banner {
                        let _ = s.write_all(b).await;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Echo { addr, accepted }
    }

    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A TCP listener on 127.0.0.1 forwarding each connection to a Unix socket, as init's
/// loopback bridge does inside the sandbox.
pub async fn relay(socket: &Path) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let socket = socket.to_path_buf();
    tokio::spawn(async move {
        while let Ok((mut t, _)) = l.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut u) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut t, &mut u).await;
                }
            });
        }
    });
    addr
}

/// Sends `CONNECT target` on the proxy socket; returns the status, the head, the body
/// (for 200: the bytes the destination already sent after the head) and the stream.
pub async fn connect(socket: &Path, target: &str) -> (u16, String, String, UnixStream) {
    let mut s = UnixStream::connect(socket).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, rest) = read_head(&mut s).await.expect("an answer to CONNECT");
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if status != 200 {
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut b = rest;
        while b.len() < len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            b.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&b).into_owned()
    } else {
        String::from_utf8_lossy(&rest).into_owned()
    };
    (status, head, body, s)
}

/// One header value from a response head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A SOCKS5 CONNECT: `atyp` 1 (IPv4), 3 (name) or 4 (IPv6); returns the reply code and
/// the stream.
pub async fn socks(socket: &Path, atyp: u8, host: &str, port: u16) -> (u8, UnixStream) {
    let mut s = UnixStream::connect(socket).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, atyp];
    match atyp {
        1 => req.extend_from_slice(&host.parse::<std::net::Ipv4Addr>().unwrap().octets()),
        4 => req.extend_from_slice(&host.parse::<std::net::Ipv6Addr>().unwrap().octets()),
        _ => {
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.unwrap();
    let rest = match head[3] {
        1 => 6,
        4 => 18,
        _ => panic!("unexpected address type in the reply"),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).await.unwrap();
    (head[1], s)
}

/// Writes `msg`, half-closes, reads to the end.
pub async fn echo_through(mut s: impl AsyncReadExt + AsyncWriteExt + Unpin, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

/// Runs curl with `args`; returns (exit code, stdout, stderr).
pub async fn curl(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .await
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback TCP connection made directly, outside any proxy (the unconfined probe).
pub async fn direct(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}
