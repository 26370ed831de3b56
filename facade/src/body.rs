//! Body wrappers: the request body with the route's size limit and idle timeout, and the
//! answer body, streamed frame by frame (no buffering) with the idle timeout and the byte
//! count the access log needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::access_log::{AccessLog, Record};
use crate::upstream::Lease;

/// The boxed error bodies carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The request body went past the route's limit.
    #[error("request body larger than the route's limit of {0} bytes")]
    TooLarge(u64),
    /// Nothing moved for the route's idle timeout.
    #[error("no data for {0:?} (the route's idle timeout)")]
    Idle(Duration),
}

/// What the request body reports back to the handler.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    /// Bytes read from the client so far.
    pub bytes: AtomicU64,
    /// The body went past the limit.
    pub too_large: AtomicBool,
}

/// Polls `sleep` (armed lazily at the first wait) and says whether the idle time is up.
fn idle_expired(sleep: &mut Option<Pin<Box<Sleep>>>, idle: Duration, cx: &mut Context<'_>) -> bool {
    let s = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
    s.as_mut().poll(cx).is_ready()
}

/// Pushes an armed idle timer forward after progress.
fn rearm(sleep: &mut Option<Pin<Box<Sleep>>>, idle: Duration) {
    if let Some(s) = sleep {
        s.as_mut().reset(Instant::now() + idle);
    }
}

pin_project! {
    /// The client's request body on its way to the sidecar.
    pub(crate) struct RequestBody {
        #[pin]
        inner: Option<Incoming>,
        limit: u64,
        seen: u64,
        idle: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        stats: Arc<RequestStats>,
    }
}

impl RequestBody {
    /// Wraps `inner` (None for an empty body) with `limit` bytes and `idle` timeout.
    pub(crate) fn new(
        inner: Option<Incoming>,
        limit: u64,
        idle: Duration,
        stats: Arc<RequestStats>,
    ) -> RequestBody {
        RequestBody {
            inner,
            limit,
            seen: 0,
            idle,
            sleep: None,
            stats,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.seen += d.len() as u64;
                    this.stats.bytes.store(*this.seen, Ordering::Relaxed);
                    if *this.seen > *this.limit {
                        this.stats.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge(*this.limit)))));
                    }
                }
                rearm(this.sleep, *this.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if idle_expired(this.sleep, *this.idle, cx) {
                    return Poll::Ready(Some(Err(Box::new(BodyError::Idle(*this.idle)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Writes the access log line of a streamed answer when its body ends or is dropped.
#[derive(Debug)]
pub(crate) struct LogGuard {
    pub(crate) log: AccessLog,
    pub(crate) record: Record,
    pub(crate) started: std::time::Instant,
    pub(crate) stats: Option<Arc<RequestStats>>,
    pub(crate) finished: bool,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if !self.finished && self.record.reason.is_none() {
            self.record.reason = Some("client-gone");
        }
        if let Some(s) = &self.stats {
            self.record.bytes_in = s.bytes.load(Ordering::Relaxed);
        }
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.log.write(&self.record);
    }
}

pin_project! {
    /// The body of every answer the facade gives.
    #[project = FacadeBodyProj]
    pub(crate) enum FacadeBody {
        /// A body the facade made itself (status, SKILL.md, refusals), or none.
        Full { data: Option<Bytes> },
        /// A sidecar's answer, streamed as it comes.
        Stream {
            #[pin]
            inner: Incoming,
            idle: Duration,
            sleep: Option<Pin<Box<Sleep>>>,
            log: Option<Box<LogGuard>>,
            lease: Option<Lease>,
        },
    }
}

impl FacadeBody {
    /// A complete body.
    pub(crate) fn full(data: impl Into<Bytes>) -> FacadeBody {
        let data: Bytes = data.into();
        FacadeBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// No body.
    pub(crate) fn empty() -> FacadeBody {
        FacadeBody::Full { data: None }
    }

    /// A sidecar's body with the route's idle timeout, an optional log line, and the
    /// connection it arrives on (back to the pool once the body was read to the end).
    pub(crate) fn stream(
        inner: Incoming,
        idle: Duration,
        log: Option<Box<LogGuard>>,
        mut lease: Option<Lease>,
    ) -> FacadeBody {
        if inner.is_end_stream() {
            // No body to read (HEAD, 204, 304): the connection is free now.
            if let Some(l) = lease.take() {
                l.release();
            }
        }
        FacadeBody::Stream {
            inner,
            idle,
            sleep: None,
            log,
            lease,
        }
    }
}

impl Body for FacadeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            FacadeBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            FacadeBodyProj::Stream {
                mut inner,
                idle,
                sleep,
                log,
                lease,
            } => match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    rearm(sleep, *idle);
                    if let (Some(d), Some(l)) = (frame.data_ref(), log.as_mut()) {
                        l.record.bytes_out += d.len() as u64;
                    }
                    // hyper stops polling a body that says it has ended, so a body with a
                    // known length may never reach `Ready(None)`: finish here too.
                    if inner.is_end_stream() {
                        if let Some(l) = lease.take() {
                            l.release();
                        }
                        if let Some(mut l) = log.take() {
                            l.finished = true;
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(l) = log.as_mut() {
                        l.record.reason = Some("upstream-error");
                    }
                    Poll::Ready(Some(Err(Box::new(e))))
                }
                Poll::Ready(None) => {
                    if let Some(l) = lease.take() {
                        l.release();
                    }
                    if let Some(l) = log.as_mut() {
                        l.finished = true;
                    }
                    // Write the line now rather than when hyper drops the body.
                    log.take();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    if idle_expired(sleep, *idle, cx) {
                        if let Some(l) = log.as_mut() {
                            l.record.reason = Some("idle-timeout");
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyError::Idle(*idle)))));
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            FacadeBody::Full { data } => data.is_none(),
            FacadeBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FacadeBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            FacadeBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}
