//! `omac run DIR [-- ARGS]` and `omac sandbox [--profile P] -- CMD`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use omac_runtime::{Level, Outcome, RunOptions};

use crate::cli::{CreateArgs, SandboxArgs};
use crate::exit::{Code, Failure};

/// Runs `loaded` with the host environment, forwarding signals; returns the agent's code.
fn execute(
    loaded: &omac_bundle::Loaded,
    sockets: Vec<(String, PathBuf)>,
    args: Vec<String>,
    verbose: bool,
) -> anyhow::Result<i32> {
    // Single-threaded here: blocking now covers every thread omac will have.
    omac_runtime::block_forwarded_signals().context("blocking signals")?;
    // The filtered mode's GIT_SSH_COMMAND runs `omac connect` from inside.
    let filtered = loaded
        .ext
        .as_ref()
        .is_some_and(|e| e.network.mode == "filtered");
    let binaries = match std::env::current_exe() {
        Ok(exe) if filtered && exe.is_file() => vec![("omac".to_string(), exe)],
        _ => Vec::new(),
    };
    let options = RunOptions {
        args,
        sockets,
        binaries,
        verbose,
        forward_signals: true,
        // Tests exercise the re-executed stage that multi-threaded callers get.
        stage_exe: std::env::var_os("OMAC_STAGE_EXEC").map(|_| PathBuf::from("/proc/self/exe")),
        t0: crate::STARTED.get().copied(),
        ..RunOptions::from_env()
    };
    let outcome = omac_runtime::run(loaded, &options)?;
    if verbose {
        report(&outcome);
    }
    Ok(outcome.exit_code)
}

fn report(o: &Outcome) {
    let e = &o.enforcement;
    eprintln!(
        "omac: sandbox mode {:?}, Landlock ABI {}",
        e.mode, e.landlock_abi
    );
    for (name, s) in e.layers() {
        let level = match s.level {
            Level::Full => "full",
            Level::Partial => "partial",
            Level::None => "none",
        };
        eprintln!("omac:   {name:<16} {level:<8} {}", s.detail);
    }
    match o.signal {
        Some(s) => eprintln!(
            "omac: the agent was killed by signal {s} (exit {})",
            o.exit_code
        ),
        None => eprintln!("omac: the agent exited with {}", o.exit_code),
    }
}

/// `omac run`.
pub fn run(
    dir: &Path,
    sockets: &[String],
    args: Vec<String>,
    verbose: bool,
) -> anyhow::Result<i32> {
    let sockets = sockets
        .iter()
        .map(|s| match s.split_once('=') {
            Some((name, path)) if !name.is_empty() && path.starts_with('/') => {
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ => Err(Failure::new(
                Code::Misuse,
                format!("--socket {s:?}: write NAME=/absolute/path"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = omac_bundle::load(dir)?;
    execute(&loaded, sockets, args, verbose)
}

/// `omac sandbox`: a bundle in a temporary directory, run, then removed.
pub fn sandbox(workdir: &Path, args: SandboxArgs, verbose: bool) -> anyhow::Result<i32> {
    let tmp = tempfile::Builder::new()
        .prefix("omac-sandbox-")
        .tempdir()
        .context("creating a temporary directory for the bundle")?;
    let out = tmp.path().join("bundle");
    super::bundle::create(
        workdir,
        CreateArgs {
            profile: args.profile,
            harness: None,
            out: out.clone(),
            command: args.command,
        },
    )?;
    let loaded = omac_bundle::load(&out)?;
    let code = execute(&loaded, Vec::new(), Vec::new(), verbose);
    drop(tmp);
    code
}
