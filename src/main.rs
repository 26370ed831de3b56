//! The `omac` binary: parses the command line, runs the command, maps failures to exit codes.

// With glibc, `main` below is called directly: Rust's runtime start is skipped (see `main`).
#![cfg_attr(all(not(test), target_os = "linux", target_env = "gnu"), no_main)]

mod cli;
mod commands;
mod early;
// Also in the unit tests' harness: build.rs makes `omac_entry` the entry point of every
// build of the binary target.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
mod entry;
mod exit;
mod paths;
mod secrets;
mod session;

/// When the process started (`CLOCK_MONOTONIC` ns), for `--verbose` step timings.
pub static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The process's entry from glibc's start. Rust's own start (`lang_start`) is skipped: on
/// the way to a sandbox's first step it read `/proc/self/maps` (glibc's
/// `pthread_getattr_np`, for the stack guard's address: 77 us on its own here) and mapped
/// a signal stack, which every `omac run` waited for. What it did that omac relies on is
/// done here: the standard descriptors are open, and SIGPIPE is ignored (a write to a
/// closed pipe is an EPIPE error, not the end of omac). A stack overflow still faults on
/// the guard page; it is reported as a plain SIGSEGV instead of by name. The arguments and
/// the environment are Rust's as before (std reads them from glibc's `.init_array` call,
/// which musl does not make: elsewhere Rust's start stays).
#[cfg(all(not(test), target_os = "linux", target_env = "gnu"))]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    if !early::open_standard_streams() {
        std::process::abort();
    }
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    omac_main()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    omac_main()
}

#[cfg_attr(test, allow(dead_code))]
fn omac_main() -> ! {
    STARTED.get_or_init(omac_runtime::wire::now);
    // Internal stages started by omac itself run before anything else is set up,
    // single-threaded: the sandbox stage (re-executed by `omac run`) and the sidecar keeper.
    let first = std::env::args_os().nth(1);
    if first.as_deref() == Some(std::ffi::OsStr::new(omac_runtime::STAGE_ARG)) {
        omac_runtime::stage_main();
    }
    // `omac run` started its sandbox's stage before `main` (see `early`): the stage creates
    // the namespaces while omac reads the bundle.
    if first.as_deref() == Some(std::ffi::OsStr::new(omac_facade::keeper::SUBCOMMAND)) {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        std::process::exit(omac_facade::keeper::main(&args[2..]));
    }
    let cli = match cli::Cli::from_args() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::Code::Misuse as i32
            } else {
                0
            });
        }
    };
    init_logging(cli.global.verbose);
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("omac: {e:#}");
            exit::code_for(&e) as i32
        }
    };
    // Nothing of a run outlives omac: its stage may still be removing what it left.
    omac_runtime::wait_for_stages();
    omac_runtime::holder::reap();
    std::process::exit(code);
}

fn init_logging(verbose: bool) {
    let default = if verbose { "omac=debug,info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
