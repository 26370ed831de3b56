//! The listening side: one Unix socket per session (the socket is the capability: whoever
//! can connect to it is the session's sandbox, so there are no proxy credentials), the
//! first byte of each connection choosing SOCKS5 (0x05) or HTTP.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use omac_bundle::ext::{Extension, NetworkPolicy};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::addr::Guard;
use crate::audit::{Audit, LogAudit};
use crate::error::Error;
use crate::pages::Pages;
use crate::policy::{Parts, Policy};
use crate::profile_ref::ProfileRef;
use crate::prompt::{self, Prompter};
use crate::resolve::{Resolver, SystemResolver};

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 8192;
/// How long a new connection may stay silent before it is closed.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a session's proxy needs; see [`Builder::new`] for the defaults.
pub struct Builder {
    network: NetworkPolicy,
    profile: ProfileRef,
    pages: Option<PathBuf>,
    audit: Arc<dyn Audit>,
    prompter: Option<Arc<dyn Prompter>>,
    resolver: Arc<dyn Resolver>,
    env: HashMap<String, String>,
    exempt: Vec<SocketAddr>,
}

impl Builder {
    /// A proxy for `network` (omac.json's `network`) and `profile`. Defaults: learned
    /// decisions in `profile.pages_path()`, decisions logged only, prompts from the
    /// environment (`OMAC_PROMPT_STUB`, else dialogs), the system resolver, the upstream
    /// proxy and `NO_PROXY` from this process's environment.
    pub fn new(network: NetworkPolicy, profile: ProfileRef) -> Builder {
        Builder {
            pages: profile.pages_path(),
            network,
            profile,
            audit: Arc::new(LogAudit),
            prompter: None,
            resolver: Arc::new(SystemResolver),
            env: std::env::vars().collect(),
            exempt: Vec::new(),
        }
    }

    /// A proxy for a bundle's `omac.json`; `user_config_dir` is `~/.config/omac`.
    pub fn from_extension(ext: &Extension, user_config_dir: Option<&Path>) -> Builder {
        Builder::new(
            ext.network.clone(),
            ProfileRef::from_sources(&ext.profile.name, &ext.profile.sources, user_config_dir),
        )
    }

    /// Where permanent decisions are kept (`None`: in memory only).
    pub fn pages_file(mut self, path: Option<PathBuf>) -> Builder {
        self.pages = path;
        self
    }

    /// Where `net.decision` events go.
    pub fn audit(mut self, audit: Arc<dyn Audit>) -> Builder {
        self.audit = audit;
        self
    }

    /// The dialog backend.
    pub fn prompter(mut self, prompter: Arc<dyn Prompter>) -> Builder {
        self.prompter = Some(prompter);
        self
    }

    /// Name resolution.
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Builder {
        self.resolver = resolver;
        self
    }

    /// The environment read for the upstream proxy, `NO_PROXY` and the prompt backend
    /// (instead of this process's).
    pub fn environment(mut self, env: HashMap<String, String>) -> Builder {
        self.env = env;
        self
    }

    /// Test only: lets the proxy connect to exactly `addr` (a test listener on loopback)
    /// despite the hard deny. Compiled only with the `test-support` feature, which the
    /// omac binary never enables; no profile field can reach it.
    #[cfg(feature = "test-support")]
    pub fn exempt_for_tests(mut self, addr: SocketAddr) -> Builder {
        self.exempt.push(addr);
        self
    }

    /// Builds the policy (without listening), e.g. to ask it questions directly.
    pub fn policy(self) -> Result<Arc<Policy>, Error> {
        let upstream = crate::upstream::select(
            self.network.upstream_proxy.as_deref(),
            &self.network.no_proxy,
            &self.env,
        )?;
        let mut guard = Guard::new(&self.network.allow_private);
        guard.exempt = self.exempt;
        let prompter = self.prompter.unwrap_or_else(|| prompt::from_env(&self.env));
        Ok(Arc::new(Policy::new(Parts {
            network: self.network,
            profile: self.profile,
            pages: Pages::open(self.pages),
            prompter,
            resolver: self.resolver,
            audit: self.audit,
            upstream,
            guard,
        })))
    }

