//! Moving bytes both ways between the client (a Unix socket) and the destination (TCP).
//!
//! On Linux each direction is a splice(2) loop through a pipe: socket → pipe → socket,
//! without copying through user space. Each direction ends with a half-close, so protocols
//! that shut down their sending side (ssh, git) keep working; an error in either
//! direction tears the whole tunnel down. Elsewhere, a copy with large buffers.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

/// Bytes moved by one tunnel: (client → destination, destination → client).
pub type Moved = (u64, u64);

/// Relays until both sides have finished; `to_server` and `to_client` are bytes already
/// read from one side (after a protocol handshake) that must reach the other first.
pub async fn relay(
    mut client: UnixStream,
    mut server: TcpStream,
    to_server: &[u8],
    to_client: &[u8],
) -> io::Result<Moved> {
    if !to_server.is_empty() {
        server.write_all(to_server).await?;
    }
    if !to_client.is_empty() {
        client.write_all(to_client).await?;
    }
    let (up, down) = copy(client, server).await?;
    Ok((up + to_server.len() as u64, down + to_client.len() as u64))
}

#[cfg(target_os = "linux")]
async fn copy(client: UnixStream, server: TcpStream) -> io::Result<Moved> {
    match linux::splice_both(&client, &server).await {
        Ok(m) => Ok(m),
        Err(linux::Fallback) => fallback(client, server).await,
    }
}

#[cfg(not(target_os = "linux"))]
async fn copy(client: UnixStream, server: TcpStream) -> io::Result<Moved> {
    fallback(client, server).await
}

/// Buffer size of the portable copy.
const BUFFER: usize = 256 * 1024;

async fn fallback(mut client: UnixStream, mut server: TcpStream) -> io::Result<Moved> {
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUFFER, BUFFER).await
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use tokio::io::Interest;
    use tokio::net::{TcpStream, UnixStream};

    use super::Moved;

    /// Pipe capacity asked for. Unprivileged users share a budget of pipe pages
    /// (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default) and each tunnel holds two
    /// pipes, so this stays moderate; a refusal leaves the default (64 KiB).
    const PIPE_SIZE: i32 = 256 * 1024;

    /// No pipe could be made (descriptors exhausted); copy instead (nothing was moved).
    pub struct Fallback;

    /// One pipe (read end, write end).
    struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
        size: usize,
    }

    fn pipe() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills two descriptors that we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own.
        let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let size = if got > 0 { got as usize } else { 64 * 1024 };
        Ok(Pipe { r, w, size })
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: splice between descriptors we hold; null offsets for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// A tokio socket whose readiness we wait on while splicing its descriptor.
    pub trait Socket {
        /// The descriptor.
        fn fd(&self) -> RawFd;
        /// Waits for readiness and runs `f` (which must return WouldBlock when not ready).
        fn ready_io<R>(
            &self,
            interest: Interest,
            f: impl FnMut() -> io::Result<R>,
        ) -> impl std::future::Future<Output = io::Result<R>>;
        /// Shuts the writing side.
        fn shut_write(&self) {
            // SAFETY: shutdown on a descriptor we hold; errors (already closed) are moot.
            unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
        }
    }

    macro_rules! socket {
        ($t:ty) => {
            impl Socket for $t {
                fn fd(&self) -> RawFd {
                    self.as_raw_fd()
                }
                fn ready_io<R>(
                    &self,
                    interest: Interest,
                    f: impl FnMut() -> io::Result<R>,
                ) -> impl std::future::Future<Output = io::Result<R>> {
                    self.async_io(interest, f)
                }
            }
        };
    }
    socket!(UnixStream);
    socket!(TcpStream);

    /// Moves bytes from `src` to `dst` until `src` ends, then half-closes `dst`.
    async fn pump(src: &impl Socket, dst: &impl Socket, p: &Pipe) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = src
                .ready_io(Interest::READABLE, || {
                    splice(src.fd(), p.w.as_raw_fd(), p.size)
                })
                .await?;
            if n == 0 {
                dst.shut_write();
                return Ok(total);
            }
            let mut left = n;
            while left > 0 {
                let m = dst
                    .ready_io(Interest::WRITABLE, || {
                        splice(p.r.as_raw_fd(), dst.fd(), left)
                    })
                    .await?;
                if m == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "peer stopped reading",
                    ));
                }
                left -= m;
                total += m as u64;
            }
        }
    }

    /// Both directions, until both end or one fails.
    pub async fn splice_both(client: &UnixStream, server: &TcpStream) -> Result<Moved, Fallback> {
        let (Ok(up), Ok(down)) = (pipe(), pipe()) else {
            return Err(Fallback);
        };
        let r = tokio::try_join!(pump(client, server, &up), pump(server, client, &down));
        match r {
            Ok(m) => Ok(m),
            Err(e) => {
                tracing::debug!("tunnel closed: {e}");
                Ok((0, 0))
            }
        }
    }
}
