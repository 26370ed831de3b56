//! The fast path: plain request/response exchanges forwarded in the client connection's own
//! task, without hyper's machinery on either side.
//!
//! A client connection starts here. Each request head is read with the strict parser of
//! [`crate::request_head`] and classified by [`plan::plan`]; a plain forward to a ready route
//! is then written to a pooled raw sidecar connection, the answer head parsed as hyper's
//! client parses it, and the answer relayed frame by frame ([`exchange`]). The first request
//! that is anything else — malformed, an upgrade, the status document, SKILL.md, a refusal,
//! a chunked or large body, `Expect` — hands the connection, with the bytes already read, to
//! the general hyper path for the rest of its life, so every such case is answered exactly
//! as before. The fast path's own answers are limited to failures after it forwarded (502,
//! 503, 504, 408), written byte for byte as the general path writes them.

mod exchange;
mod plan;
mod render;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::watch;

use crate::access_log::Line;
use crate::deadline::Deadline;
use crate::handler::{Shared, Transport};
use crate::inbuf::InBuf;
use crate::prefixed::Prefixed;
use crate::request_head::{self, Field, Head, Parsed};
use crate::response_head;
use crate::server::{self, LoopCtx};
use crate::upstream::Failure;

/// A client connection's read buffer at rest.
const IN_BASE: usize = 4096;
/// A grown write buffer is given back above this size.
const OUT_KEEP: usize = 16 * 1024;

/// A stream a client connects with.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl ClientIo for tokio::net::UnixStream {}
impl ClientIo for tokio::net::TcpStream {}

/// What to do after a request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read the next request.
    Again,
    /// Close the connection.
    Close,
    /// Hand the connection to the general path.
    HandOver,
}

/// One client connection on the fast path.
struct Client<S> {
    io: S,
    transport: Transport,
    /// Bytes read from the client, not used yet.
    inb: InBuf,
    /// What is being written (request head for the sidecar, answer for the client).
    out: Vec<u8>,
    /// The fields of the current request head.
    fields: Vec<Field>,
    /// The fields of the current answer head.
    answer_fields: Vec<response_head::Field>,
    /// The one timer of the connection (header timeout, then the route's idle timeout).
    timer: Deadline,
    /// When the last exchange ended (the clock is read as little as possible).
    last: Instant,
}

/// Serves one client connection: fast exchanges until one needs the general path.
pub(crate) async fn serve<S: ClientIo>(
    io: S,
    transport: Transport,
    ctx: Arc<LoopCtx>,
    shutdown: watch::Receiver<bool>,
) {
    let shared = ctx.shared.clone();
    // Created before the stop flag is read: a later `notify_waiters` completes it.
    let stop = shared.stop.notify.clone().notified_owned();
    tokio::pin!(stop);
    let mut c = Client {
        io,
        transport,
        inb: InBuf::new(IN_BASE),
        out: Vec::new(),
        fields: Vec::new(),
        answer_fields: Vec::new(),
        timer: Deadline::default(),
        last: Instant::now(),
    };
    let next = loop {
        match c.one(&shared, stop.as_mut()).await {
            Next::Again => continue,
            other => break other,
        }
    };
    if next == Next::HandOver {
        let bytes = c.inb.take();
        drop(shared);
        server::serve(Prefixed::new(c.io, bytes), transport, ctx, shutdown).await;
    } else {
        let _ = c.io.shutdown().await;
    }
}

/// What woke a wait.
enum Event {
    Read(usize),
    Failed,
    Timeout,
    Stop,
}

/// Reads once from `io` into `room`: the bytes read, a failed read, `timer` expiring, or
/// (when given, checked last) `stop` completing.
async fn read_event<R: AsyncRead + Unpin>(
    io: &mut R,
    room: &mut [u8],
    timer: &mut Deadline,
    mut stop: Option<Pin<&mut OwnedNotified>>,
) -> Event {
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut room[..]);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => return Poll::Ready(Event::Read(rb.filled().len())),
            Poll::Ready(Err(_)) => return Poll::Ready(Event::Failed),
            Poll::Pending => {}
        }
        if timer.poll_expired(cx).is_ready() {
            return Poll::Ready(Event::Timeout);
        }
        if let Some(stop) = stop.as_mut() {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Stop);
            }
        }
        Poll::Pending
    })
    .await
}

/// One request being served: its head and plan, and when it started (for the access log).
struct Request<'a> {
    /// Its parsed head (offsets into the client's read buffer).
    head: &'a Head,
    /// How it is forwarded.
    plan: &'a plan::Plan,
    /// When its head was complete.
    started: Instant,
    /// The wall-clock time of `started`, read only when there is an access log.
    arrived: Option<SystemTime>,
}

