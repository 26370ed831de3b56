//! The loopback bridges init runs: a TCP listener inside the sandbox's network namespace
//! whose every connection is relayed to a Unix socket (the facade, the egress proxy, an
//! open host port), for tools that only speak TCP; and the reverse, for published ports: a
//! Unix socket init listens on at a host path (bound before the view is built, so the host
//! reaches it and the agent does not see it) whose every connection is relayed to
//! `127.0.0.1:PORT` inside the namespace, where a server of the agent listens.
//! Non-blocking sockets on init's epoll loop, 256 KiB buffers each way, 4 MiB socket
//! buffers on the Unix side (the kernel caps them at `net.core.wmem_max`/`rmem_max`),
//! TCP_NODELAY (no Nagle delay on small requests), half-closes passed through.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::sys;

/// Bytes moved per read: large enough that a bulk transfer costs few system calls and
/// epoll wake-ups (allocated per direction of a connection, 512 KiB per connection).
const BUF: usize = 256 * 1024;
/// Socket buffers asked for on the Unix side of a relay. A Unix stream socket's sender may
/// only queue its send buffer (208 KiB by default), so every 208 KiB of an upload waited
/// for the proxy to read; loopback TCP sizes its own buffers (autotuning), so its side is
/// left alone.
const UNIX_SOCKBUF: i32 = 4 << 20;

/// Where a bridge sends the connections it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket (path inside the sandbox).
    Unix(PathBuf),
    /// `127.0.0.1:PORT` in the sandbox's network namespace.
    Loopback(u16),
}

/// A listening bridge.
pub struct Listener {
    /// The listening socket (TCP, or Unix for a published port).
    pub fd: OwnedFd,
    /// Where each connection goes.
    pub target: Target,
    /// `facade`, `egress`, `publish-3000`, ...
    pub name: String,
}

fn socket(domain: i32, ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = sys::cvt(unsafe {
        libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0)
    })?;
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(fd: RawFd, level: i32, opt: i32, v: i32) {
    // SAFETY: an int option.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
}

/// Binds and listens on `addr` (IPv4 loopback) for connections to forward to `target`.
pub fn listen(name: &str, addr: &str, target: &Path) -> io::Result<Listener> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {addr}")))?;
    let SocketAddr::V4(v4) = a else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPv4 loopback only",
        ));
    };
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM)?;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    let sa = sockaddr_v4(*v4.ip(), v4.port());
    // SAFETY: a valid sockaddr_in.
    sys::cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    })?;
    // SAFETY: a bound socket.
    sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    Ok(Listener {
        fd,
        target: Target::Unix(target.to_path_buf()),
        name: name.to_string(),
    })
}

fn sockaddr_un(path: &Path) -> io::Result<libc::sockaddr_un> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (i, b) in bytes.iter().enumerate() {
        sa.sun_path[i] = *b as libc::c_char;
    }
    Ok(sa)
}

/// Listens on the Unix socket `path` (mode 0600, a stale file replaced) for connections to
/// relay to `127.0.0.1:port` inside: a published port.
pub fn listen_reverse(name: &str, path: &Path, port: u16) -> io::Result<Listener> {
    let sa = sockaddr_un(path)?;
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    // SAFETY: a valid sockaddr_un.
    sys::cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    })?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    // SAFETY: a bound socket.
    sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    Ok(Listener {
        fd,
        target: Target::Loopback(port),
        name: name.to_string(),
    })
}

impl Listener {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        // SAFETY: plain data filled by the kernel.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        // SAFETY: valid buffer and length.
        unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        u16::from_be(sa.sin_port)
    }
}

fn connect_unix(path: &Path) -> io::Result<OwnedFd> {
    let sa = sockaddr_un(path)?;
    // Blocking connect (a local Unix socket answers at once), then non-blocking relay.
    // SAFETY: plain socket creation.
    let fd = sys::cvt(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a valid sockaddr_un.
    sys::cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    })?;
    large_buffers(fd.as_raw_fd());
    set_nonblocking(fd.as_raw_fd());
    Ok(fd)
}

/// Asks for [`UNIX_SOCKBUF`] send and receive buffers on a Unix socket.
fn large_buffers(fd: RawFd) {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, UNIX_SOCKBUF);
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, UNIX_SOCKBUF);
}

/// Connects to `127.0.0.1:port` (blocking: on loopback the answer is immediate), then
/// makes the socket non-blocking for the relay.
fn connect_loopback(port: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = sys::cvt(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = sockaddr_v4(std::net::Ipv4Addr::LOCALHOST, port);
    // SAFETY: a valid sockaddr_in.
    sys::cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    })?;
    setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    set_nonblocking(fd.as_raw_fd());
    Ok(fd)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// One direction of a connection: bytes read from one side, waiting to be written.
