//! The fast path's connections to the sidecars: plain TCP sockets (TCP_NODELAY) with a read
//! buffer, pooled by [`crate::pool`] like hyper's. A pooled socket that became readable while
//! idle (the sidecar closed it, or sent bytes nobody asked for) is discarded before use;
//! the check reads the socket's readiness, and costs a system call only when it is set.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::inbuf::InBuf;
use crate::pool::{Checkout, Live, Pool, Pooled, Slot};
use crate::upstream::{classify, dial, Failure};

/// A sidecar connection's read buffer at rest.
const BUF: usize = 16 * 1024;

/// A raw connection to a sidecar.
#[derive(Debug)]
pub(crate) struct RawConn {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// Bytes read from it, not used yet.
    pub(crate) buf: InBuf,
    /// It carried an earlier exchange (a failure before the answer may mean it was stale).
    pub(crate) reused: bool,
    _live: Live<RawConn>,
}

impl Pooled for RawConn {
    fn is_closed(&self) -> bool {
        false
    }
}

/// The raw connections of one worker.
pub(crate) type RawPool = Pool<RawConn>;

impl RawConn {
    /// True when the idle socket has something to read: an end of stream, a reset or stray
    /// bytes; either way it cannot carry a request.
    fn stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut b = [0u8; 1];
                !matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// A connection to the slot's sidecar: a pooled one unless `fresh`, else a new one.
pub(crate) async fn get(
    slot: &Arc<Slot<RawConn>>,
    connect_timeout: Duration,
    fresh: bool,
) -> Result<RawConn, Failure> {
    let live = if fresh {
        slot.open_now()
    } else {
        loop {
            match slot.checkout().await {
                Checkout::Reuse(mut c) => {
                    if !c.stale() {
                        c.reused = true;
                        return Ok(c);
                    }
                }
                Checkout::Open(live) => break live,
            }
        }
    };
    let stream = dial(slot.port(), connect_timeout)
        .await
        .map_err(|e| classify(&e))?;
    Ok(RawConn {
        stream,
        buf: InBuf::new(BUF),
        reused: false,
        _live: live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_connection_the_peer_closed_is_stale() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let pool: RawPool = Pool::new();
        let slot = pool.slot(port);
        let mut c = get(&slot, Duration::from_secs(2), false).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        assert!(!c.stale(), "a quiet open connection is fine");
        peer.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(c.stale(), "stray bytes");
        let mut c = get(&slot, Duration::from_secs(2), false).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        drop(peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(c.stale(), "closed by the peer");
        // Nothing listens: refused.
        drop(l);
        let err = get(&slot, Duration::from_secs(2), true).await.unwrap_err();
        assert_eq!(err, Failure::Refused);
    }
}
