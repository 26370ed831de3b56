//! The facade server: accept loops on the Unix socket (peer uid checked with SO_PEERCRED)
//! and the optional TCP port, one hyper HTTP/1.1 connection task per client, graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::access_log::{self, AccessLog};
use crate::handler::{handle, Shared, Transport};
use crate::pool::Pool;
use crate::routes::RouteTable;
use crate::{auth, fast, listen, Error, FacadeConfig};

/// A running facade.
#[derive(Debug)]
pub struct FacadeHandle {
    socket: PathBuf,
    tcp_addr: Option<SocketAddr>,
    token: Option<String>,
    routes: RouteTable,
    shutdown: watch::Sender<bool>,
    workers: Vec<oneshot::Receiver<()>>,
}

impl FacadeHandle {
    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The bound TCP address, when TCP was asked for.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bearer token TCP requests need, when TCP was asked for.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The route table the facade serves (the supervisor updates it).
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// Stops accepting, lets requests in flight finish within the grace period, closes the
    /// rest (spliced connections at once) and removes the socket file.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for FacadeHandle {
    /// Dropped without `shutdown`: the workers stop on their own and the socket goes.
    fn drop(&mut self) {
        if !*self.shutdown.borrow() {
            let _ = self.shutdown.send(true);
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// Starts the facade on the configured listeners, serving `routes`. The facade runs on its
/// own threads (`config.workers`), whatever runtime calls this.
pub async fn start(config: FacadeConfig, routes: RouteTable) -> Result<FacadeHandle, Error> {
    bind(config, routes)?.serve()
}

/// A facade whose listeners are bound and whose access log is open, not yet served:
/// clients that connect now wait in the listen queue until [`Bound::serve`].
pub struct Bound {
    config: FacadeConfig,
    routes: RouteTable,
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
    tcp_addr: Option<std::net::SocketAddr>,
    token: Option<String>,
    log_file: Option<Arc<access_log::LogSink>>,
}

impl Bound {
    /// The loopback address of the TCP listener, if the facade has one.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp_addr
    }

    /// The token TCP clients must present, if the facade listens on TCP.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Does all of [`start`] that can fail on bad configuration or a busy path: binds the
/// listeners and opens the access log. No thread is started.
pub fn bind(config: FacadeConfig, routes: RouteTable) -> Result<Bound, Error> {
    let unix = listen::bind_unix(&config.socket)?;
    let (tcp, token) = match &config.tcp {
        Some(t) => {
            let token = match &t.token {
                Some(tok) if tok.len() >= 16 => tok.clone(),
                Some(_) => {
                    return Err(Error::config(
                        "tcp.token",
                        "shorter than 16 characters",
                        "leave it unset to get a random 256-bit token",
                    ))
                }
                None => auth::generate_token()
                    .map_err(|e| Error::io("drawing the facade token", "getrandom", e))?,
            };
            (Some(listen::bind_tcp(t.port)?), Some(token))
        }
        None => (None, None),
    };
    let tcp_addr = match &tcp {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| Error::io("reading the facade's TCP address", "127.0.0.1", e))?,
        ),
        None => None,
    };
    let log_file = match &config.access_log {
        Some(p) => Some(access_log::open(p)?),
        None => None,
    };
    Ok(Bound {
        config,
        routes,
        unix,
        tcp,
        tcp_addr,
        token,
        log_file,
    })
}

impl Bound {
    /// Starts the worker threads that serve the bound listeners.
    pub fn serve(self) -> Result<FacadeHandle, Error> {
        let Bound {
            config,
            routes,
            unix,
            tcp,
            tcp_addr,
            token,
            log_file,
        } = self;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(config.max_headers)
            .keep_alive(true);
        let allowed: Arc<[u32]> = if config.allowed_uids.is_empty() {
            // SAFETY: geteuid cannot fail.
            Arc::from(vec![unsafe { libc::geteuid() }])
        } else {
            Arc::from(config.allowed_uids.clone())
        };
        let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let io_err = |what: &'static str| {
            let socket = config.socket.clone();
            move |e| Error::io(what, socket.clone(), e)
        };
        unix.set_nonblocking(true)
            .map_err(io_err("preparing the facade socket"))?;
        if let Some(t) = &tcp {
            t.set_nonblocking(true)
                .map_err(io_err("preparing the facade's TCP port"))?;
        }
        let mut workers = Vec::new();
        for i in 0..config.workers.max(1) {
            let unix = unix
                .try_clone()
                .map_err(io_err("sharing the facade socket"))?;
            let tcp = match &tcp {
                Some(t) => Some(
                    t.try_clone()
                        .map_err(io_err("sharing the facade's TCP port"))?,
                ),
                None => None,
            };
            let shared = Arc::new(Shared {
                routes: routes.clone(),
                pool: Pool::new(),
                raw: Pool::new(),
                connect_timeout: config.connect_timeout,
                log: (log_file.is_some() || config.observer.is_some())
                    .then(|| AccessLog::with(log_file.clone(), config.observer.clone())),
                token: token.clone(),
                denied: config.denied.clone(),
                version: config.version.clone(),
                shutdown: shutdown_rx.clone(),
                stop: Arc::default(),
                fast: config.fast_path,
                header_timeout: config.header_read_timeout,
                max_head: config.max_header_bytes.max(8192),
                max_fields: config.max_headers,
            });
            let ctx = Arc::new(LoopCtx {
                shared,
                builder: builder.clone(),
                allowed: allowed.clone(),
                permits: permits.clone(),
                grace: config.shutdown_grace,
            });
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err("starting a facade worker"))?;
            let rx = shutdown_rx.clone();
            let log = ctx.shared.log.clone();
            let (done_tx, done_rx) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("omac-facade-{i}"))
                .spawn(move || {
                    rt.block_on(worker(unix, tcp, ctx, rx));
                    // Dropping the runtime ends what is left (spliced connections, whose log
                    // lines are written then), and the last lines go out.
                    drop(rt);
                    if let Some(log) = log {
                        log.flush();
                    }
                    let _ = done_tx.send(());
                })
                .map_err(io_err("starting a facade worker thread"))?;
            workers.push(done_rx);
        }
        tracing::info!(socket = %config.socket.display(), tcp = ?tcp_addr, "facade listening");
        Ok(FacadeHandle {
            socket: config.socket,
            tcp_addr,
            token,
            routes,
            shutdown: shutdown_tx,
            workers,
        })
    }
}

