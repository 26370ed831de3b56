//! `omac run` forks its sandbox's stage before Rust's runtime starts.
//!
//! The stage's work is the path every start waits for (see `commands::run::prestart`), and
//! the sooner it is forked, the sooner that path begins. glibc runs the functions of
//! `.init_array` with the process's arguments once its own start is done, before `main`.
//! The stage is forked from there, and omac's own start goes on in parallel.

// glibc only: musl calls `.init_array` functions without arguments (there `run` forks the
// stage once the command line is parsed).
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
mod hook {
    use std::ffi::{c_char, c_int, CStr};

    /// Called by glibc with `argc`, `argv` and `envp`: for `omac run ...`, forks the stage.
    /// `omac [options] run` is left to `commands::run::run`, which forks it then.
    extern "C" fn fork_stage_early(
        argc: c_int,
        argv: *const *const c_char,
        _envp: *const *const c_char,
    ) {
        if argc < 2 || argv.is_null() {
            return;
        }
        // SAFETY: glibc passes `argc` valid entries (and a terminating null).
        let first = unsafe { *argv.add(1) };
        if first.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated argument string.
        if unsafe { CStr::from_ptr(first) }.to_bytes() != b"run" {
            return;
        }
        crate::STARTED.get_or_init(omac_runtime::wire::now);
        #[cfg(target_arch = "x86_64")]
        crate::entry::offer_holder();
        if super::open_standard_streams() {
            crate::commands::run::prestart();
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static FORK_STAGE_EARLY: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
        fork_stage_early;
}

/// Opens /dev/null on each of descriptors 0, 1 and 2 that is closed: otherwise a file or
/// pipe opened later would take that number and be written as a standard stream (the
/// stage's pipes, for one, would reach the agent as its stdin or stdout). False when that
/// fails (`main` then aborts; the hook above forks no stage).
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
pub(crate) fn open_standard_streams() -> bool {
    (0..3).all(|fd| {
        // SAFETY: fcntl and open with plain arguments.
        unsafe {
            libc::fcntl(fd, libc::F_GETFD) >= 0
                || std::io::Error::last_os_error().raw_os_error() != Some(libc::EBADF)
                || libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) == fd
        }
    })
}
