//! `omac connect HOST PORT`: stdin/stdout to HOST:PORT through the session's egress proxy,
//! for ssh's `ProxyCommand` inside a filtered sandbox (`GIT_SSH_COMMAND` sets it). A small
//! synchronous path: one CONNECT, then a copy each way (read/write, see [`pump`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::exit::{Code, Failure};

/// The proxy socket inside the sandbox.
pub const DEFAULT_SOCKET: &str = "/run/omac/egress.sock";
/// init's loopback bridge to it, for when the socket is not visible.
pub const DEFAULT_TCP: &str = "127.0.0.1:29171";
/// Largest proxy answer head read.
const MAX_HEAD: usize = 64 * 1024;

/// A stream to the proxy.
trait Conn: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> io::Result<Self>;
    fn close_write(&self);
}

impl Conn for UnixStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Conn for TcpStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

fn authority(host: &str, port: u16) -> String {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.contains(':') {
        format!("[{h}]:{port}")
    } else {
        format!("{h}:{port}")
    }
}

/// Runs `omac connect`; `socket` is `--socket` or `$OMAC_EGRESS_SOCKET`.
pub fn run(host: &str, port: u16, socket: Option<PathBuf>) -> anyhow::Result<i32> {
    if port == 0 || host.is_empty() || host.contains(char::is_whitespace) {
        return Err(
            Failure::new(Code::Misuse, "omac connect needs HOST PORT (port 1-65535)").into(),
        );
    }
    let explicit = socket.is_some();
    let path = socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    match UnixStream::connect(&path) {
        Ok(s) => {
            large_send_buffer(s.as_raw_fd());
            tunnel(s, host, port)
        }
        Err(unix_err) if !explicit => match TcpStream::connect(DEFAULT_TCP) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                tunnel(s, host, port)
            }
            Err(tcp_err) => Err(not_reachable(&path, (unix_err, tcp_err))),
        },
        Err(e) => Err(Failure::new(
            Code::Prerequisite,
            format!(
                "cannot reach omac's egress proxy at {}: {e} (fix: check --socket / OMAC_EGRESS_SOCKET)",
                path.display()
            ),
        )
        .into()),
    }
}

/// A Unix socket's sender may queue only its send buffer (208 KiB by default); ask for
/// 4 MiB (capped by `net.core.wmem_max`) so uploads do not stall on every 208 KiB.
fn large_send_buffer(fd: std::os::fd::RawFd) {
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt with a c_int option value on a descriptor we hold; failure is harmless.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn not_reachable(path: &Path, (u, t): (io::Error, io::Error)) -> anyhow::Error {
    let detail = format!(" ({u}; {t})");
    Failure::new(
        Code::Prerequisite,
        format!(
            "cannot reach omac's egress proxy at {} or {DEFAULT_TCP}{detail} (fix: run it inside a filtered omac sandbox, or point OMAC_EGRESS_SOCKET at a proxy socket)",
            path.display()
        ),
    )
    .into()
}

fn tunnel<S: Conn>(mut s: S, host: &str, port: u16) -> anyhow::Result<i32> {
    let target = authority(host, port);
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(Failure::new(
                Code::Generic,
                "the egress proxy closed the connection without answering",
            )
            .into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(
                Failure::new(Code::Generic, "the egress proxy sent an oversized answer").into(),
            );
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0)
            .min(MAX_HEAD);
        let mut body = buf[end..].to_vec();
        while body.len() < len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&body).trim_end().to_string();
        let msg = if body.is_empty() {
            format!("the egress proxy refused {target}: {status_line}")
        } else {
            body
        };
        return Err(Failure::new(Code::Generic, msg).into());
    }
    let mut out = io::stdout().lock();
    out.write_all(&buf[end..])?;
    out.flush()?;
    let writer = s.dup()?;
    std::thread::spawn(move || {
        let mut w = writer;
        let _ = pump(&mut io::stdin().lock(), &mut w);
        w.close_write();
    });
    match pump(&mut s, &mut out) {
        Ok(()) => Ok(0),
        // The reader (ssh) went away: nothing more to deliver.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Copies until end of input, flushing every chunk. Deliberately not `io::copy`: on Linux
/// it splices a socket into a stdout pipe with a blocking splice(2), which holds the pipe's
/// lock while it waits for the socket, so a reader such as ssh (reading its peer's version
/// line byte by byte) blocks behind it and both sides wait for each other.
fn pump(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
