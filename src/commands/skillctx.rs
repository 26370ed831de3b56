//! What the skill commands share: the environment, harness flags, the registered skill a
//! command names, warnings, and the keychain scope of a registration.

use std::path::PathBuf;

use omac_bundle::harness::Harness;
use omac_skills::registry::{self, Entry};
use omac_skills::{Env, Scope, Skill, Warning};

use crate::secrets;

/// The skills environment: the workdir as the Go omac resolves it, and the XDG homes.
pub fn skill_env(workdir: &Option<PathBuf>) -> anyhow::Result<Env> {
    Ok(Env::from_process(workdir.as_deref())?)
}

/// The harness a `--harness` flag names (exit 2 for an unknown one).
pub fn harness_arg(h: Option<&str>) -> anyhow::Result<Option<&'static Harness>> {
    h.map(super::bundle::harness_named).transpose()
}

/// Prints warnings on stderr.
pub fn print_warnings(ws: &[Warning]) {
    for w in ws {
        eprintln!("omac: warning: {w}");
    }
}

/// A registered skill, loaded.
pub struct Registered {
    /// Its registration.
    pub entry: Entry,
    /// The layer it is registered in.
    pub scope: Scope,
    /// The skill.
    pub skill: Skill,
}

/// The registered skill called `name`: the workdir's registration first, else the global
/// one (exit 4 when neither has it).
pub fn registered(env: &Env, name: &str) -> anyhow::Result<Registered> {
    for scope in [Scope::Workdir, Scope::Global] {
        let reg = registry::load(env, scope)?;
        if let Some(e) = reg.find(name, None) {
            let skill = omac_skills::load(&e.abs_dir(&env.workdir))?;
            print_warnings(&skill.warnings);
            return Ok(Registered {
                entry: e.clone(),
                scope,
                skill,
            });
        }
    }
    Err(omac_skills::Error::NotFound {
        what: format!("skill {name:?} is not registered in this workdir or globally"),
        fix: format!("run `omac register {name}` first (see `omac list`)"),
    }
    .into())
}

/// The keychain scope of a registration layer: workdir skills keep their secrets under the
/// workdir's hash, global ones unscoped.
pub fn secret_scope(env: &Env, scope: Scope) -> secrets::Scope {
    match scope {
        Scope::Workdir => secrets::Scope::workdir(&env.workdir),
        Scope::Global => secrets::Scope::Global,
    }
}

/// The OS name install scripts are keyed by: `linux`, `macos` or `wsl`.
pub fn host_os() -> &'static str {
    if cfg!(target_os = "macos") {
        return "macos";
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if release.to_ascii_lowercase().contains("microsoft") {
        "wsl"
    } else {
        "linux"
    }
}

/// The layer store of this user.
pub fn store(env: &Env) -> anyhow::Result<omac_skills::layer::Store> {
    let data = env.data_dir().ok_or_else(|| omac_skills::Error::NotFound {
        what: "no data directory (neither $XDG_DATA_HOME nor $HOME is set)".into(),
        fix: "set HOME (or XDG_DATA_HOME)".into(),
    })?;
    Ok(omac_skills::layer::Store::new(&data))
}
