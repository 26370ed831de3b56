//! Signals of a session. `omac start` and `omac run` block the signals omac forwards
//! ([`omac_runtime::FORWARDED_SIGNALS`]) before any thread exists, and one watcher thread
//! takes them with `sigwaitinfo`:
//! - while the session is being prepared (nothing started yet), SIGINT, SIGTERM, SIGHUP and
//!   SIGQUIT end omac with 128+N, once the stage started ahead is gone (with what it made);
//! - once the session has started, every signal goes to the session's event loop, which
//!   knows whether the terminal sent it (the agent, in omac's process group, got it too)
//!   or someone sent it to omac (it is forwarded to the agent), and tears down when
//!   it must.

use std::sync::atomic::{AtomicBool, Ordering};

use omac_runtime::FORWARDED_SIGNALS;
use tokio::sync::mpsc;

/// A signal received by omac.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal number.
    pub signal: i32,
    /// Sent by the kernel for the terminal (Ctrl-C, Ctrl-\, a window size change, a
    /// hangup): the agent's process group got it as well.
    pub from_terminal: bool,
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Blocks the forwarded signals in this (still single) thread and starts the watcher.
/// Call it first thing in the command, before the keychain or tokio create threads.
pub fn install() -> anyhow::Result<mpsc::UnboundedReceiver<Received>> {
    omac_runtime::block_forwarded_signals()
        .map_err(|e| anyhow::Error::new(e).context("blocking signals"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("omac-signals".into())
        .spawn(move || watch(tx))
        .map_err(|e| anyhow::Error::new(e).context("starting the signal thread"))?;
    Ok(rx)
}

/// From now on signals go to the session instead of ending omac.
pub fn session_started() {
    STARTED.store(true, Ordering::SeqCst);
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset fill a local set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in FORWARDED_SIGNALS {
            libc::sigaddset(&mut s, *sig);
        }
        s
    }
}

/// Whether `sig` asks omac to stop (as opposed to a window change or a user signal).
pub fn is_stop(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
    )
}

fn watch(tx: mpsc::UnboundedSender<Received>) {
    let set = set();
    loop {
        // SAFETY: siginfo_t is plain data filled by the kernel.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid set and siginfo.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        let r = Received {
            signal: sig,
            from_terminal: info.si_code == libc::SI_KERNEL,
        };
        if !STARTED.load(Ordering::SeqCst) {
            if is_stop(sig) {
                // The stage started ahead may have built the view already, making mount
                // points on the host: it removes them when dismissed, before omac exits.
                omac_runtime::dismiss_stage();
                std::process::exit(128 + sig);
            }
            continue;
        }
        if tx.send(r).is_err() {
            // The session is over: the process is about to exit anyway.
            if is_stop(sig) {
                omac_runtime::wait_for_stages();
                std::process::exit(128 + sig);
            }
        }
    }
}

/// Runs `f` with the stop signals unblocked in this thread: a prompt on the terminal can
/// then be interrupted with Ctrl-C (its handler restores the terminal and re-raises).
pub fn interruptible<T>(f: impl FnOnce() -> T) -> T {
    let stop = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    // SAFETY: a local signal set.
    let s = unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in stop {
            libc::sigaddset(&mut s, sig);
        }
        s
    };
    // SAFETY: changing this thread's mask with a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &s, std::ptr::null_mut()) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    r
}
