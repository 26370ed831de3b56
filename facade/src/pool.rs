//! The keep-alive connection pool towards the sidecars, one per worker thread and kind of
//! connection (hyper's client connections for the general path, raw sockets for the fast
//! path), generic over the connection.
//!
//! - Idle connections are reused most-recently-used first; a connection returns to the pool
//!   only once its answer was read to the end, and goes straight to the longest-waiting
//!   request if there is one (first come, first served).
//! - A soft cap: with [`SOFT_CAP`] connections to a sidecar open, a request first queues for
//!   one to come free. It opens another only when none has come free for about twice the
//!   sidecar's recent answer time (between [`SOFT_WAIT_MIN`] and [`SOFT_WAIT_MAX`]), so a busy
//!   fast sidecar needs a few connections rather than one per client (each costs ~30 KiB of
//!   buffers), while long-lived streams (SSE, long polls), which free none, still get their
//!   own connection after a short wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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

/// A connection the pool can hold.
pub(crate) trait Pooled: Send + Sized + 'static {
    /// True when the connection is known to be unusable (checked without a system call).
    fn is_closed(&self) -> bool;
}

/// The connections of one worker to every sidecar port.
#[derive(Debug)]
pub(crate) struct Pool<C> {
    /// A few ports at most: a list is quicker than a hash map.
    slots: Mutex<Vec<Arc<Slot<C>>>>,
}

/// The connections to one port.
#[derive(Debug)]
pub(crate) struct Slot<C> {
    port: u16,
    state: Mutex<SlotState<C>>,
    /// Open connections (idle or busy); decremented when a connection's [`Live`] drops.
    live: AtomicUsize,
    /// Moving average of the time to an answer's head, in microseconds.
    head_us: AtomicU64,
    /// When a connection last came free ([`since_start`] microseconds).
    freed_at: AtomicU64,
}

/// Microseconds from the pool clock's start to `t` (a cheap shared clock for the pool).
fn micros(t: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    t.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_micros() as u64
}

/// Microseconds since the pool clock's start.
fn since_start() -> u64 {
    micros(Instant::now())
}

#[derive(Debug)]
struct SlotState<C> {
    idle: Vec<(C, Instant)>,
    /// Requests waiting at the soft cap: each gets a freed connection (`Some`), or leaves to
    /// open one (`None`, when a connection closed).
    waiters: VecDeque<oneshot::Sender<Option<C>>>,
}

impl<C> Default for SlotState<C> {
    fn default() -> Self {
        SlotState {
            idle: Vec::new(),
            waiters: VecDeque::new(),
        }
    }
}

/// Counts a connection as open while it exists; the connection (or its task) owns it.
#[derive(Debug)]
pub(crate) struct Live<C: Pooled>(Arc<Slot<C>>);

impl<C: Pooled> Drop for Live<C> {
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

/// What a request gets from [`Slot::checkout`].
pub(crate) enum Checkout<C: Pooled> {
    /// A pooled connection (it may have gone stale meanwhile: check before use).
    Reuse(C),
    /// Permission to open a new connection, counted as open from now on.
    Open(Live<C>),
}

enum Acquire<C: Pooled> {
    Idle(C),
    Connect,
    Wait(oneshot::Receiver<Option<C>>),
}

impl<C: Pooled> Slot<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sidecar's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
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
    pub(crate) fn record(&self, took: Duration) {
        let new = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.head_us.load(Ordering::Relaxed);
        let avg = if old == 0 {
            new
        } else {
            old - old / 8 + new / 8
        };
        self.head_us.store(avg, Ordering::Relaxed);
    }

    /// Counts a new connection as open without asking (a retry after a stale one).
    pub(crate) fn open_now(self: &Arc<Self>) -> Live<C> {
        self.live.fetch_add(1, Ordering::Relaxed);
        Live(self.clone())
    }

