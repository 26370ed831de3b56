//! The host side of open and published ports.
//!
//! - An open port (`--open-port 5432`, `network.open_port`): init listens on
//!   `127.0.0.1:5432` inside the sandbox and relays each connection to
//!   `/run/omac/port-5432.sock`; that is a socket of the session's runtime directory, where
//!   this module accepts and connects to `127.0.0.1:5432` on the host.
//! - A published port (`--publish 3000`, `network.publish_port`): this module listens on
//!   the host's `127.0.0.1:3000` and relays each connection to `publish-3000.sock` in the
//!   runtime directory, where init (which created that socket before building the view)
//!   accepts and connects to `127.0.0.1:3000` inside the sandbox's network namespace.
//!
//! Both sockets live in the session's private 0700 directory; only the published port
//! listens where other local users can connect, as any server on 127.0.0.1 would.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The socket name (in the runtime directory and under `/run/omac`) of an open port.
pub fn open_port_name(port: u16) -> String {
    format!("port-{port}.sock")
}

/// The socket name in the runtime directory of a published port.
pub fn publish_name(port: u16) -> String {
    format!("publish-{port}.sock")
}

async fn relay<A, B>(mut a: A, mut b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

/// Serves open port `port` on the Unix socket `path` (created 0600).
pub fn open_port(path: &Path, port: u16) -> io::Result<JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((client, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(up) => {
                        let _ = up.set_nodelay(true);
                        relay(client, up).await
                    }
                    Err(e) => tracing::info!("open port {port}: host 127.0.0.1:{port}: {e}"),
                }
            });
        }
    }))
}

/// Listens on the host's `127.0.0.1:port` for published port `port`, relaying to `sock`.
pub async fn publish(port: u16, sock: PathBuf) -> io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(("127.0.0.1", port)).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((client, _)) = l.accept().await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let sock = sock.clone();
            tokio::spawn(async move {
                match UnixStream::connect(&sock).await {
                    Ok(inner) => relay(client, inner).await,
                    Err(e) => tracing::info!(
                        "published port {port}: the sandbox is not listening yet: {e}"
                    ),
                }
            });
        }
    }))
}
