//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// omac: a sandbox-first runtime for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "omac", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The options of every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The options of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Work directory of the session [default: the current directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Show what omac is doing, step by step
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

/// `omac run ...` alone: clap builds the parser of every command it knows before it reads
/// a word, about 0.2 ms of every `omac run`, which has its sandbox waiting on it.
#[derive(Debug, Parser)]
#[command(name = "omac", version, about, long_about = None, propagate_version = true)]
struct RunCli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: RunOnly,
}

/// The one command [`RunCli`] knows.
#[derive(Debug, Subcommand)]
enum RunOnly {
    /// Run a bundle: build its sandbox and execute its command inside
    Run(RunArgs),
}

impl Cli {
    /// The command line, parsed: `omac run ...` by [`RunCli`], the rest by [`Cli`].
    pub fn from_args() -> Result<Cli, clap::Error> {
        if let Some(cli) = Cli::plain_run(std::env::args_os().skip(1)) {
            return Ok(cli);
        }
        if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("run")) {
            let RunCli {
                global,
                command: RunOnly::Run(args),
            } = RunCli::try_parse()?;
            return Ok(Cli {
                global,
                command: Command::Run(args),
            });
        }
        Cli::try_parse()
    }

    /// `omac run DIR` and nothing else, as clap would parse it, without building a parser
    /// (about 0.1 ms, which the sandbox's start waits for). Any other form (an option, a
    /// `--`, a second operand, an operand that looks like an option) is left to clap.
    fn plain_run(mut words: impl Iterator<Item = std::ffi::OsString>) -> Option<Cli> {
        use std::os::unix::ffi::OsStrExt;
        if words.next()? != "run" {
            return None;
        }
        let dir = words.next()?;
        if words.next().is_some() || dir.is_empty() || dir.as_bytes().starts_with(b"-") {
            return None;
        }
        Some(Cli {
            global: Global {
                workdir: None,
                verbose: false,
            },
            command: Command::Run(RunArgs {
                dir: dir.into(),
                sockets: Vec::new(),
                json: false,
                audit_log: None,
                no_audit: false,
                args: Vec::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn both_parsers_are_well_formed_and_agree_on_run() {
        Cli::command().debug_assert();
        RunCli::command().debug_assert();
        let words = [
            "omac", "-v", "run", "--json", "--socket", "a=/b", "dir", "--", "x",
        ];
        let full = Cli::try_parse_from(words).unwrap();
        let alone = RunCli::try_parse_from(words).unwrap();
        let RunOnly::Run(a) = alone.command;
        let Command::Run(f) = full.command else {
            panic!("not run: {full:?}")
        };
        assert_eq!(format!("{a:?}"), format!("{f:?}"));
        assert_eq!(format!("{:?}", alone.global), format!("{:?}", full.global));
        // The help of `run` is the same either way.
        let help = |mut c: clap::Command| {
            c.find_subcommand_mut("run")
                .unwrap()
                .render_help()
                .to_string()
        };
        assert_eq!(help(RunCli::command()), help(Cli::command()));
    }

    #[test]
    fn a_plain_run_is_parsed_as_clap_parses_it_and_nothing_else_is() {
        let os = |words: &[&str]| {
            words
                .iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        for dir in ["dir", "./b", "/tmp/x y", "run", "\u{e9}t\u{e9}"] {
            let fast = Cli::plain_run(os(&["run", dir]).into_iter()).expect(dir);
            let full = Cli::try_parse_from(["omac", "run", dir]).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{dir}");
        }
        for words in [
            &["run"][..],
            &["run", ""],
            &["run", "-v"],
            &["run", "--json"],
            &["run", "--help"],
            &["run", "-"],
            &["run", "--"],
            &["run", "dir", "--"],
            &["run", "dir", "x"],
            &["run", "dir", "--json"],
            &["-v", "run", "dir"],
            &["bundle", "dir"],
            &[],
        ] {
            assert!(Cli::plain_run(os(words).into_iter()).is_none(), "{words:?}");
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an agent (opencode by default) in a sandbox, with your skills
    Start(StartArgs),
    /// Make, explain, compare and check OCI bundles
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Run a bundle: build its sandbox and execute its command inside
    Run(RunArgs),
    /// Run one command in a fresh bundle of a profile, then remove the bundle
    Sandbox(SandboxArgs),
    /// Check this host: what a sandbox gets here and what to fix
    Doctor,
    /// Register a skill: check it, store its secrets and config, approve its layer
    Register(RegisterArgs),
    /// Remove a skill's registration (its secrets and config stay unless purged)
    Deregister(DeregisterArgs),
    /// List the registered skills of this workdir and the global ones
    List(ListArgs),
    /// A skill's secrets in the OS keychain
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// A skill's resolved config fields and secret fingerprints
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Skill layers: digests and the layer store
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// Relay stdin/stdout to HOST:PORT through the egress proxy (an ssh ProxyCommand)
    Connect {
        /// Destination host name or address
        host: String,
        /// Destination port
        port: u16,
        /// The proxy's Unix socket [default: /run/omac/egress.sock, then 127.0.0.1:29171]
        #[arg(long, env = "OMAC_EGRESS_SOCKET", value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Print omac's version
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Run the facade and its sidecars from a JSON file (tests and benchmarks)
    #[command(name = "__facade", hide = true)]
    Facade {
        /// The JSON file (format: omac-facade's standalone module)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
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
    /// Check a bundle: schema, the omac.json digest, what runtimes need, the skill layers
    Verify {
        /// The bundle directory
        dir: PathBuf,
        /// Directory of the OCI runtime-spec JSON Schemas (without it, the schema check is skipped)
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

/// `omac start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The agent: opencode (oc, the default), claude-code (claude, cc), codex (cx)
    pub harness: Option<String>,
    /// Sandbox profile, by name or path [default: config.yaml's, else default]
    #[arg(long, short, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Run this command instead of the harness's binary (split at spaces)
    #[arg(long, value_name = "CMD")]
    pub inner: Option<String>,
    /// Run the agent WITHOUT a sandbox, skills still working (debugging omac only)
    #[arg(long)]
    pub no_sandbox: bool,
    /// Keep the facade and sidecars up after the agent exits, until Ctrl-C or SIGTERM
    #[arg(long)]
    pub keep_running: bool,
    /// Run skills that changed since they were registered (says so loudly)
    #[arg(long)]
    pub accept_skill_changes: bool,
    /// Let the agent reach this port on the host's 127.0.0.1 (a database, a dev service)
    #[arg(long = "open-port", value_name = "PORT")]
    pub open_ports: Vec<u16>,
    /// Make a server the agent runs on this port reachable at the host's 127.0.0.1:PORT
    #[arg(long = "publish", value_name = "PORT")]
    pub publish: Vec<u16>,
    /// Write the audit log here [default: ~/.local/state/omac/audit.jsonl]
    #[arg(long, value_name = "PATH", conflicts_with = "no_audit")]
    pub audit_log: Option<PathBuf>,
    /// Write no audit log
    #[arg(long)]
    pub no_audit: bool,
    /// Print a JSON summary on stdout at the end (exit code, duration, enforcement, denials)
    #[arg(long)]
    pub json: bool,
    /// Arguments for the agent
    #[arg(last = true, value_name = "INNER ARGS")]
    pub args: Vec<String>,
}

/// `omac run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The bundle directory
    pub dir: PathBuf,
    /// Bind the host Unix socket PATH into the sandbox's socket directory as NAME
    #[arg(long = "socket", value_name = "NAME=PATH")]
    pub sockets: Vec<String>,
    /// Print a JSON summary on stdout at the end (exit code, duration, enforcement, denials)
    #[arg(long)]
    pub json: bool,
    /// Write the audit log here [default: ~/.local/state/omac/audit.jsonl]
    #[arg(long, value_name = "PATH", conflicts_with = "no_audit")]
    pub audit_log: Option<PathBuf>,
    /// Write no audit log
    #[arg(long)]
    pub no_audit: bool,
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

/// `omac register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The skill (its directory name)
    pub skill: String,
    /// Update the registration even though the skill changed since it was registered
    #[arg(long)]
    pub force: bool,
    /// Ask for secrets again even if the keychain has them
    #[arg(long, conflicts_with = "no_secrets")]
    pub reprompt_secrets: bool,
    /// Do not store secrets now (provide them before starting)
    #[arg(long)]
    pub no_secrets: bool,
    /// Read secrets from this KEY=VALUE file instead of asking
    #[arg(long, value_name = "FILE", conflicts_with = "no_secrets")]
    pub secrets_from: Option<PathBuf>,
    /// Ask for config fields again even if they are stored
    #[arg(long, conflicts_with = "no_fields")]
    pub reprompt_fields: bool,
    /// Do not store config fields now
    #[arg(long)]
    pub no_fields: bool,
    /// Read config fields from this KEY=VALUE file instead of asking
    #[arg(long, value_name = "FILE", conflicts_with = "no_fields")]
    pub fields_from: Option<PathBuf>,
    /// Look for the skill in this harness's folders only (opencode, claude-code, codex)
    #[arg(long, value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Register the user-global copy when the workdir has one of the same name
    #[arg(long)]
    pub global: bool,
}

/// `omac deregister`.
#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// The skill
    #[arg(required_unless_present = "prune")]
    pub skill: Option<String>,
    /// Also delete its secrets from the keychain
    #[arg(long)]
    pub purge_secrets: bool,
    /// Also delete its config fields from skill-config.yaml
    #[arg(long)]
    pub purge_fields: bool,
    /// Also delete its remembered defaults (keychain mirror and global skill-config)
    #[arg(long)]
    pub purge_defaults: bool,
    /// Deregister from the global registry rather than the workdir's
    #[arg(long)]
    pub global: bool,
    /// Deregister only the entry of this harness
    #[arg(long, value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Delete an unregistered skill's directory without asking
    #[arg(long, short)]
    pub yes: bool,
    /// Remove every registration whose skill directory is gone (workdir and global)
    #[arg(long, conflicts_with = "skill")]
    pub prune: bool,
}

/// `omac list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list registrations whose skill directory is gone
    #[arg(long)]
    pub all: bool,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
}

/// `omac secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Which secrets a skill declares and whether the keychain has them
    List {
        /// The skill
        skill: String,
    },
    /// Store one secret (asked on the terminal with echo off, or read with --stdin)
    Set {
        /// The skill
        skill: String,
        /// The secret's name
        name: String,
        /// Read the value from standard input (for scripts; one trailing newline is dropped)
        #[arg(long)]
        stdin: bool,
    },
    /// Delete one secret (workdir-scoped and global items)
    Unset {
        /// The skill
        skill: String,
        /// The secret's name
        name: String,
    },
    /// Store the secrets of a KEY=VALUE file
    Import {
        /// The skill
        skill: String,
        /// The file
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Say which keychain backend omac uses here, and why
    Backend,
}

/// `omac config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every config field (value and where it came from) and secret fingerprint of a skill
    Show {
        /// The skill
        skill: String,
        /// Print JSON for machines
        #[arg(long)]
        json: bool,
    },
    /// Print one config field's resolved value
    Get {
        /// The skill
        skill: String,
        /// The field's name
        field: String,
    },
}

/// `omac skills ...`
#[derive(Debug, Subcommand)]
pub enum SkillsCommand {
    /// Remove layers from the store that no registry references
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the layer digest of a skill directory
    Digest {
        /// The skill directory
        dir: PathBuf,
    },
    /// Copy a skill directory into the layer store, approving that content for `omac run`
    Import {
        /// The skill directory
        dir: PathBuf,
        /// Refuse unless the directory has this digest (from the bundle's omac.json)
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
    },
}