    /// An idle connection, else permission to open one, else a place in the queue.
    fn acquire(self: &Arc<Self>, stale: &mut Vec<C>) -> Acquire<C> {
        let mut st = self.lock();
        // (Connections idle for too long are closed by `sweep`.)
        while let Some((conn, _)) = st.idle.pop() {
            if conn.is_closed() {
                // Closed once the lock is released (a connection's `Live` takes it).
                stale.push(conn);
                continue;
            }
            return Acquire::Idle(conn);
        }
        if self.live.load(Ordering::Relaxed) < SOFT_CAP && st.waiters.is_empty() {
            self.live.fetch_add(1, Ordering::Relaxed);
            return Acquire::Connect;
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(tx);
        Acquire::Wait(rx)
    }

    /// Waits in the queue while connections keep coming free; None: open one.
    async fn wait(&self, mut rx: oneshot::Receiver<Option<C>>) -> Option<C> {
        let soft = self.soft_wait();
        let give_up = tokio::time::Instant::now() + SOFT_WAIT_MAX.max(soft) * 10;
        let mut until = tokio::time::Instant::now() + soft;
        loop {
            match tokio::time::timeout_at(until.min(give_up), &mut rx).await {
                Ok(Ok(got)) => return got,
                Ok(Err(_)) => return None,
                Err(_) => {
                    // Still queued. Keep waiting if a connection came free lately (the queue
                    // moves), else open one beyond the cap.
                    let freed = self.freed_at.load(Ordering::Relaxed);
                    let quiet = Duration::from_micros(since_start().saturating_sub(freed));
                    if quiet >= soft || tokio::time::Instant::now() >= give_up {
                        return None;
                    }
                    until = tokio::time::Instant::now() + (soft - quiet);
                }
            }
        }
    }

    /// A pooled connection, or permission to open one (after queueing at the soft cap).
    pub(crate) async fn checkout(self: &Arc<Self>) -> Checkout<C> {
        let mut stale = Vec::new();
        let got = self.acquire(&mut stale);
        drop(stale);
        match got {
            Acquire::Idle(c) => Checkout::Reuse(c),
            Acquire::Connect => Checkout::Open(Live(self.clone())),
            Acquire::Wait(rx) => match self.wait(rx).await {
                Some(c) => Checkout::Reuse(c),
                None => Checkout::Open(self.open_now()),
            },
        }
    }

    /// Returns a connection whose answer was read to the end: to the longest-waiting
    /// request, else to the idle list.
    pub(crate) fn release(&self, conn: C) {
        self.release_at(conn, Instant::now());
    }

    /// [`Slot::release`] at `now`.
    pub(crate) fn release_at(&self, conn: C, now: Instant) {
        if conn.is_closed() {
            return;
        }
        self.freed_at.store(micros(now), Ordering::Relaxed);
        let mut st = self.lock();
        let mut conn = conn;
        while let Some(w) = st.waiters.pop_front() {
            match w.send(Some(conn)) {
                Ok(()) => return,
                // That request gave up waiting.
                Err(back) => match back {
                    Some(c) => conn = c,
                    None => return,
                },
            }
        }
        st.idle.push((conn, now));
    }
}

impl<C: Pooled> Pool<C> {
    /// An empty pool.
    pub(crate) fn new() -> Pool<C> {
        Pool {
            slots: Mutex::default(),
        }
    }

    /// The connections to `port`.
    pub(crate) fn slot(&self, port: u16) -> Arc<Slot<C>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.iter().find(|s| s.port == port) {
            return s.clone();
        }
        let s = Arc::new(Slot {
            port,
            state: Mutex::default(),
            live: AtomicUsize::new(0),
            head_us: AtomicU64::new(0),
            freed_at: AtomicU64::new(0),
        });
        slots.push(s.clone());
        s
    }

    /// Closes connections idle for longer than [`IDLE_FOR`], and those beyond the soft cap
    /// idle for longer than [`SURPLUS_IDLE_FOR`]; forgets ports with none open.
    pub(crate) fn sweep(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|slot| {
            let live = slot.live.load(Ordering::Relaxed);
            let mut st = slot.lock();
            // The idle list is most-recently-used last: the oldest are at the front.
            let mut surplus = live.saturating_sub(SOFT_CAP);
            let idle = std::mem::take(&mut st.idle);
            let mut closing = Vec::new();
            for (c, since) in idle {
                let idle = since.elapsed();
                let keep =
                    !c.is_closed() && idle <= IDLE_FOR && !(surplus > 0 && idle > SURPLUS_IDLE_FOR);
                if keep {
                    st.idle.push((c, since));
                } else {
                    surplus = surplus.saturating_sub(1);
                    closing.push(c);
                }
            }
            drop(st);
            // Closed outside the lock (a connection's `Live` takes it when it drops).
            drop(closing);
            slot.live.load(Ordering::Relaxed) > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake {
        closed: bool,
        _live: Live<Fake>,
    }

    impl Pooled for Fake {
        fn is_closed(&self) -> bool {
            self.closed
        }
    }

    #[tokio::test]
    async fn reuses_released_connections_and_counts_live_ones() {
        let pool: Pool<Fake> = Pool::new();
        let slot = pool.slot(1);
        let Checkout::Open(live) = slot.checkout().await else {
            panic!("an empty pool opens");
        };
        assert_eq!(slot.live.load(Ordering::Relaxed), 1);
        slot.release(Fake {
            closed: false,
            _live: live,
        });
        let Checkout::Reuse(c) = slot.checkout().await else {
            panic!("the released connection is reused");
        };
        // A closed connection is not taken back; its count goes when it drops.
        slot.release(Fake {
            closed: true,
            _live: c._live,
        });
        assert_eq!(slot.live.load(Ordering::Relaxed), 0);
        assert!(matches!(slot.checkout().await, Checkout::Open(_)));
    }

    #[tokio::test]
    async fn at_the_cap_a_freed_connection_goes_to_the_waiter() {
        let pool: Pool<Fake> = Pool::new();
        let slot = pool.slot(2);
        let mut open = Vec::new();
        for _ in 0..SOFT_CAP {
            match slot.checkout().await {
                Checkout::Open(l) => open.push(Fake {
                    closed: false,
                    _live: l,
                }),
                Checkout::Reuse(_) => panic!("nothing to reuse yet"),
            }
        }
        let s2 = slot.clone();
        let waiter = tokio::spawn(async move { matches!(s2.checkout().await, Checkout::Reuse(_)) });
        tokio::time::sleep(Duration::from_millis(5)).await;
        slot.release(open.pop().unwrap());
        assert!(waiter.await.unwrap(), "the waiter got the freed connection");
    }
}
