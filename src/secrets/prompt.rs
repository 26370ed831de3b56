//! Asking the user on the terminal: masked for secrets (echo off through termios), plain for
//! config fields. Never when stdin is not a terminal: callers check [`interactive`] first and
//! refuse with the ways to provide the value instead.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::secrets::Secret;

/// The longest line read from the terminal.
const MAX_LINE: usize = 64 * 1024;

/// Whether stdin is a terminal (prompts are allowed).
pub fn interactive() -> bool {
    // SAFETY: isatty on a descriptor number.
    unsafe { libc::isatty(0) == 1 }
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static mut SAVED: MaybeUninit<libc::termios> = MaybeUninit::uninit();

extern "C" fn restore_and_reraise(sig: libc::c_int) {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // SAFETY: SAVED was written before ACTIVE was set; tcsetattr is async-signal-safe.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, std::ptr::addr_of!(SAVED).cast());
        }
    }
    // SAFETY: restoring the default action and re-raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Echo off on stdin until dropped (also restored if a signal kills the process meanwhile).
struct EchoOff {
    old_handlers: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        let mut t = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills `t` on success.
        if unsafe { libc::tcgetattr(0, t.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by tcgetattr above.
        let saved = unsafe { t.assume_init() };
        // SAFETY: written before ACTIVE is set, read only by the handler once ACTIVE is true.
        unsafe {
            std::ptr::addr_of_mut!(SAVED).write(MaybeUninit::new(saved));
        }
        ACTIVE.store(true, Ordering::SeqCst);
        let handler = restore_and_reraise as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let mut old_handlers = Vec::new();
        for &s in &SIGNALS {
            // SAFETY: installing a handler that only calls async-signal-safe functions.
            let old = unsafe { libc::signal(s, handler) };
            if old == libc::SIG_IGN {
                // The parent wants this signal ignored: keep it so.
                // SAFETY: putting back what was there.
                unsafe {
                    libc::signal(s, libc::SIG_IGN);
                }
            } else {
                old_handlers.push((s, old));
            }
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON;
        // SAFETY: setting attributes from a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &quiet) } != 0 {
            let e = io::Error::last_os_error();
            drop(EchoOff { old_handlers });
            return Err(e);
        }
        Ok(EchoOff { old_handlers })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if ACTIVE.swap(false, Ordering::SeqCst) {
            // SAFETY: SAVED holds the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSAFLUSH, std::ptr::addr_of!(SAVED).cast());
            }
        }
        for &(s, h) in &self.old_handlers {
            // SAFETY: putting back the handler that was there.
            unsafe {
                libc::signal(s, h);
            }
        }
    }
}

/// Reads one line from stdin into a zeroed-on-drop buffer (without the newline).
fn read_line_bytes() -> io::Result<Secret> {
    let mut buf: Vec<u8> = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if buf.len() == buf.capacity() {
                    // Grow by hand so no unzeroed copy of the old buffer is left behind.
                    let mut bigger = Vec::with_capacity(buf.capacity() * 2);
                    bigger.extend_from_slice(&buf);
                    zeroize::Zeroize::zeroize(&mut buf);
                    buf = bigger;
                }
                buf.push(byte[0]);
                if buf.len() > MAX_LINE {
                    zeroize::Zeroize::zeroize(&mut buf);
                    return Err(io::Error::other("the line is too long"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut buf);
                return Err(e);
            }
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Secret::new(buf))
}

/// Prints `prompt` on stderr and reads a line from the terminal with echo off.
pub fn read_masked(prompt: &str) -> io::Result<Secret> {
    // Echo goes off before the prompt shows: whatever is typed after it is never echoed.
    let guard = EchoOff::new()?;
    let mut err = io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let r = read_line_bytes();
    drop(guard);
    writeln!(err)?;
    r
}

/// Prints `prompt` on stderr and reads a line (echoed: for non-secret fields).
pub fn read_plain(prompt: &str) -> io::Result<String> {
    let mut err = io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let line = read_line_bytes()?;
    Ok(String::from_utf8_lossy(line.expose()).into_owned())
}
