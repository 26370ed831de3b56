//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// omac: a sandbox-first runtime for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "omac", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Work directory of the session [default: the current directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Show what omac is doing, step by step
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make, explain, compare and check OCI bundles
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Run a bundle: build its sandbox and execute its command inside
    Run(RunArgs),
    /// Run one command in a fresh bundle of a profile, then remove the bundle
    Sandbox(SandboxArgs),
    /// Check this host: what a sandbox gets here and what to fix
    Doctor,
    /// Print omac's version
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `omac bundle ...`
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write an OCI bundle (config.json, omac.json, rootfs/) for a profile and command
    Create(CreateArgs),
    /// Say in plain words what a bundle lets the agent do
    Explain {
        /// The bundle directory
        dir: PathBuf,
        /// Print JSON for machines
        #[arg(long)]
        json: bool,
    },
    /// Say what bundle B allows that A does not, and the reverse (exit 1 when they differ)
    Diff {
        /// The first bundle
        a: PathBuf,
        /// The second bundle
        b: PathBuf,
        /// Print JSON for machines
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle: schema, the omac.json digest, the skill layers
    Verify {
        /// The bundle directory
        dir: PathBuf,
        /// Directory of the OCI runtime-spec JSON Schemas [env: OMAC_OCI_SCHEMA_DIR]
        #[arg(long, env = "OMAC_OCI_SCHEMA_DIR", value_name = "DIR")]
        schema_dir: Option<PathBuf>,
    },
}

/// `omac bundle create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Profile name or path [default: default]
    #[arg(long, short, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Harness whose state the sandbox keeps and whose binary runs without a command
    #[arg(long, value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Directory to write the bundle into
    #[arg(long, short, value_name = "DIR", default_value = "omac-bundle")]
    pub out: PathBuf,
    /// The command to run [default: the harness's binary]
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `omac run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The bundle directory
    pub dir: PathBuf,
    /// Bind the host Unix socket PATH into the sandbox's socket directory as NAME
    #[arg(long = "socket", value_name = "NAME=PATH")]
    pub sockets: Vec<String>,
    /// Arguments appended to the bundle's command
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `omac sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Profile name or path [default: default]
    #[arg(long, short, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// The command to run
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}
