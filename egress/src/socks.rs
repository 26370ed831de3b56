//! SOCKS5 (RFC 1928) on the same socket and policy: the "no authentication" method,
//! CONNECT to a domain name, an IPv4 or an IPv6 address. BIND and UDP ASSOCIATE are
//! refused (0x07). A refusal cannot carry a body, so its explanation goes to the log.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::open::open;
use crate::policy::Policy;

/// How long a client may take to finish the SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reply codes.
mod reply {
    pub const OK: u8 = 0x00;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    pub const ADDRESS_NOT_SUPPORTED: u8 = 0x08;
}

async fn send_reply(s: &mut UnixStream, code: u8, bound: Option<SocketAddr>) -> io::Result<()> {
    let mut out = vec![5, code, 0];
    match bound {
        Some(SocketAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        None => out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]),
    }
    s.write_all(&out).await
}

/// The request: (host, port, command), or the reply code refusing it.
async fn handshake(s: &mut UnixStream) -> io::Result<Result<(String, u16, u8), u8>> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0x00) {
        // No acceptable method: the socket is the capability, there are no credentials.
        s.write_all(&[5, 0xff]).await?;
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the client offered no 'no authentication' method",
        ));
    }
    s.write_all(&[5, 0x00]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a SOCKS5 request",
        ));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            Ipv6Addr::from(a).to_string()
        }
        _ => return Ok(Err(reply::ADDRESS_NOT_SUPPORTED)),
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    Ok(Ok((host, u16::from_be_bytes(port), req[1])))
}

/// The name of a SOCKS5 command other than CONNECT, for the refusal.
fn command_name(cmd: u8) -> String {
    match cmd {
        2 => "SOCKS5 BIND".to_string(),
        3 => "SOCKS5 UDP ASSOCIATE".to_string(),
        n => format!("SOCKS5 command {n}"),
    }
}

/// Serves one SOCKS5 client (its first byte, 0x05, is still unread).
pub async fn serve(policy: Arc<Policy>, mut s: UnixStream) {
    let req = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!("SOCKS5 handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("SOCKS5 handshake timed out");
            return;
        }
    };
    let (host, port) = match req {
        Ok((host, port, 1)) => (host, port),
        Ok((host, port, cmd)) => {
            // Not a way out: UDP and inbound connections stay in the sandbox. Audited, as
            // an attempt at them is worth seeing.
            let d = policy.refuse_unsupported(&host, port, "socks5", &command_name(cmd));
            tracing::warn!("SOCKS5: {}", d.body().trim_end().replace('\n', "; "));
            let _ = send_reply(&mut s, reply::COMMAND_NOT_SUPPORTED, None).await;
            return;
        }
        Err(code) => {
            let _ = send_reply(&mut s, code, None).await;
            return;
        }
    };
    let route = match policy.check(&host, port, "socks5").await {
        Ok(r) => r,
        Err(d) => {
            tracing::warn!("SOCKS5: {}", d.body().trim_end().replace('\n', "; "));
            let _ = send_reply(&mut s, d.socks_code(), None).await;
            return;
        }
    };
    let (server, early) = match open(&policy, &route, &host, port).await {
        Ok(x) => x,
        Err(e) => {
            tracing::info!("SOCKS5: {}", e.message);
            let _ = send_reply(&mut s, e.socks_code(), None).await;
            return;
        }
    };
    let bound = server
        .local_addr()
        .ok()
        .map(|a| SocketAddr::new(canonical(a.ip()), a.port()));
    if send_reply(&mut s, reply::OK, bound).await.is_err() {
        return;
    }
    if let Err(e) = crate::tunnel::relay(s, server, &[], &early).await {
        tracing::debug!("SOCKS5 tunnel {host}:{port}: {e}");
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
