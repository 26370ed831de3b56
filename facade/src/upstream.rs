//! The keep-alive connection pool towards the sidecars, one per worker thread.
//!
//! - TCP_NODELAY on every socket: a sidecar's small answers must never wait for a delayed ACK
//!   (the 44 ms trap of perf-anchors.md).
//! - Idle connections are reused most-recently-used first; a connection returns to the pool
//!   only once its answer was read to the end, and goes straight to the longest-waiting
//!   request if there is one (first come, first served).
//! - A soft cap: with [`SOFT_CAP`] connections to a sidecar open, a request first queues for
//!   one to come free. It opens another only when none has come free for about twice the
//!   sidecar's recent answer time (between [`SOFT_WAIT_MIN`] and [`SOFT_WAIT_MAX`]), so a busy
//!   fast sidecar needs a few connections rather than one per client (each costs ~30 KiB of
//!   buffers), while long-lived streams (SSE, long polls), which free none, still get their
//!   own connection after a short wait.
//! - A request that fails on a pooled connection before it was written (the sidecar closed
//!   the idle connection) is retried once on a new one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::body::{BodyError, RequestBody};

/// Connections to one sidecar (per worker) beyond which a request first waits for a free one.
pub(crate) const SOFT_CAP: usize = 32;
/// Shortest wait for a free connection at the soft cap.
pub(crate) const SOFT_WAIT_MIN: Duration = Duration::from_millis(20);
/// Longest wait for a free connection at the soft cap.
pub(crate) const SOFT_WAIT_MAX: Duration = Duration::from_millis(100);
/// Idle connections older than this are closed.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(60);
/// Idle connections beyond the soft cap are closed after this (a burst is over).
pub(crate) const SURPLUS_IDLE_FOR: Duration = Duration::from_secs(2);

/// The connections of one worker to every sidecar port.
#[derive(Debug)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<u16, Arc<Slot>>>,
    connect_timeout: Duration,
}

/// The connections to one port.
#[derive(Debug)]
struct Slot {
    port: u16,
    state: Mutex<SlotState>,
    /// Open connections (idle or busy); decremented when a connection's task ends.
    live: AtomicUsize,
    /// Moving average of the time to an answer's head, in microseconds.
    head_us: AtomicU64,
    /// When a connection last came free ([`since_start`] microseconds).
    freed_at: AtomicU64,
}

/// Microseconds since the first call (a cheap shared clock for the pool).
fn since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Debug, Default)]
struct SlotState {
    idle: Vec<(SendRequest<RequestBody>, Instant)>,
    /// Requests waiting at the soft cap: each gets a freed connection (`Some`), or leave to
    /// open one (`None`, when a connection closed).
    waiters: VecDeque<oneshot::Sender<Option<Lease>>>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long to wait for a free connection at the soft cap (the longest wait while no
    /// answer time is known yet, as in the burst of a cold start).
    fn soft_wait(&self) -> Duration {
        match self.head_us.load(Ordering::Relaxed) {
            0 => SOFT_WAIT_MAX,
            us => Duration::from_micros(us.saturating_mul(2)).clamp(SOFT_WAIT_MIN, SOFT_WAIT_MAX),
        }
    }

    /// Folds one answer time into the moving average (weight 1/8).
    fn record(&self, took: Duration) {
        let new = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.head_us.load(Ordering::Relaxed);
        let avg = if old == 0 {
            new
        } else {
            old - old / 8 + new / 8
        };
        self.head_us.store(avg, Ordering::Relaxed);
    }
}

/// A connection lent to one request; `release` gives it back once the answer was read.
#[derive(Debug)]
pub(crate) struct Lease {
    sender: SendRequest<RequestBody>,
    slot: Arc<Slot>,
}

impl Lease {
    /// Returns the connection: to the longest-waiting request, else to the idle list.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let slot = self.slot.clone();
        slot.freed_at.store(since_start(), Ordering::Relaxed);
        let mut st = slot.lock();
        let mut lease = self;
        while let Some(w) = st.waiters.pop_front() {
            match w.send(Some(lease)) {
                Ok(()) => return,
                // That request gave up waiting.
                Err(back) => match back {
                    Some(l) => lease = l,
                    None => return,
                },
            }
        }
        st.idle.push((lease.sender, Instant::now()));
    }

    /// Waits until the connection can take a request; false when it cannot any more.
    async fn usable(&mut self) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        self.sender.is_ready()
            || matches!(
                tokio::time::timeout(Duration::from_millis(100), self.sender.ready()).await,
                Ok(Ok(()))
            )
    }
}

