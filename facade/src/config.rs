//! The facade's listener and limit settings (the session code fills them from omac.yaml and
//! the launcher config; the standalone harness from its JSON file).

use std::path::PathBuf;
use std::time::Duration;

/// How the facade listens and which limits apply to every connection.
#[derive(Debug, Clone)]
pub struct FacadeConfig {
    /// The Unix socket (mode 0600); its directory is created 0700 or must already be private.
    pub socket: PathBuf,
    /// Also listen on `127.0.0.1` TCP (with a bearer token), when set.
    pub tcp: Option<TcpConfig>,
    /// Peer uids allowed on the Unix socket (SO_PEERCRED); empty means omac's own uid only.
    pub allowed_uids: Vec<u32>,
    /// Access log file (one JSON line per request); none means no access log.
    pub access_log: Option<PathBuf>,
    /// Called for every request answered (the session's audit log), with or without a file.
    pub observer: Option<crate::RequestObserver>,
    /// Answers `/sandbox/denied?path=P` (the session's bundle knows what is hidden); none
    /// answers 404 `denied-endpoint-disabled`.
    pub denied: Option<crate::DeniedChecker>,
    /// Longest time a client may take to send a request head; it also bounds how long an idle
    /// keep-alive connection stays open (slow clients are cut off after it).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted; 431 beyond.
    pub max_header_bytes: usize,
    /// Most request headers accepted; 431 beyond.
    pub max_headers: usize,
    /// Most client connections at once; further connections are closed at once.
    pub max_connections: usize,
    /// How long `shutdown` lets requests in flight finish before closing them.
    pub shutdown_grace: Duration,
    /// The version shown in the status document.
    pub version: String,
    /// Dial timeout towards a sidecar (a sidecar that does not accept in time: 504).
    pub connect_timeout: Duration,
    /// Threads serving connections, each with its own single-threaded runtime and upstream
    /// pool (no cross-thread hand-offs per request); the default is the number of CPUs, at
    /// most 2.
    pub workers: usize,
    /// Serve plain request/response exchanges on the fast path (the general hyper path
    /// still serves everything else); false serves every request through hyper.
    pub fast_path: bool,
}

/// The optional loopback TCP listener. A request carries the token in `Authorization:
/// Bearer TOKEN` or `X-Omac-Facade-Token: TOKEN`, or as the first segment of its path
/// (`/TOKEN/echo/status`, removed before routing): a base URL with the token in it lets
/// plain HTTP clients (`curl $OMAC_BASE/echo/status`) authenticate without headers.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Port on 127.0.0.1 (0: any free port; the bound one is in the handle).
    pub port: u16,
    /// The bearer token every TCP request must carry; generated (256 bits) when none is given.
    pub token: Option<String>,
}

impl FacadeConfig {
    /// The defaults for a facade on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> FacadeConfig {
        FacadeConfig {
            socket: socket.into(),
            tcp: None,
            allowed_uids: Vec::new(),
            access_log: None,
            observer: None,
            denied: None,
            header_read_timeout: Duration::from_secs(20),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(2),
            version: env!("CARGO_PKG_VERSION").to_string(),
            connect_timeout: Duration::from_secs(2),
            workers: std::thread::available_parallelism()
                .map(|n| n.get().min(2))
                .unwrap_or(1),
            fast_path: true,
        }
    }
}
