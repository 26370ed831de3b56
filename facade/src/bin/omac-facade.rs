//! The facade on its own, for tests and benchmarks (the omac binary offers the same as the
//! hidden `omac __facade --config FILE` and `omac __sidecar-keeper`).
//!
//! ```text
//! omac-facade serve --config FILE      run the facade and sidecars described in FILE
//! omac-facade __sidecar-keeper ...     the keeper process the supervisor starts
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.first().and_then(|a| a.to_str()) {
        Some(omac_facade::keeper::SUBCOMMAND) => omac_facade::keeper::main(&args[1..]),
        Some("serve") => match (args.get(1).and_then(|a| a.to_str()), args.get(2)) {
            (Some("--config"), Some(path)) if args.len() == 3 => {
                init_logging();
                omac_facade::standalone::run(&PathBuf::from(path))
            }
            _ => usage(),
        },
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!("usage: omac-facade serve --config FILE");
    2
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