/// One worker thread: accept loops on its clones of the listeners.
async fn worker(
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
    ctx: Arc<LoopCtx>,
    shutdown: watch::Receiver<bool>,
) {
    let mut loops = Vec::new();
    {
        // Housekeeping: write out the access log, close long-idle sidecar connections.
        let shared = ctx.shared.clone();
        let mut rx = shutdown.clone();
        loops.push(tokio::spawn(async move {
            let mut ticks = 0u32;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(access_log::FLUSH_EVERY) => {}
                    _ = stopped(&mut rx) => {
                        // Idle fast-path connections close now; busy ones after their answer.
                        shared.stop.raise();
                        break;
                    }
                }
                if let Some(log) = &shared.log {
                    log.flush();
                }
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(10) {
                    release_free_memory();
                }
                if ticks.is_multiple_of(50) {
                    shared.pool.sweep();
                }
            }
        }));
    }
    match UnixListener::from_std(unix) {
        Ok(u) => loops.push(tokio::spawn(accept_loop(
            Listener::Unix(u),
            ctx.clone(),
            shutdown.clone(),
        ))),
        Err(e) => tracing::error!("facade worker cannot use the socket: {e}"),
    }
    if let Some(t) = tcp {
        match TcpListener::from_std(t) {
            Ok(t) => loops.push(tokio::spawn(accept_loop(
                Listener::Tcp(t),
                ctx.clone(),
                shutdown,
            ))),
            Err(e) => tracing::error!("facade worker cannot use the TCP port: {e}"),
        }
    }
    for l in loops {
        let _ = l.await;
    }
}

/// What a worker's accept loops and connections share.
pub(crate) struct LoopCtx {
    pub(crate) shared: Arc<Shared>,
    builder: http1::Builder,
    allowed: Arc<[u32]>,
    permits: Arc<Semaphore>,
    grace: std::time::Duration,
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

async fn accept_loop(listener: Listener, ctx: Arc<LoopCtx>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => break,
            a = accept(&listener) => a,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("facade accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = ctx.permits.clone().try_acquire_owned() else {
            tracing::warn!("facade connection limit reached; closing a new connection");
            continue;
        };
        let ctx2 = ctx.clone();
        let rx = shutdown.clone();
        match conn {
            Accepted::Unix(s) => {
                let uid = s.peer_cred().map(|c| c.uid());
                match uid {
                    Ok(uid) if ctx.allowed.contains(&uid) => {
                        conns.spawn(async move {
                            if ctx2.shared.fast {
                                fast::serve(s, Transport::Unix, ctx2, rx).await;
                            } else {
                                serve(s, Transport::Unix, ctx2, rx).await;
                            }
                            drop(permit);
                        });
                    }
                    other => {
                        tracing::warn!(peer_uid = ?other.as_ref().ok(), "refusing a facade connection from a uid that is not allowed");
                        conns.spawn(async move {
                            refuse_peer(s, other.ok()).await;
                            drop(permit);
                        });
                    }
                }
            }
            Accepted::Tcp(s) => {
                let _ = s.set_nodelay(true);
                conns.spawn(async move {
                    if ctx2.shared.fast {
                        fast::serve(s, Transport::Tcp, ctx2, rx).await;
                    } else {
                        serve(s, Transport::Tcp, ctx2, rx).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    // Connections were told to finish (graceful_shutdown); give them the grace period.
    let drained = tokio::time::timeout(ctx.grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            "closing {} facade connections after the grace period",
            conns.len()
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Unix(u) => u.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(t) => t.accept().await.map(|(s, _)| Accepted::Tcp(s)),
    }
}

/// Hands memory freed after a burst of connections back to the system. glibc keeps it in
/// its per-thread arenas otherwise, and each burst then leaves the process a little bigger
/// (measured: 11 MiB after one burst of 256 connections, 17 MiB after four).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves once the facade shuts down.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves one client connection on the general (hyper) path until it closes or the facade
/// shuts down.
pub(crate) async fn serve<S>(
    stream: S,
    transport: Transport,
    ctx: Arc<LoopCtx>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = ctx.shared.clone();
    let svc = service_fn(move |req| handle(shared.clone(), transport, req));
    let conn = ctx
        .builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = crate::server::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!("facade connection ended: {e}");
    }
}

/// Answers a connection from a uid that may not use the facade, then closes it.
async fn refuse_peer(mut s: tokio::net::UnixStream, uid: Option<u32>) {
    let body = match uid {
        Some(u) => format!("omac: peer uid {u} is not allowed on this socket\n"),
        None => "omac: the peer's credentials could not be read\n".to_string(),
    };
    let msg = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nX-Omac-Reason: peer-uid\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = s.write_all(msg.as_bytes()).await;
        let _ = s.shutdown().await;
        // Read what the client sent so closing does not reset the connection before it
        // has read the answer.
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while let Ok(n) = s.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    })
    .await;
}
