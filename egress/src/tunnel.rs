//! Moving bytes both ways between the client (a Unix socket) and the destination (TCP).
//!
//! Each direction ends with a half-close (protocols that shut their sending side, as ssh
//! and git do, keep working); an error in either direction tears the tunnel down, and so
//! does a client that closes its socket altogether while the destination stays silent.
//!
//! How each direction copies was chosen by measurement (`bench/egress.sh`):
//! - destination → client: splice(2) through a pipe. TCP pages move into the pipe and on
//!   into the Unix socket by reference, so the proxy never touches the bytes. The pipe is
//!   made on the first byte, starts at the default 64 KiB and grows to 1 MiB once the flow
//!   has moved 4 MiB: an
//!   unprivileged user's pipes share a budget (`/proc/sys/fs/pipe-user-pages-soft`,
//!   64 MiB by default) and many idle tunnels must not spend it.
//! - client → destination: a buffered copy. Splicing *out of* a Unix socket copies its
//!   data into fresh pages anyway and measured slower than read/write here. The buffer is
//!   allocated on the first byte, grows from 16 KiB to 256 KiB while reads fill it, and is
//!   freed after two idle seconds, so idle tunnels cost almost nothing.
//!
//! Elsewhere than Linux, and when no pipe can be had, both directions use the buffered copy.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

/// Bytes moved by one tunnel: (client → destination, destination → client).
pub type Moved = (u64, u64);

/// First size of a copy buffer.
const SMALL: usize = 16 * 1024;
/// Largest size of a copy buffer.
const LARGE: usize = 256 * 1024;
/// A copy buffer is freed after this long without data.
const IDLE: Duration = Duration::from_secs(2);

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
    let down = async {
        #[cfg(target_os = "linux")]
        {
            // The pipe is made when the first bytes arrive: idle tunnels hold none.
            server.readable().await?;
            if let Some(pipe) = linux::Pipe::new() {
                return linux::splice(&server, &client, pipe).await;
            }
        }
        copy(&server, &client).await
    };
    let up = copy(&client, &server);
    tokio::pin!(up, down);
    let (mut up_n, mut down_n) = (None, None);
    loop {
        tokio::select! {
            r = &mut up, if up_n.is_none() => up_n = Some(r?),
            r = &mut down, if down_n.is_none() => down_n = Some(r?),
            // The client sent its end and then closed its socket altogether: nobody will
            // read what the destination might still send, so do not wait for it forever.
            _ = hung_up(&client), if up_n.is_some() && down_n.is_none() => {
                down_n = Some(0);
            }
        }
        if let (Some(u), Some(d)) = (up_n, down_n) {
            return Ok((u + to_server.len() as u64, d + to_client.len() as u64));
        }
    }
}

/// How often a half-closed tunnel checks whether its client is gone.
const HANGUP_CHECK: Duration = Duration::from_secs(2);

