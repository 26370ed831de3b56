//! Whether omac runs attached to its controlling terminal. Then the agent stays in omac's
//! process group, the job the shell controls: the terminal's signals (Ctrl-C, Ctrl-Z,
//! window size) reach it directly, pipelines and `fg`/`bg` behave as without omac, and
//! omac's own processes forward only the signals someone sends them explicitly.

/// True when one of the standard descriptors is this session's controlling terminal.
pub fn attached() -> bool {
    // SAFETY: getsid/tcgetsid/isatty take plain integers.
    unsafe {
        let sid = libc::getsid(0);
        (0..=2).any(|fd| libc::isatty(fd) == 1 && libc::tcgetsid(fd) == sid)
    }
}
