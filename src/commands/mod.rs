//! One module per command; `run` dispatches.

pub mod bundle;
mod config;
mod connect;
mod deregister;
mod doctor;
mod list;
mod register;
pub(crate) mod run;
mod secrets;
pub mod skillctx;
mod skills;
pub mod start;
mod values;

use anyhow::Context;

use crate::cli::{BundleCommand, Cli, Command};
pub use skillctx::skill_env;

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let workdir = match &cli.global.workdir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    match cli.command {
        Command::Start(args) => start::start(&cli.global.workdir, args, cli.global.verbose),
        Command::Run(args) => run::run(args, cli.global.verbose),
        Command::Sandbox(args) => run::sandbox(&workdir, args, cli.global.verbose),
        Command::Doctor => doctor::run(&cli.global.workdir),
        Command::Connect { host, port, socket } => connect::run(&host, port, socket),
        Command::Version => {
            println!("omac {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "omac", &mut std::io::stdout());
            Ok(0)
        }
        Command::Register(args) => register::run(&skill_env(&cli.global.workdir)?, args),
        Command::Deregister(args) => deregister::run(&skill_env(&cli.global.workdir)?, args),
        Command::List(args) => list::run(&skill_env(&cli.global.workdir)?, args),
        Command::Secrets(c) => secrets::run(&skill_env(&cli.global.workdir)?, c),
        Command::Config(c) => config::run(&skill_env(&cli.global.workdir)?, c),
        Command::Skills(c) => skills::run(&skill_env(&cli.global.workdir)?, c),
        Command::Facade { config } => Ok(omac_facade::standalone::run(&config)),
        Command::Bundle(b) => match b {
            BundleCommand::Create(args) => bundle::create(&workdir, args),
            BundleCommand::Explain { dir, json } => bundle::explain(&dir, json),
            BundleCommand::Diff { a, b, json } => bundle::diff(&a, &b, json),
            BundleCommand::Verify { dir, schema_dir } => bundle::verify(&dir, schema_dir),
        },
    }
}