/// Counts a connection as open while its task runs.
struct Live(Arc<Slot>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
        // A place under the cap opened: the longest-waiting request may open a connection.
        let mut st = self.0.lock();
        while let Some(w) = st.waiters.pop_front() {
            if w.send(None).is_ok() {
                break;
            }
        }
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

/// How a request gets its connection.
enum Acquire {
    Idle(Lease),
    Connect,
    Wait(oneshot::Receiver<Option<Lease>>),
}

impl Pool {
    /// An empty pool.
    pub(crate) fn new(connect_timeout: Duration) -> Pool {
        Pool {
            slots: Mutex::default(),
            connect_timeout,
        }
    }

    fn slot(&self, port: u16) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(port)
            .or_insert_with(|| {
                Arc::new(Slot {
                    port,
                    state: Mutex::default(),
                    live: AtomicUsize::new(0),
                    head_us: AtomicU64::new(0),
                    freed_at: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// An idle connection, else permission to open one, else a place in the queue.
    fn acquire(slot: &Arc<Slot>) -> Acquire {
        let mut st = slot.lock();
        while let Some((sender, since)) = st.idle.pop() {
            if sender.is_closed() || since.elapsed() > IDLE_FOR {
                continue; // dropping the sender closes the connection
            }
            return Acquire::Idle(Lease {
                sender,
                slot: slot.clone(),
            });
        }
        if slot.live.load(Ordering::Relaxed) < SOFT_CAP && st.waiters.is_empty() {
            return Acquire::Connect;
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(tx);
        Acquire::Wait(rx)
    }

    /// Waits in the queue while connections keep coming free; None: open one.
    async fn wait(slot: &Slot, mut rx: oneshot::Receiver<Option<Lease>>) -> Option<Lease> {
        let soft = slot.soft_wait();
        let give_up = tokio::time::Instant::now() + SOFT_WAIT_MAX.max(soft) * 10;
        let mut until = tokio::time::Instant::now() + soft;
        loop {
            match tokio::time::timeout_at(until.min(give_up), &mut rx).await {
                Ok(Ok(got)) => return got,
                Ok(Err(_)) => return None,
                Err(_) => {
                    // Still queued. Keep waiting if a connection came free lately (the queue
                    // moves), else open one beyond the cap.
                    let freed = slot.freed_at.load(Ordering::Relaxed);
                    let quiet = Duration::from_micros(since_start().saturating_sub(freed));
                    if quiet >= soft || tokio::time::Instant::now() >= give_up {
                        return None;
                    }
                    until = tokio::time::Instant::now() + (soft - quiet);
                }
            }
        }
    }

    /// A connection for one request: pooled, handed over, or new.
    async fn lease(&self, slot: &Arc<Slot>) -> Result<(Lease, bool), std::io::Error> {
        loop {
            let got = match Self::acquire(slot) {
                Acquire::Idle(l) => Some(l),
                Acquire::Connect => None,
                Acquire::Wait(rx) => Self::wait(slot, rx).await,
            };
            match got {
                Some(mut l) => {
                    if l.usable().await {
                        return Ok((l, true));
                    }
                }
                None => return Ok((self.connect(slot).await?, false)),
            }
        }
    }

    /// Opens a new connection to the slot's port.
    async fn connect(&self, slot: &Arc<Slot>) -> Result<Lease, std::io::Error> {
        slot.live.fetch_add(1, Ordering::Relaxed);
        let live = Live(slot.clone());
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(("127.0.0.1", slot.port)),
        )
        .await
        {
            Ok(s) => s?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        };
        stream.set_nodelay(true)?;
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
            sender,
            slot: slot.clone(),
        })
    }

    /// Sends `req` to the sidecar on `port`; the lease goes with the answer and is released
    /// when its body has been read to the end.
    pub(crate) async fn send(
        &self,
        port: u16,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let slot = self.slot(port);
        let (mut lease, pooled) = self.lease(&slot).await.map_err(SendError::Connect)?;
        let sent = tokio::time::Instant::now();
        let r = if pooled {
            match lease.sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, lease)),
                Err(mut e) => match e.take_message() {
                    // Not written: the pooled connection was stale. Once more, on a new one.
                    Some(req) => self.send_fresh(&slot, req).await,
                    None => Err(SendError::Http(e.into_error())),
                },
            }
        } else {
            lease
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

    async fn send_fresh(
        &self,
        slot: &Arc<Slot>,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let mut lease = self.connect(slot).await.map_err(SendError::Connect)?;
        let resp = lease
            .sender
            .send_request(req)
            .await
            .map_err(SendError::Http)?;
        Ok((resp, lease))
    }

    /// Closes connections idle for longer than [`IDLE_FOR`], and those beyond the soft cap
    /// idle for longer than [`SURPLUS_IDLE_FOR`]; forgets ports with none open.
    pub(crate) fn sweep(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|_, slot| {
            let live = slot.live.load(Ordering::Relaxed);
            let mut st = slot.lock();
            // The idle list is most-recently-used last: the oldest are at the front.
            let mut surplus = live.saturating_sub(SOFT_CAP);
            st.idle.retain(|(s, since)| {
                let idle = since.elapsed();
                let keep =
                    !s.is_closed() && idle <= IDLE_FOR && !(surplus > 0 && idle > SURPLUS_IDLE_FOR);
                if !keep {
                    surplus = surplus.saturating_sub(1);
                }
                keep
            });
            live > 0
        });
    }
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
