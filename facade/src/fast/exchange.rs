//! One forwarded exchange on the fast path: the request to a pooled raw sidecar connection
//! (once more on a new connection when a reused one turns out stale), the answer head, then
//! the body relayed as it arrives (SSE frame by frame), with the route's idle timeout both
//! ways. Failures before the answer head are the facade's refusals (502, 503, 504); after it,
//! the client connection is closed, as the general path does.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::plan::{Plan, BODY_MAX};
use super::{render, Client, ClientIo, Next, Request};
use crate::chunked::{self, Decoder, LAST_CHUNK, SIZE_ROOM};
use crate::deadline::Deadline;
use crate::handler::Shared;
use crate::pool::Slot;
use crate::raw_upstream::{self, RawConn};
use crate::response_head::{self, Answer, Framing, Read, MAX_HEAD};
use crate::upstream::Failure;

/// Answer bodies up to this size go out in the same write as the head.
const COALESCE: usize = 16 * 1024;
/// Reads from a sidecar during a body take at most this much.
const BODY_READ: usize = 16 * 1024;

/// How a write ended.
#[derive(Debug, PartialEq, Eq)]
enum Wrote {
    Done,
    Failed,
    Timeout,
}

impl Wrote {
    /// A write to the client: done, or the log reason of its failure.
    fn to_client(&self) -> Result<(), &'static str> {
        match self {
            Wrote::Done => Ok(()),
            Wrote::Failed => Err("client-gone"),
            Wrote::Timeout => Err("idle-timeout"),
        }
    }
}

/// Writes all of `data`, giving up when `timer` expires.
async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut data: &[u8],
    timer: &mut Deadline,
) -> Wrote {
    while !data.is_empty() {
        let r = std::future::poll_fn(|cx| match Pin::new(&mut *w).poll_write(cx, data) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Ok(n)),
            Poll::Ready(_) => Poll::Ready(Err(Wrote::Failed)),
            Poll::Pending => match timer.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Wrote::Timeout)),
                Poll::Pending => Poll::Pending,
            },
        })
        .await;
        match r {
            Ok(n) => data = &data[n..],
            Err(w) => return w,
        }
    }
    Wrote::Done
}

/// What a read from the sidecar gave.
enum Up {
    Data,
    End,
    Timeout,
    ClientGone,
}

/// Reads from the sidecar into its buffer (at most `max` buffered), within `timer`.
async fn read_up(conn: &mut RawConn, max: usize, timer: &mut Deadline) -> Up {
    let room = conn.buf.room(max);
    let r = std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut room[..]);
        match Pin::new(&mut conn.stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(_)) => return Poll::Ready(Err(Up::End)),
            Poll::Pending => {}
        }
        match timer.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Up::Timeout)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match r {
        Ok(0) => Up::End,
        Ok(n) => {
            conn.buf.advance(n);
            Up::Data
        }
        Err(u) => u,
    }
}

/// Why sending a request failed.
enum Sent {
    /// A reused connection failed before any answer: send again on a new one.
    Stale,
    /// The facade answers this.
    Failed(Failure),
    /// The client went away while the sidecar worked.
    ClientGone,
}

impl<S: ClientIo> Client<S> {
    /// Forwards the planned request and relays the answer.
    pub(super) async fn exchange(&mut self, shared: &Shared, req: &Request<'_>) -> Next {
        let (plan, started) = (req.plan, req.started);
        self.out.clear();
        render::request(
            &mut self.out,
            self.inb.bytes(),
            req.head,
            &self.fields,
            plan,
        );
        let slot = shared.raw.slot(plan.port);
        self.timer
            .set(tokio::time::Instant::from_std(started) + plan.route.idle_timeout);
        let mut fresh = false;
        let (conn, answer) = loop {
            let mut conn = match raw_upstream::get(&slot, shared.connect_timeout, fresh).await {
                Ok(c) => c,
                Err(f) => return self.refuse(shared, req, f, 0).await,
            };
            match self.send(&mut conn, plan, shared.max_head).await {
                Ok(a) => break (conn, a),
                Err(Sent::Stale) if !fresh => fresh = true,
                Err(Sent::Stale) => {
                    let n = plan.body_len as u64;
                    return self.refuse(shared, req, Failure::Other, n).await;
                }
                Err(Sent::Failed(f)) => {
                    let n = plan.body_len as u64;
                    return self.refuse(shared, req, f, n).await;
                }
                Err(Sent::ClientGone) => return Next::Close,
            }
        };
        let t_head = Instant::now();
        slot.record(t_head.saturating_duration_since(started));
        self.timer
            .set(tokio::time::Instant::from_std(t_head) + plan.route.idle_timeout);
        self.relay(shared, req, conn, answer, &slot).await
    }