impl<S: ClientIo> Client<S> {
    /// Serves one request (or hands the connection over).
    async fn one(&mut self, shared: &Shared, stop: Pin<&mut OwnedNotified>) -> Next {
        let head = match self.read_head(shared, stop).await {
            Ok(h) => h,
            Err(n) => return n,
        };
        let started = Instant::now();
        let arrived = shared.log.as_ref().map(|_| SystemTime::now());
        let Some(plan) = plan::plan(
            self.inb.bytes(),
            &head,
            &self.fields,
            shared,
            self.transport,
        ) else {
            return Next::HandOver;
        };
        let req = Request {
            head: &head,
            plan: &plan,
            started,
            arrived,
        };
        let total = head.len + plan.body_len;
        if self.inb.len() < total {
            if let Err(stop) = self.read_body(total, plan.route.idle_timeout).await {
                if stop == BodyStop::Idle {
                    // The client stopped sending its body: as the general path answers.
                    let bytes_in = (self.inb.len() - head.len) as u64;
                    return self
                        .refuse(shared, &req, Failure::ClientIdle, bytes_in)
                        .await;
                }
                return Next::Close;
            }
        }
        let next = self.exchange(shared, &req).await;
        self.inb.consume(total);
        self.inb.shrink();
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
        next
    }

    /// Reads until a complete head is buffered; `Err` when the connection ends or goes to
    /// the general path. An idle connection (nothing of a next request read) closes at
    /// once when the facade shuts down, as hyper's graceful shutdown does.
    async fn read_head(
        &mut self,
        shared: &Shared,
        mut stop: Pin<&mut OwnedNotified>,
    ) -> Result<Head, Next> {
        let mut armed = false;
        loop {
            if !self.inb.is_empty() {
                match request_head::parse(
                    self.inb.bytes(),
                    shared.max_head,
                    shared.max_fields,
                    &mut self.fields,
                ) {
                    Parsed::Complete(h) => return Ok(h),
                    Parsed::NotMine => return Err(Next::HandOver),
                    Parsed::Partial => {}
                }
            }
            if !armed {
                self.timer
                    .set(tokio::time::Instant::from_std(self.last) + shared.header_timeout);
                armed = true;
            }
            let idle = self.inb.is_empty();
            if idle && shared.stop.flag.load(Ordering::Relaxed) {
                return Err(Next::Close);
            }
            let Client { io, inb, timer, .. } = self;
            let room = inb.room(shared.max_head);
            // Only an idle connection watches the stop signal.
            let watch = if idle { Some(stop.as_mut()) } else { None };
            let ev = read_event(io, room, timer, watch).await;
            match ev {
                Event::Read(n) if n > 0 => inb.advance(n),
                // End of stream (between requests, or inside a head: hyper answers neither),
                // a failed read, the header timeout (hyper closes without an answer too), or
                // the facade stopping.
                _ => return Err(Next::Close),
            }
        }
    }

    /// Reads until `total` bytes (head and body) are buffered, each read within `idle`.
    async fn read_body(&mut self, total: usize, idle: std::time::Duration) -> Result<(), BodyStop> {
        while self.inb.len() < total {
            self.timer.after(idle);
            let Client { io, inb, timer, .. } = self;
            let room = inb.room(total.max(IN_BASE));
            let ev = read_event(io, room, timer, None).await;
            match ev {
                Event::Read(n) if n > 0 => inb.advance(n),
                Event::Timeout => return Err(BodyStop::Idle),
                _ => return Err(BodyStop::Gone),
            }
        }
        Ok(())
    }

    /// Writes the access log line of a request that ended at `end`.
    #[allow(clippy::too_many_arguments)]
    fn log(
        &mut self,
        shared: &Shared,
        req: &Request<'_>,
        end: Instant,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        reason: Option<&'static str>,
    ) {
        self.last = end;
        let (Some(log), Some(arrived)) = (&shared.log, req.arrived) else {
            return;
        };
        let (head, plan) = (req.head, req.plan);
        let buf = self.inb.bytes();
        let took = end.saturating_duration_since(req.started);
        log.write_line(&Line {
            arrived,
            transport: self.transport.name(),
            method: &buf[head.method.0..head.method.1],
            mount: plan.route.mount.as_bytes(),
            path: plan.rest(buf).as_bytes(),
            status,
            bytes_in,
            bytes_out,
            duration_us: (took.as_nanos() as u64 + 500) / 1000,
            reason,
        });
    }
}

/// Why a request body stopped arriving.
#[derive(Debug, PartialEq, Eq)]
enum BodyStop {
    /// Nothing for the route's idle timeout.
    Idle,
    /// The client closed or failed.
    Gone,
}
