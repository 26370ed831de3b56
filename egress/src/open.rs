//! Opening the connection a decision allowed: to the pinned addresses, or through the
//! upstream proxy; and how a failure is told to HTTP and SOCKS5 clients.

use std::io;

use tokio::net::TcpStream;

use crate::policy::{Policy, Route};
use crate::upstream::UpstreamError;

/// A connection that could not be made.
#[derive(Debug)]
pub struct OpenError {
    /// What happened, for the 502 body and the log.
    pub message: String,
    /// Whether the upstream proxy failed (header `X-Omac-Sandbox: upstream-error`).
    pub upstream: bool,
    /// The I/O error kind, when there is one.
    pub kind: Option<io::ErrorKind>,
    /// The status an upstream proxy answered, when it refused.
    pub status: Option<u16>,
}

impl OpenError {
    /// The HTTP status: 504 for a timeout, 502 otherwise.
    pub fn http_status(&self) -> u16 {
        if self.kind == Some(io::ErrorKind::TimedOut) {
            504
        } else {
            502
        }
    }

    /// The SOCKS5 reply code (RFC 1928).
    pub fn socks_code(&self) -> u8 {
        match (self.kind, self.status) {
            (_, Some(403)) | (_, Some(407)) => 0x02,
            (Some(io::ErrorKind::ConnectionRefused), _) => 0x05,
            (Some(io::ErrorKind::TimedOut), _) => 0x06,
            (Some(io::ErrorKind::NetworkUnreachable), _) => 0x03,
            (Some(io::ErrorKind::HostUnreachable), _) => 0x04,
            _ => 0x01,
        }
    }
}

/// Connects as `route` says; returns the stream and bytes an upstream proxy already
/// relayed from the destination.
pub async fn open(
    policy: &Policy,
    route: &Route,
    host: &str,
    port: u16,
) -> Result<(TcpStream, Vec<u8>), OpenError> {
    let target = crate::upstream::Upstream::authority(host, port);
    match route {
        Route::Direct(addrs) => crate::dial::connect_any(addrs)
            .await
            .map(|s| (s, Vec::new()))
            .map_err(|e| OpenError {
                message: format!("cannot connect to {target}: {e}"),
                upstream: false,
                kind: Some(e.kind()),
                status: None,
            }),
        Route::Upstream(up) => up.tunnel(policy.resolver(), host, port).await.map_err(|e| {
            let (kind, status) = match &e {
                UpstreamError::Connect(io) => (Some(io.kind()), None),
                UpstreamError::Status(code, _) => (None, Some(*code)),
                UpstreamError::Protocol(_) => (None, None),
            };
            OpenError {
                message: format!(
                    "cannot reach {target} through the upstream proxy {}:{} (from {}): {e}",
                    up.host, up.port, up.origin
                ),
                upstream: true,
                kind,
                status,
            }
        }),
    }
}