    /// Listens on `socket` (mode 0600; a stale socket file is replaced, a live one is an
    /// error). Must be called inside a tokio runtime. Raises this process's soft limit
    /// of open files to its hard limit: each tunnel holds six descriptors.
    pub fn bind(self, socket: &Path) -> Result<Egress, Error> {
        let policy = self.policy()?;
        let listen_err = |source: io::Error| Error::Listen {
            path: socket.to_path_buf(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(socket) {
            if !meta.file_type().is_socket() {
                return Err(listen_err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                )));
            }
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(listen_err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another proxy is listening there",
                )));
            }
            std::fs::remove_file(socket).map_err(listen_err)?;
        }
        let listener = UnixListener::bind(socket).map_err(listen_err)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(listen_err)?;
        raise_nofile();
        Ok(Egress {
            listener,
            policy,
            path: socket.to_path_buf(),
        })
    }
}

fn raise_nofile() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// A bound proxy, not yet serving.
pub struct Egress {
    listener: UnixListener,
    policy: Arc<Policy>,
    path: PathBuf,
}

/// A running proxy; dropping it (or [`Handle::shutdown`]) stops it and removes its socket.
pub struct Handle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    path: PathBuf,
    policy: Arc<Policy>,
}

impl Egress {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy, shared with every connection.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Serves on the current tokio runtime until the handle is shut down or dropped.
    pub fn spawn(self) -> Handle {
        let (stop, rx) = watch::channel(false);
        let path = self.path.clone();
        let policy = self.policy.clone();
        let task = tokio::spawn(self.serve_until(rx));
        Handle {
            stop,
            task: Some(task),
            path,
            policy,
        }
    }

    async fn serve_until(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            tokio::select! {
                _ = stop.changed() => return,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => {
                        large_send_buffer(&stream);
                        let policy = self.policy.clone();
                        tokio::spawn(async move {
                            connection(policy, stream).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("egress proxy accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

impl Handle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy (its learned decisions, for instance).
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Stops accepting, waits for the accept loop to end, removes the socket. Tunnels
    /// already open continue until they close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asks for a 4 MiB send buffer on a client socket (the kernel caps it at
/// `net.core.wmem_max`). A Unix socket's sender may only queue its send buffer, 208 KiB by
/// default, so downloads stalled on every 208 KiB; the memory is used only while the
/// client is slower than the destination. Measured in `bench/egress.sh`.
fn large_send_buffer(s: &UnixStream) {
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt with a c_int option value on a descriptor we hold.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!("SO_SNDBUF: {}", io::Error::last_os_error());
    }
}

async fn first_byte(s: &UnixStream) -> io::Result<Option<u8>> {
    s.async_io(Interest::READABLE, || {
        let mut b = [0u8; 1];
        // SAFETY: recv into a one-byte buffer we own, on a descriptor we hold.
        let n = unsafe {
            libc::recv(
                s.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            0 => Ok(None),
            _ => Ok(Some(b[0])),
        }
    })
    .await
}

async fn connection(policy: Arc<Policy>, stream: UnixStream) {
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, first_byte(&stream)).await {
        Ok(Ok(Some(5))) => crate::socks::serve(policy, stream).await,
        Ok(Ok(Some(4))) => {
            // SOCKS4: answer "rejected" in its own format rather than parse it as HTTP, and
            // audit the destination it named like any refusal.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = stream;
            let mut head = [0u8; 8];
            let read = tokio::time::timeout(FIRST_BYTE_TIMEOUT, s.read_exact(&mut head)).await;
            if let Ok(Ok(_)) = read {
                let port = u16::from_be_bytes([head[2], head[3]]);
                let ip = std::net::Ipv4Addr::new(head[4], head[5], head[6], head[7]);
                policy.refuse_unsupported(&ip.to_string(), port, "socks4", "SOCKS4");
            }
            let _ = s.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0]).await;
            tracing::info!("a SOCKS4 client was refused: only SOCKS5 and HTTP are served");
        }
        Ok(Ok(Some(_))) => crate::http::serve(policy, stream).await,
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {}
    }
}