/// Resolves once the peer of `client` has closed its socket (not merely shut its writing
/// side): the kernel then reports POLLHUP on ours.
async fn hung_up(client: &UnixStream) {
    loop {
        tokio::time::sleep(HANGUP_CHECK).await;
        let mut p = libc::pollfd {
            fd: client.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: poll on one descriptor we hold, without waiting.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
    }
}

/// A tokio socket a direction reads from or writes to.
pub trait Socket {
    /// Waits until the socket may be readable.
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
    /// Waits until the socket may be writable.
    fn writable(&self) -> impl Future<Output = io::Result<()>>;
    /// Reads without waiting (WouldBlock when nothing is there).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes without waiting (WouldBlock when the socket is full).
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// The descriptor.
    fn fd(&self) -> RawFd;
    /// Shuts the writing side (the peer reads end of stream).
    fn shut_write(&self) {
        // SAFETY: shutdown on a descriptor we hold; an error (already closed) is moot.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl Future<Output = io::Result<()>> {
                <$t>::writable(self)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn fd(&self) -> RawFd {
                self.as_raw_fd()
            }
        }
    };
}
socket!(UnixStream);
socket!(TcpStream);

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Copies `src` to `dst` through a buffer that grows with the flow and is freed when idle.
pub async fn copy(src: &impl Socket, dst: &impl Socket) -> io::Result<u64> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            if tokio::time::timeout(IDLE, src.readable()).await.is_err() {
                buf = Vec::new();
                src.readable().await?;
            }
        } else {
            src.readable().await?;
        }
        if buf.is_empty() {
            buf = vec![0u8; SMALL];
        }
        let n = match src.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            dst.shut_write();
            return Ok(total);
        }
        let mut off = 0;
        while off < n {
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if would_block(&e) => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        if n == buf.len() && buf.len() < LARGE {
            buf = vec![0u8; (buf.len() * 4).min(LARGE)];
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use tokio::io::Interest;
    use tokio::net::{TcpStream, UnixStream};

    use super::Socket;

    /// The pipe size of a bulk flow.
    const BULK_PIPE: i32 = 1 << 20;
    /// Bytes a flow moves before its pipe is enlarged.
    const BULK_AFTER: u64 = 4 << 20;
    /// A pipe smaller than this (the user's pipe budget is spent) is not worth splicing.
    const MIN_PIPE: usize = 64 * 1024;

    /// A pipe (read end, write end, capacity).
    pub struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
        size: usize,
    }

    impl Pipe {
        /// A non-blocking pipe of usable size, or `None` (then copy instead).
        pub fn new() -> Option<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: pipe2 fills two descriptors that we then own.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return None;
            }
            // SAFETY: both descriptors were just created and belong to nobody else.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: fcntl on a descriptor we own.
            let size = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
            let size = usize::try_from(size).ok()?;
            (size >= MIN_PIPE).then_some(Pipe { r, w, size })
        }

        fn grow(&mut self) {
            // SAFETY: fcntl on a descriptor we own; a refusal leaves the pipe as it was.
            let got = unsafe { libc::fcntl(self.w.as_raw_fd(), libc::F_SETPIPE_SZ, BULK_PIPE) };
            if let Ok(got) = usize::try_from(got) {
                self.size = self.size.max(got);
            }
        }
    }

    fn splice_once(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
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
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Moves `src` to `dst` through `pipe` until `src` ends, then half-closes `dst`. The
    /// sockets are non-blocking and so is the splice: it never holds the pipe while waiting.
    pub async fn splice(src: &TcpStream, dst: &UnixStream, mut pipe: Pipe) -> io::Result<u64> {
        let mut total = 0u64;
        let mut grown = false;
        loop {
            let n = src
                .async_io(Interest::READABLE, || {
                    splice_once(src.as_raw_fd(), pipe.w.as_raw_fd(), pipe.size)
                })
                .await?;
            if n == 0 {
                dst.shut_write();
                return Ok(total);
            }
            let mut left = n;
            while left > 0 {
                let m = dst
                    .async_io(Interest::WRITABLE, || {
                        splice_once(pipe.r.as_raw_fd(), dst.as_raw_fd(), left)
                    })
                    .await?;
                if m == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the client stopped reading",
                    ));
                }
                left -= m;
            }
            total += n as u64;
            if !grown && total >= BULK_AFTER {
                pipe.grow();
                grown = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A client that closes while the destination says nothing: the destination's side is
    /// closed too (within a few checks), nothing is left open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_departed_client_does_not_leave_the_destination_open() {
        let (client_end, proxy_end) = UnixStream::pair().unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_out = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut server_end, _) = l.accept().await.unwrap();
        let task = tokio::spawn(async move { relay(proxy_end, server_out, b"", b"").await });
        drop(client_end);
        // The destination sees end of stream (the client's end), then the connection closes
        // although it never sends anything itself.
        let mut b = [0u8; 1];
        assert_eq!(server_end.read(&mut b).await.unwrap(), 0);
        let done = tokio::time::timeout(Duration::from_secs(30), task).await;
        assert!(done.is_ok(), "the tunnel stayed open");
        // A half-close by a client that still reads keeps the tunnel working.
        let (client_end, proxy_end) = UnixStream::pair().unwrap();
        let server_out = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut server_end, _) = l.accept().await.unwrap();
        let task = tokio::spawn(async move { relay(proxy_end, server_out, b"", b"").await });
        let (mut r, mut w) = client_end.into_split();
        w.write_all(b"question").await.unwrap();
        w.shutdown().await.unwrap();
        let mut q = Vec::new();
        server_end.read_to_end(&mut q).await.unwrap();
        assert_eq!(q, b"question");
        tokio::time::sleep(HANGUP_CHECK * 2).await;
        server_end.write_all(b"late answer").await.unwrap();
        server_end.shutdown().await.unwrap();
        let mut a = Vec::new();
        r.read_to_end(&mut a).await.unwrap();
        assert_eq!(a, b"late answer");
        task.await.unwrap().unwrap();
    }

    /// Both directions at once, past the point where the pipe grows, with early bytes and
    /// half-closes on both sides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_directions_intact() {
        let (client_end, proxy_end) = UnixStream::pair().unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_out = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server_end, _) = l.accept().await.unwrap();
        let up = pattern(9 << 20, 1);
        let down = pattern(11 << 20, 7);
        let relay =
            tokio::spawn(
                async move { relay(proxy_end, server_out, b"EARLY-UP", b"EARLY-DOWN").await },
            );
        let (u, d) = (up.clone(), down.clone());
        let client = tokio::spawn(async move {
            let (mut r, mut w) = client_end.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&u).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        });
        let server = tokio::spawn(async move {
            let (mut r, mut w) = server_end.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&d).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        });
        let at_client = client.await.unwrap();
        let at_server = server.await.unwrap();
        assert_eq!(&at_server[..8], b"EARLY-UP");
        assert!(at_server[8..] == up[..]);
        assert_eq!(&at_client[..10], b"EARLY-DOWN");
        assert!(at_client[10..] == down[..]);
        let (a, b) = relay.await.unwrap().unwrap();
        assert_eq!((a, b), (up.len() as u64 + 8, down.len() as u64 + 10));
    }
}