    /// Writes the request and reads the answer head, watching the client meanwhile (its
    /// pipelined bytes are kept; its end means nobody waits for the answer).
    async fn send(
        &mut self,
        conn: &mut RawConn,
        plan: &Plan,
        max_head: usize,
    ) -> Result<Answer, Sent> {
        match write_all(&mut conn.stream, &self.out, &mut self.timer).await {
            Wrote::Done => {}
            // A reused connection the sidecar had closed: the request never reached it.
            Wrote::Failed if conn.reused => return Err(Sent::Stale),
            Wrote::Failed => return Err(Sent::Failed(Failure::Other)),
            Wrote::Timeout => return Err(Sent::Failed(Failure::Timeout)),
        }
        let client_cap = max_head + BODY_MAX as usize;
        let mut got_any = false;
        loop {
            if !conn.buf.is_empty() {
                got_any = true;
                match response_head::parse(
                    conn.buf.bytes(),
                    plan.head_request,
                    &mut self.answer_fields,
                ) {
                    Ok(Read::Answer(a)) => return Ok(a),
                    Ok(Read::Interim(n)) => {
                        conn.buf.consume(n);
                        continue;
                    }
                    Ok(Read::Partial) => {}
                    Err(e) => {
                        tracing::debug!(mount = %plan.route.mount, "sidecar answer refused: {e}");
                        return Err(Sent::Failed(Failure::Other));
                    }
                }
            }
            let Client { io, inb, timer, .. } = self;
            let room = conn.buf.room(MAX_HEAD);
            let stream = &mut conn.stream;
            let r = std::future::poll_fn(|cx| {
                let mut rb = ReadBuf::new(&mut room[..]);
                match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(rb.filled().len())),
                    Poll::Ready(Err(_)) => return Poll::Ready(Ok(0)),
                    Poll::Pending => {}
                }
                if timer.poll_expired(cx).is_ready() {
                    return Poll::Ready(Err(Up::Timeout));
                }
                loop {
                    let cr = inb.room(client_cap);
                    if cr.is_empty() {
                        break;
                    }
                    let mut rb = ReadBuf::new(cr);
                    match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                            let n = rb.filled().len();
                            inb.advance(n);
                        }
                        Poll::Ready(_) => return Poll::Ready(Err(Up::ClientGone)),
                        Poll::Pending => break,
                    }
                }
                Poll::Pending
            })
            .await;
            match r {
                Ok(0) => {
                    // The connection ended before an answer: on a reused connection that may
                    // be a stale one, where a request that is safe to repeat is sent again.
                    if conn.reused && !got_any && plan.idempotent {
                        return Err(Sent::Stale);
                    }
                    return Err(Sent::Failed(Failure::Other));
                }
                Ok(n) => conn.buf.advance(n),
                Err(Up::Timeout) => return Err(Sent::Failed(Failure::Timeout)),
                Err(_) => return Err(Sent::ClientGone),
            }
        }
    }

    /// Writes the answer head and relays the body; logs the exchange and returns the
    /// sidecar connection to the pool when it can carry another request.
    async fn relay(
        &mut self,
        shared: &Shared,
        req: &Request<'_>,
        mut conn: RawConn,
        a: Answer,
        slot: &Arc<Slot<RawConn>>,
    ) -> Next {
        let plan = req.plan;
        let close = plan.close || shared.stop.flag.load(Ordering::Relaxed);
        let idle = plan.route.idle_timeout;
        self.out.clear();
        render::answer_head(
            &mut self.out,
            conn.buf.bytes(),
            &a,
            &self.answer_fields,
            plan.head_request,
            close,
        );
        conn.buf.consume(a.len);
        let mut sent = 0u64;
        let outcome = match a.framing {
            Framing::Empty => {
                let clean = conn.buf.is_empty();
                write_all(&mut self.io, &self.out, &mut self.timer)
                    .await
                    .to_client()
                    .map(|()| clean)
            }
            Framing::Length(n) => self.relay_length(&mut conn, n, idle, &mut sent).await,
            Framing::Chunked => self.relay_chunked(&mut conn, idle, &mut sent).await,
            Framing::Close => self.relay_until_close(&mut conn, idle, &mut sent).await,
        };
        let reason = outcome.err();
        let end = Instant::now();
        if outcome == Ok(true) && a.keep_alive {
            conn.reused = false;
            conn.buf.shrink();
            slot.release_at(conn, end);
        } else {
            drop(conn);
        }
        self.log(
            shared,
            req,
            end,
            a.status,
            plan.body_len as u64,
            sent,
            reason,
        );
        if reason.is_some() || close {
            Next::Close
        } else {
            Next::Again
        }
    }

    /// A body of `n` bytes; Ok(true) when the connection holds nothing more.
    async fn relay_length(
        &mut self,
        conn: &mut RawConn,
        n: u64,
        idle: Duration,
        sent: &mut u64,
    ) -> Result<bool, &'static str> {
        let have = (conn.buf.len() as u64).min(n) as usize;
        if have <= COALESCE {
            self.out.extend_from_slice(&conn.buf.bytes()[..have]);
            write_all(&mut self.io, &self.out, &mut self.timer)
                .await
                .to_client()?;
        } else {
            write_all(&mut self.io, &self.out, &mut self.timer)
                .await
                .to_client()?;
            let body = &conn.buf.bytes()[..have];
            write_all(&mut self.io, body, &mut self.timer)
                .await
                .to_client()?;
        }
        conn.buf.consume(have);
        *sent += have as u64;
        let mut left = n - have as u64;
        while left > 0 {
            self.timer.after(idle);
            match read_up(conn, BODY_READ, &mut self.timer).await {
                Up::Data => {}
                Up::Timeout => return Err("idle-timeout"),
                Up::End | Up::ClientGone => return Err("upstream-error"),
            }
            let take = (conn.buf.len() as u64).min(left) as usize;
            let chunk = &conn.buf.bytes()[..take];
            write_all(&mut self.io, chunk, &mut self.timer)
                .await
                .to_client()?;
            conn.buf.consume(take);
            *sent += take as u64;
            left -= take as u64;
        }
        Ok(conn.buf.is_empty())
    }

    /// A chunked body, decoded and sent on as one chunk per read.
    async fn relay_chunked(
        &mut self,
        conn: &mut RawConn,
        idle: Duration,
        sent: &mut u64,
    ) -> Result<bool, &'static str> {
        let mut dec = Decoder::default();
        loop {
            let at = self.out.len();
            self.out.resize(at + SIZE_ROOM, 0);
            let before = self.out.len();
            let used = match dec.decode(conn.buf.bytes(), &mut self.out) {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("sidecar chunked body refused: {e}");
                    return Err("upstream-error");
                }
            };
            *sent += (self.out.len() - before) as u64;
            conn.buf.consume(used);
            chunked::frame_at(&mut self.out, at);
            if dec.is_done() {
                self.out.extend_from_slice(LAST_CHUNK);
            }
            if !self.out.is_empty() {
                write_all(&mut self.io, &self.out, &mut self.timer)
                    .await
                    .to_client()?;
                self.out.clear();
            }
            if dec.is_done() {
                return Ok(conn.buf.is_empty());
            }
            self.timer.after(idle);
            match read_up(conn, BODY_READ, &mut self.timer).await {
                Up::Data => self.timer.after(idle),
                Up::Timeout => return Err("idle-timeout"),
                Up::End | Up::ClientGone => return Err("upstream-error"),
            }
        }
    }

    /// A body that ends when the sidecar closes, sent on chunked.
    async fn relay_until_close(
        &mut self,
        conn: &mut RawConn,
        idle: Duration,
        sent: &mut u64,
    ) -> Result<bool, &'static str> {
        loop {
            let at = self.out.len();
            self.out.resize(at + SIZE_ROOM, 0);
            self.out.extend_from_slice(conn.buf.bytes());
            *sent += conn.buf.len() as u64;
            conn.buf.consume(conn.buf.len());
            chunked::frame_at(&mut self.out, at);
            if !self.out.is_empty() {
                write_all(&mut self.io, &self.out, &mut self.timer)
                    .await
                    .to_client()?;
                self.out.clear();
            }
            self.timer.after(idle);
            match read_up(conn, BODY_READ, &mut self.timer).await {
                Up::Data => self.timer.after(idle),
                Up::Timeout => return Err("idle-timeout"),
                Up::End | Up::ClientGone => break,
            }
        }
        write_all(&mut self.io, LAST_CHUNK, &mut self.timer)
            .await
            .to_client()?;
        Ok(false)
    }

    /// Answers a failed exchange as the general path does (the same status, reason, fields
    /// and body) and logs it.
    pub(super) async fn refuse(
        &mut self,
        shared: &Shared,
        req: &Request<'_>,
        f: Failure,
        bytes_in: u64,
    ) -> Next {
        let plan = req.plan;
        let (status, reason, closing) = match f {
            Failure::Refused => (StatusCode::SERVICE_UNAVAILABLE, "sidecar-down", false),
            Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout", false),
            Failure::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", true),
            Failure::ClientIdle => (StatusCode::REQUEST_TIMEOUT, "request-idle", true),
            Failure::Other => (StatusCode::BAD_GATEWAY, "upstream-error", false),
        };
        let close = closing || plan.close || shared.stop.flag.load(Ordering::Relaxed);
        self.out.clear();
        let body = render::refusal(&mut self.out, status, reason, close);
        let end = Instant::now();
        self.log(
            shared,
            req,
            end,
            status.as_u16(),
            bytes_in,
            body,
            Some(reason),
        );
        self.timer
            .set(tokio::time::Instant::from_std(end) + plan.route.idle_timeout);
        let wrote = write_all(&mut self.io, &self.out, &mut self.timer).await;
        if wrote != Wrote::Done || close {
            Next::Close
        } else {
            Next::Again
        }
    }
}