struct Pipe {
    /// Never read before the kernel wrote it: only `start..end`, which `recv` filled, is
    /// sent. Left uninitialised so that a new connection costs no 256 KiB memset.
    buf: Box<[std::mem::MaybeUninit<u8>]>,
    start: usize,
    end: usize,
    /// The reading side reached end of file.
    eof: bool,
    /// The writing side was shut down after `eof` and an empty buffer.
    done: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: Box::new_uninit_slice(BUF),
            start: 0,
            end: 0,
            eof: false,
            done: false,
        }
    }

    /// Moves bytes from `from` to `to` until either would block. Err means the connection
    /// is broken.
    fn pump(&mut self, from: RawFd, to: RawFd) -> io::Result<()> {
        loop {
            if self.start < self.end {
                // SAFETY: `start..end` lies in the buffer and was written by `recv`.
                let n = unsafe {
                    libc::send(
                        to,
                        self.buf[self.start..self.end]
                            .as_ptr()
                            .cast::<libc::c_void>(),
                        self.end - self.start,
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        return Ok(());
                    }
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                self.start += n as usize;
                continue;
            }
            self.start = 0;
            self.end = 0;
            if self.eof {
                if !self.done {
                    // SAFETY: shutdown of a socket we own.
                    unsafe { libc::shutdown(to, libc::SHUT_WR) };
                    self.done = true;
                }
                return Ok(());
            }
            // SAFETY: the kernel writes at most `len` bytes into memory we own; nothing
            // reads it before (see `buf`).
            let n = unsafe {
                libc::recv(
                    from,
                    self.buf.as_mut_ptr().cast::<libc::c_void>(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(());
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.end = n as usize;
        }
    }
}

/// A relayed connection: the accepted client and the target it was connected to.
struct Conn {
    client: OwnedFd,
    target: OwnedFd,
    up: Pipe,
    down: Pipe,
}

/// Every open connection, keyed by descriptor (both of a connection's descriptors map to it).
#[derive(Default)]
pub struct Relay {
    conns: HashMap<u64, Conn>,
    by_fd: HashMap<RawFd, u64>,
    next: u64,
}

/// Registers or updates `fd` in `epoll` for reading and writing (edge-triggered).
fn watch(epoll: RawFd, fd: RawFd, add: bool) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: fd as u64,
    };
    let op = if add {
        libc::EPOLL_CTL_ADD
    } else {
        libc::EPOLL_CTL_MOD
    };
    // SAFETY: valid epoll and event.
    sys::cvt(unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) }).map(drop)
}

impl Relay {
    /// Accepts every pending connection on `l` and connects each to its target; a
    /// connection whose target is absent is closed (the client sees a reset) and the error
    /// is returned.
    pub fn accept(&mut self, l: &Listener, epoll: RawFd) -> Option<String> {
        let mut failure = None;
        loop {
            // SAFETY: accept4 on a listening socket.
            let fd = unsafe {
                libc::accept4(
                    l.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd < 0 {
                return failure;
            }
            // SAFETY: just accepted.
            let client = unsafe { OwnedFd::from_raw_fd(fd) };
            let connected = match &l.target {
                Target::Unix(path) => {
                    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
                    connect_unix(path).map_err(|e| format!("{}: {e}", path.display()))
                }
                Target::Loopback(port) => {
                    // The accepted client is the Unix side here.
                    large_buffers(fd);
                    connect_loopback(*port).map_err(|e| format!("127.0.0.1:{port}: {e}"))
                }
            };
            let target = match connected {
                Ok(u) => u,
                Err(e) => {
                    failure = Some(format!("bridge {}: {e}", l.name));
                    continue;
                }
            };
            let id = self.next;
            self.next += 1;
            let (t, u) = (client.as_raw_fd(), target.as_raw_fd());
            if watch(epoll, t, true).is_err() || watch(epoll, u, true).is_err() {
                continue;
            }
            self.by_fd.insert(t, id);
            self.by_fd.insert(u, id);
            self.conns.insert(
                id,
                Conn {
                    client,
                    target,
                    up: Pipe::new(),
                    down: Pipe::new(),
                },
            );
            self.service_fd(t);
        }
    }

    /// Whether `fd` belongs to a relayed connection.
    pub fn owns(&self, fd: RawFd) -> bool {
        self.by_fd.contains_key(&fd)
    }

    /// Moves what can be moved on the connection of `fd`; closes it when both directions
    /// are done or it broke.
    pub fn service_fd(&mut self, fd: RawFd) {
        let Some(id) = self.by_fd.get(&fd).copied() else {
            return;
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let (t, u) = (c.client.as_raw_fd(), c.target.as_raw_fd());
        let broken = c.up.pump(t, u).is_err() || c.down.pump(u, t).is_err();
        if broken || (c.up.done && c.down.done) {
            self.by_fd.remove(&t);
            self.by_fd.remove(&u);
            // Dropping the descriptors also removes them from the epoll set.
            self.conns.remove(&id);
        }
    }
}

/// The kernel's form of an IPv4 socket address.
fn sockaddr_v4(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}
