//! hyper's client connections towards the sidecars, for the requests the general (hyper)
//! path serves: upgrades and whatever the fast path leaves to it. Pooled by [`crate::pool`].
//!
//! - TCP_NODELAY on every socket: a sidecar's small answers must never wait for a delayed ACK
//!   (the 44 ms trap of perf-anchors.md).
//! - A request that fails on a pooled connection before it was written (the sidecar closed
//!   the idle connection) is retried once on a new one.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{BodyError, RequestBody};
use crate::pool::{Checkout, Live, Pool, Pooled, Slot};

/// A hyper client connection to a sidecar (its task owns the connection's [`Live`]).
#[derive(Debug)]
pub(crate) struct HyperConn {
    sender: SendRequest<RequestBody>,
}

impl Pooled for HyperConn {
    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The hyper connections of one worker.
pub(crate) type HyperPool = Pool<HyperConn>;

/// A connection lent to one request; `release` gives it back once the answer was read.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: HyperConn,
    slot: Arc<Slot<HyperConn>>,
}

impl Lease {
    /// Returns the connection: to the longest-waiting request, else to the idle list.
    pub(crate) fn release(self) {
        self.slot.release(self.conn);
    }

    /// Waits until the connection can take a request; false when it cannot any more.
    async fn usable(&mut self) -> bool {
        let s = &mut self.conn.sender;
        if s.is_closed() {
            return false;
        }
        s.is_ready()
            || matches!(
                tokio::time::timeout(Duration::from_millis(100), s.ready()).await,
                Ok(Ok(()))
            )
    }
}

/// Why a request did not get an answer head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be opened.
    #[error("connecting to the sidecar: {0}")]
    Connect(#[source] std::io::Error),
    /// The exchange failed.
    #[error("exchange with the sidecar: {0}")]
    Http(#[source] hyper::Error),
}

/// Opens a TCP connection to a sidecar on loopback, with TCP_NODELAY.
pub(crate) async fn dial(port: u16, timeout: Duration) -> Result<TcpStream, std::io::Error> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await
    {
        Ok(s) => s?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection for one request: pooled, handed over, or new.
async fn lease(
    slot: &Arc<Slot<HyperConn>>,
    connect_timeout: Duration,
) -> Result<(Lease, bool), std::io::Error> {
    loop {
        match slot.checkout().await {
            Checkout::Reuse(conn) => {
                let mut l = Lease {
                    conn,
                    slot: slot.clone(),
                };
                if l.usable().await {
                    return Ok((l, true));
                }
            }
            Checkout::Open(live) => {
                return Ok((connect(slot, live, connect_timeout).await?, false))
            }
        }
    }
}

/// Opens a new connection to the slot's port.
async fn connect(
    slot: &Arc<Slot<HyperConn>>,
    live: Live<HyperConn>,
    connect_timeout: Duration,
) -> Result<Lease, std::io::Error> {
    let stream = dial(slot.port(), connect_timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("sidecar connection ended: {e}");
        }
        drop(live);
    });
    Ok(Lease {
        conn: HyperConn { sender },
        slot: slot.clone(),
    })
}

/// Sends `req` to the sidecar on `port`; the lease goes with the answer and is released
/// when its body has been read to the end.
pub(crate) async fn send(
    pool: &HyperPool,
    connect_timeout: Duration,
    port: u16,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let slot = pool.slot(port);
    let (mut lease, pooled) = lease(&slot, connect_timeout)
        .await
        .map_err(SendError::Connect)?;
    let sent = tokio::time::Instant::now();
    let r = if pooled {
        match lease.conn.sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, lease)),
            Err(mut e) => match e.take_message() {
                // Not written: the pooled connection was stale. Once more, on a new one.
                Some(req) => {
                    let live = slot.open_now();
                    match connect(&slot, live, connect_timeout).await {
                        Ok(mut fresh) => fresh
                            .conn
                            .sender
                            .send_request(req)
                            .await
                            .map(|resp| (resp, fresh))
                            .map_err(SendError::Http),
                        Err(e) => Err(SendError::Connect(e)),
                    }
                }
                None => Err(SendError::Http(e.into_error())),
            },
        }
    } else {
        lease
            .conn
            .sender
            .send_request(req)
            .await
            .map(|resp| (resp, lease))
            .map_err(SendError::Http)
    };
    if r.is_ok() {
        slot.record(sent.elapsed());
    }
    r
}

/// What went wrong on the way to a sidecar, as the facade answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing listens on the port: 503 `sidecar-down`.
    Refused,
    /// Dial or answer timed out: 504 `timeout`.
    Timeout,
    /// The client's body went past the route's limit: 413 `body-too-large`.
    TooLarge,
    /// The client stopped sending its body: 408 `request-idle`.
    ClientIdle,
    /// Anything else: 502 `upstream-error`.
    Other,
}

/// Finds the cause of a failed exchange in its source chain.
pub(crate) fn classify(err: &(dyn std::error::Error + 'static)) -> Failure {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<BodyError>() {
            return match b {
                BodyError::TooLarge(_) => Failure::TooLarge,
                BodyError::Idle(_) => Failure::ClientIdle,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Failure::Refused,
                std::io::ErrorKind::TimedOut => return Failure::Timeout,
                _ => {}
            }
        }
        cur = e.source();
    }
    Failure::Other
}
