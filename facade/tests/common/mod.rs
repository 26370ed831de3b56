//! Shared by the end-to-end tests: a facade with the real echo-rest sidecar, and a real
//! HTTP client (hyper) speaking over the facade's Unix socket.
#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use omac_facade::{
    FacadeConfig, FacadeHandle, HealthSpec, RestartPolicy, RouteConfig, RouteState, RouteTable,
    Secret, SidecarSpec, Supervisor, SupervisorConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The example skill in the repository.
pub fn echo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../skills/examples/echo-rest")
}

/// The keeper command: the crate's own binary.
pub fn keeper() -> Vec<OsString> {
    vec![
        env!("CARGO_BIN_EXE_omac-facade").into(),
        omac_facade::keeper::SUBCOMMAND.into(),
    ]
}

/// A fresh temp dir with a private (0700) `run/` inside for the socket and logs.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("temp dir");
    let run = t.path().join("run");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&run)
        .expect("run dir");
    (t, run)
}

/// The secret every test sidecar gets.
pub const SECRET: &str = "s3cr3t-Echo_key";

/// The fingerprint the sidecar must report for [`SECRET`].
pub fn fingerprint() -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(SECRET.as_bytes());
    format!("sha256:{}", &hex::encode(h)[..12])
}

/// How a test wants its facade.
pub struct Options {
    pub max_body: u64,
    pub idle: Duration,
    pub verbose: bool,
    pub restart: RestartPolicy,
    pub header_timeout: Duration,
    pub allowed_uids: Vec<u32>,
    pub tcp: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_body: 1024 * 1024,
            idle: Duration::from_secs(30),
            verbose: false,
            restart: RestartPolicy {
                initial: Duration::from_millis(100),
                ..RestartPolicy::default()
            },
            header_timeout: Duration::from_secs(20),
            allowed_uids: Vec::new(),
            tcp: false,
        }
    }
}

/// A running facade with the echo-rest sidecar on mount `echo`.
pub struct Harness {
    pub tmp: tempfile::TempDir,
    pub run: PathBuf,
    pub routes: RouteTable,
    pub sup: Supervisor,
    pub facade: Option<FacadeHandle>,
}

impl Harness {
    pub async fn start(opts: Options) -> Harness {
        let (tmp, run) = scratch();
        let mut route = RouteConfig::new("echo", "echo-rest");
        route.skill_dir = Some(echo_dir());
        route.max_body_bytes = opts.max_body;
        route.idle_timeout = opts.idle;
        let routes = RouteTable::new(vec![route]).expect("routes");
        let mut sc = SupervisorConfig::new(run.join("logs"));
        sc.keeper = keeper();
        sc.stop_grace = Duration::from_secs(3);
        let sup = Supervisor::new(sc, routes.clone());
        let mut spec = SidecarSpec::new(
            "echo-rest",
            "echo",
            echo_dir(),
            vec!["python3".into(), "scripts/sidecar.py".into()],
            tmp.path(),
        );
        spec.config = vec![
            ("ECHO_GREETING".into(), "bonjour".into()),
            ("ECHO_VERBOSE".into(), opts.verbose.to_string()),
            ("ECHO_MAX_TICK".into(), "50".into()),
            ("ECHO_MODE".into(), "strict".into()),
        ];
        spec.secrets = vec![("ECHO_API_KEY".into(), Secret::new(SECRET))];
        spec.health = HealthSpec {
            path: "/status".into(),
            initial_delay: Duration::from_millis(20),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(20),
        };
        spec.restart = opts.restart;
        sup.start(vec![spec]).await.expect("sidecar healthy");
        let mut fc = FacadeConfig::new(run.join("bridge.sock"));
        fc.access_log = Some(run.join("logs/facade.log"));
        fc.header_read_timeout = opts.header_timeout;
        fc.allowed_uids = opts.allowed_uids;
        if opts.tcp {
            fc.tcp = Some(omac_facade::TcpConfig {
                port: 0,
                token: None,
            });
        }
        let facade = omac_facade::start(fc, routes.clone())
            .await
            .expect("facade");
        Harness {
            tmp,
            run,
            routes,
            sup,
            facade: Some(facade),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.run.join("bridge.sock")
    }

    /// Waits until the echo route is ready again.
    pub async fn ready(&self) -> u16 {
        match self
            .routes
            .wait_for("echo", Duration::from_secs(60), |s| {
                matches!(s, RouteState::Ready { .. })
            })
            .await
        {
            Some(RouteState::Ready { port }) => port,
            other => panic!("route not ready: {other:?}"),
        }
    }

    /// Shuts everything down; the scratch directory lives as long as the returned value.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(f) = self.facade.take() {
            f.shutdown().await;
        }
        self.sup.shutdown().await;
        self.tmp
    }
}

/// A keep-alive HTTP/1.1 client connection over a Unix socket.
pub struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Client {
        let s = UnixStream::connect(socket)
            .await
            .expect("connect to the facade");
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(s))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Client { send }
    }

    /// Sends a request and returns the answer with its body still streaming.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        self.send.ready().await?;
        self.send.send_request(req).await
    }

    /// GET `path` and collect the answer.
    pub async fn get(&mut self, path: &str) -> (u16, hyper::HeaderMap, Bytes) {
        let req = Request::get(path)
            .header("host", "omac")
            .body(Full::new(Bytes::new()))
            .expect("request");
        collect(self.send(req).await.expect("answer")).await
    }
}

/// Collects an answer.
pub async fn collect(r: Response<Incoming>) -> (u16, hyper::HeaderMap, Bytes) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// One request on a fresh connection.
pub async fn get(socket: &Path, path: &str) -> (u16, hyper::HeaderMap, Bytes) {
    Client::connect(socket).await.get(path).await
}

/// JSON of a body.
pub fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

/// The `X-Omac-Reason` of an answer.
pub fn reason(h: &hyper::HeaderMap) -> String {
    h.get("x-omac-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Writes raw bytes on a new connection and reads the answer: until its `Content-Length`
/// is complete, else until the facade closes the connection (or 10 s pass).
pub async fn raw(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if complete(&out) {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let len = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    matches!(len, Some(n) if out.len() >= end + 4 + n)
}

/// True when no process with this pid exists any more (a zombie counts as gone).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// True when no live process is left in process group `pgid`.
pub fn group_gone(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // fields after the name: state ppid pgrp ...
        if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
            return false;
        }
    }
    true
}

/// Polls `cond` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
