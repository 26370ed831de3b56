//! `omac doctor`: what this host gives omac, section by section, with `[ok]`, `[warn]` and
//! `[fail]` lines and the fix for each problem. A section is a function returning
//! [`Section`]; add new ones to [`sections`]. Exit 3 when a registered skill is broken or a
//! config file is invalid, 4 when another check failed (the sandbox cannot run), else 0.

use std::collections::HashMap;

use omac_egress::prompt::{Availability, Prompter};
use omac_runtime::probe::{self, HostReport};
use omac_skills::{approval, registry, Env, Scope};

use crate::exit::Code;
use crate::secrets::{self, Keychain};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but weaker or slower than it could.
    Warn,
    /// Something omac needs by default is missing.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// The outcome.
    pub status: Status,
    /// What was checked and found.
    pub text: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Check {
    fn new(status: Status, text: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            status,
            text: text.into(),
            fix,
        }
    }
}

/// A titled group of checks.
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading.
    pub title: &'static str,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// A failure here is a broken configuration or skill (exit 3) rather than a missing
    /// prerequisite (exit 4).
    pub config: bool,
}

/// Every section, in the order printed.
fn sections(env: Option<&Env>) -> Vec<Section> {
    let mut v = vec![keychain(), config_files(env)];
    if let Some(e) = env {
        v.push(skills(e));
    }
    v.push(harnesses());
    v.push(dialogs());
    v.push(sandbox(&probe::host(None)));
    v
}

/// `omac doctor`: prints the report; exits 3 when a skill or config file is broken, 4 when
/// another check failed.
pub fn run(workdir: &Option<std::path::PathBuf>) -> anyhow::Result<i32> {
    println!("omac {}", env!("CARGO_PKG_VERSION"));
    let env = crate::commands::skill_env(workdir).ok();
    if let Some(e) = &env {
        println!("workdir {}", e.workdir.display());
    }
    let mut failed = false;
    let mut broken = false;
    for s in sections(env.as_ref()) {
        println!("\n{}", s.title);
        for c in &s.checks {
            let tag = match c.status {
                Status::Ok => "[ok]  ",
                Status::Warn => "[warn]",
                Status::Fail => {
                    if s.config {
                        broken = true;
                    } else {
                        failed = true;
                    }
                    "[fail]"
                }
            };
            println!("  {tag} {}", c.text);
            if let Some(f) = &c.fix {
                println!("         fix: {f}");
            }
        }
    }
    Ok(if broken {
        Code::Config as i32
    } else if failed {
        Code::Prerequisite as i32
    } else {
        0
    })
}

/// The keychain backend and whether it answers.
pub fn keychain() -> Section {
    let mut checks = Vec::new();
    match Keychain::open() {
        Err(e) => checks.push(Check::new(
            Status::Warn,
            format!("keychain: none usable: {e}"),
            Some(
                "secrets can still come from OMAC_SECRET_<NAME> or a skill's env_passthrough                  variables; for a keychain start a Secret Service (gnome-keyring) or set                  OMAC_KEYRING_BACKEND=keyutils"
                    .into(),
            ),
        )),
        Ok(k) => {
            let name = k.backend().name();
            match k.ping() {
                Err(e) => checks.push(Check::new(
                    Status::Warn,
                    format!("keychain: {name} ({}) does not answer: {e}", k.why()),
                    Some("unlock or start it; secrets from the environment still work".into()),
                )),
                Ok(()) if k.is_volatile() => checks.push(Check::new(
                    Status::Warn,
                    format!(
                        "keychain: {name} ({}): secrets live in the kernel keyring and are lost at reboot",
                        k.why()
                    ),
                    Some("start a Secret Service (gnome-keyring) to keep them".into()),
                )),
                Ok(()) => checks.push(Check::new(
                    Status::Ok,
                    format!("keychain: {name} ({})", k.why()),
                    None,
                )),
            }
        }
    }
    Section {
        title: "Keychain",
        checks,
        config: false,
    }
}

/// omac's config files (`~/.config/omac/config.yaml`, `<workdir>/.omac/config.yaml`).
pub fn config_files(env: Option<&Env>) -> Section {
    let dir = crate::paths::config_dir();
    let workdir = env.map(|e| e.workdir.clone()).unwrap_or_default();
    let checks = match crate::session::config::load(dir.as_deref(), &workdir) {
        Ok(c) if c.files.is_empty() => vec![Check::new(
            Status::Ok,
            "config: none found; built-in defaults (profile default, harness opencode, audit on)",
            None,
        )],
        Ok(c) => c
            .files
            .iter()
            .map(|f| Check::new(Status::Ok, format!("config: {}", f.display()), None))
            .collect(),
        Err(e) => vec![Check::new(
            Status::Fail,
            format!("config: {e:#}"),
            Some("correct the file (omac refuses to start with it)".into()),
        )],
    };
    Section {
        title: "Config",
        checks,
        config: true,
    }
}

/// The registry and each registered skill: its metadata, its layer, its secrets and fields.
pub fn skills(env: &Env) -> Section {
    let mut checks = Vec::new();
    let regs = match registry::merged(env, None) {
        Ok(r) => r,
        Err(e) => {
            return Section {
                title: "Skills",
                checks: vec![Check::new(
                    Status::Fail,
                    format!("registry: {e}"),
                    Some("repair or remove the registry file named above".into()),
                )],
                config: true,
            }
        }
    };
    checks.push(Check::new(
        Status::Ok,
        format!(
            "registry: {} skill(s) registered for this workdir and globally",
            regs.len()
        ),
        None,
    ));
    let store = crate::commands::skillctx::store(env).ok();
    let mut kc: Option<Option<Keychain>> = None;
    for r in &regs {
        checks.extend(skill_checks(env, r, store.as_ref(), &mut kc));
    }
    Section {
        title: "Skills",
        checks,
        config: true,
    }
}

fn skill_checks(
    env: &Env,
    r: &registry::Registered,
    store: Option<&omac_skills::layer::Store>,
    kc: &mut Option<Option<Keychain>>,
) -> Vec<Check> {
    let name = &r.entry.name;
    let fail = |text: String, fix: String| Check::new(Status::Fail, text, Some(fix));
    let skill = match omac_skills::load(&r.dir) {
        Ok(s) => s,
        Err(omac_skills::Error::NotFound { .. }) => {
            return vec![fail(
                format!("{name}: {} is gone", r.dir.display()),
                "omac deregister --prune".into(),
            )]
        }
        Err(e) => {
            return vec![fail(
                format!("{name}: {e}"),
                "correct omac.yaml / SKILL.md".into(),
            )]
        }
    };
    let Some(sidecar) = skill.meta.sidecar.as_ref() else {
        return vec![fail(
            format!("{name}: omac.yaml has no sidecar block"),
            format!("add one, or omac deregister {name}"),
        )];
    };
    let mut out = Vec::new();
    let mut notes = Vec::new();
    match approval::check(&r.entry, &r.dir) {
        Ok(approval::Drift::Unchanged { digest }) => {
            let present = store
                .and_then(|s| s.locate(&digest).ok().flatten())
                .is_some();
            if present {
                notes.push("layer in the store".to_string());
            } else {
                out.push(Check::new(
                    Status::Warn,
                    format!("{name}: layer {digest} is not in the store yet"),
                    Some("the next omac start imports it (or omac register --force)".into()),
                ));
            }
        }
        Ok(approval::Drift::Changed {
            registered,
            current,
            ..
        }) => out.push(Check::new(
            Status::Warn,
            format!("{name}: changed since registration (approved {registered}, now {current})"),
            Some(format!("review it, then omac register {name} --force")),
        )),
        Err(e) => out.push(fail(
            format!("{name}: {e}"),
            "check the skill directory".into(),
        )),
    }
    let kc = kc.get_or_insert_with(|| Keychain::open().ok()).as_ref();
    let mut missing = Vec::new();
    for s in sidecar.secrets.iter().filter(|s| s.is_required()) {
        let mut services = Vec::new();
        if r.scope == Scope::Workdir {
            services.push(secrets::Scope::workdir(&env.workdir).service(name));
        }
        services.push(secrets::Scope::Global.service(name));
        let in_kc = kc.is_some_and(|k| {
            services
                .iter()
                .any(|svc| matches!(k.get(svc, &s.name), Ok(Some(_))))
        });
        let in_env = std::env::var_os(secrets::env_var(&s.name)).is_some_and(|v| !v.is_empty())
            || (sidecar.env_passthrough.contains(&s.name)
                && std::env::var_os(&s.name).is_some_and(|v| !v.is_empty()));
        if !in_kc && !in_env {
            missing.push(s.name.clone());
        }
    }
    let stored = omac_skills::skill_config::merged_for(env, name).unwrap_or_default();
    for f in sidecar.config.iter().filter(|f| f.is_required()) {
        let r = omac_skills::fields::resolve(f, stored.get(&f.name).map(String::as_str), |n| {
            std::env::var(n).ok()
        });
        if !matches!(r, Ok(ref x) if x.value.is_some()) {
            missing.push(f.name.clone());
        }
    }
    if !missing.is_empty() {
        out.push(fail(
            format!("{name}: required value(s) missing: {}", missing.join(", ")),
            format!(
                "omac secrets set {name} NAME for secrets, omac register {name} --reprompt-fields for fields"
            ),
        ));
    } else {
        notes.push("secrets and fields present".into());
    }
    if out.iter().all(|c| c.status != Status::Fail) {
        out.insert(
            0,
            Check::new(
                Status::Ok,
                format!(
                    "{name} ({}, mount /{}/): {}",
                    r.scope.as_str(),
                    sidecar.mount_or(name),
                    notes.join(", ")
                ),
                None,
            ),
        );
    }
    out
}

/// Which harnesses are installed (advisory: `--inner` runs anything).
pub fn harnesses() -> Section {
    let path = std::env::var("PATH").unwrap_or_default();
    let checks = omac_bundle::harness::HARNESSES
        .iter()
        .map(|h| {
            let found = path
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| std::path::Path::new(d).join(h.binary))
                .find(|p| p.is_file());
            match found {
                Some(p) => Check::new(
                    Status::Ok,
                    format!("{}: {}", h.name, p.display()),
                    None,
                ),
                None => Check::new(
                    Status::Warn,
                    format!("{}: `{}` is not on PATH", h.name, h.binary),
                    Some(format!(
                        "install it to use `omac start {}`; `omac start --inner CMD` runs any program",
                        h.name
                    )),
                ),
            }
        })
        .collect();
    Section {
        title: "Harnesses",
        checks,
        config: false,
    }
}

/// Whether network prompts can show a dialog.
pub fn dialogs() -> Section {
    let env: HashMap<String, String> = std::env::vars().collect();
    let p = omac_egress::prompt::dialog::DialogPrompter::from_env(&env);
    let check = match p.availability() {
        Availability::Available => Check::new(
            Status::Ok,
            "network prompts: dialogs can be shown",
            None,
        ),
        Availability::Unavailable(why) => Check::new(
            Status::Warn,
            format!("network prompts: no dialog can be shown: {why}; undecided hosts follow network_prompt.on_unavailable (deny by default)"),
            Some("on a desktop install zenity (or kdialog); elsewhere list the hosts in the profile's allow_domain".into()),
        ),
    };
    Section {
        title: "Network prompts",
        checks: vec![check],
        config: false,
    }
}

const APPARMOR_PROFILE: &str = "write /etc/apparmor.d/omac containing \
`abi <abi/4.0>, include <tunables/global> profile omac /path/to/omac flags=(unconfined) { userns, }` \
(with the real path of the omac binary), then run `apparmor_parser -r /etc/apparmor.d/omac`";

/// The sandbox section: user namespaces, AppArmor, Landlock, seccomp, cgroup v2, and what a
/// bundle gets here.
pub fn sandbox(r: &HostReport) -> Section {
    let mut checks = Vec::new();
    let mut userns_ok = false;
    match &r.stage {
        Err(e) => checks.push(Check::new(
            Status::Fail,
            format!("user namespaces: the probe could not run: {e}"),
            Some("reinstall omac; the binary must be able to run itself".into()),
        )),
        Ok(p) => match (&p.userns, &p.namespaces, &p.mount, &p.loopback) {
            (Some(c), _, _, _) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: unavailable: {}", c.message),
                Some(c.fix.clone()),
            )),
            (None, Some(e), _, _) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: the mount, pid and network namespaces cannot be created: {e}"),
                Some("run omac outside restrictive containers, or raise the namespace limits".into()),
            )),
            (None, None, Some(e), _) | (None, None, None, Some(e)) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: created, but privileged setup inside fails: {e}"),
                Some(format!(
                    "this is what AppArmor's restriction does to unconfined programs: {APPARMOR_PROFILE}"
                )),
            )),
            (None, None, None, None) => {
                userns_ok = true;
                checks.push(Check::new(
                    Status::Ok,
                    "user namespaces: available (mount, pid, network, ipc and uts namespaces, mounts and loopback work inside)",
                    None,
                ));
            }
        },
    }
    match (r.apparmor_restrict, r.apparmor_label.as_deref()) {
        (Some(1), label) => {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let unconfined = label.is_none_or(|l| l == "unconfined");
            if unconfined && !root {
                checks.push(Check::new(
                    Status::Warn,
                    "AppArmor restricts unprivileged user namespaces and omac runs unconfined",
                    Some(APPARMOR_PROFILE.into()),
                ));
            } else {
                checks.push(Check::new(
                    Status::Ok,
                    format!(
                        "AppArmor restricts unprivileged user namespaces; omac runs as {}",
                        if root {
                            "root".to_string()
                        } else {
                            format!("profile {}", label.unwrap_or("?"))
                        }
                    ),
                    None,
                ));
            }
        }
        _ => checks.push(Check::new(
            Status::Ok,
            "AppArmor: no user-namespace restriction on this kernel",
            None,
        )),
    }
    let abi = r.landlock_abi;
    checks.push(match abi {
        0 => Check::new(
            Status::Fail,
            "Landlock: not available",
            Some("use Linux 5.19 or newer with `landlock` in the lsm= boot parameter".into()),
        ),
        1 => Check::new(
            Status::Fail,
            "Landlock: ABI 1 (every rename across directories would fail)",
            Some("use Linux 5.19 or newer".into()),
        ),
        2..=3 => Check::new(
            Status::Warn,
            format!("Landlock: ABI {abi} (filesystem only: no TCP port rules, no IPC scopes)"),
            Some("Linux 6.12 or newer gives TCP rules (ABI 4) and scopes (ABI 6)".into()),
        ),
        4..=5 => Check::new(
            Status::Warn,
            format!("Landlock: ABI {abi} (filesystem and TCP ports; no IPC scopes)"),
            Some("Linux 6.12 or newer scopes abstract sockets and signals (ABI 6)".into()),
        ),
        _ => Check::new(
            Status::Ok,
            format!("Landlock: ABI {abi} (filesystem, TCP ports, IPC scopes)"),
            None,
        ),
    });
    checks.push(if r.seccomp_available {
        let note = if r.seccomp_mode == 2 {
            " (omac itself already runs under a filter, as inside a container)"
        } else {
            ""
        };
        Check::new(
            Status::Ok,
            format!("seccomp: filters available{note}"),
            None,
        )
    } else {
        Check::new(
            Status::Fail,
            "seccomp: the kernel offers no seccomp filters",
            Some("use a kernel built with CONFIG_SECCOMP_FILTER".into()),
        )
    });
    if r.seccomp_available {
        use omac_seccomp::probe::{compat_entry, CompatEntry};
        match compat_entry() {
            CompatEntry::Unfiltered => checks.push(Check::new(
                Status::Warn,
                "seccomp: this kernel runs i386 (int 0x80) system calls but shows them to \
                 seccomp as x86_64 ones, so no filter can refuse them; namespaces, Landlock \
                 and the dropped capabilities still hold",
                Some(
                    "boot with ia32_emulation=0 (or a kernel without IA32 emulation) to close \
                     the 32-bit entry point"
                        .into(),
                ),
            )),
            CompatEntry::Labelled => checks.push(Check::new(
                Status::Ok,
                "seccomp: 32-bit (int 0x80) and x32 system calls are seen and kill the agent",
                None,
            )),
            CompatEntry::Absent => checks.push(Check::new(
                Status::Ok,
                "seccomp: no 32-bit entry point on this kernel (IA32 emulation off)",
                None,
            )),
            CompatEntry::NotApplicable => {}
        }
    }
    let mut limits = false;
    checks.push(match &r.cgroups {
        Ok((base, enabled)) => {
            let missing: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !enabled.iter().any(|e| e == c))
                .collect();
            if missing.is_empty() {
                limits = true;
                Check::new(
                    Status::Ok,
                    format!("cgroup v2: {} is delegated (memory, pids, cpu limits enforced)", base.display()),
                    None,
                )
            } else {
                let offered = omac_runtime::probe::cgroup_controllers(base);
                let absent: Vec<&str> = missing
                    .iter()
                    .copied()
                    .filter(|c| !offered.iter().any(|o| o == c))
                    .collect();
                let (why, fix) = if !absent.is_empty() {
                    (
                        format!(
                            "the cgroup v2 hierarchy offers only [{}] (a hybrid v1/v2 host keeps {} on cgroup v1)",
                            offered.join(" "),
                            absent.join(", ")
                        ),
                        "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1)",
                    )
                } else {
                    (
                        format!("{} are not enabled in {}/cgroup.subtree_control", missing.join(", "), base.display()),
                        "enable them there, or run omac in a systemd user session (it delegates them)",
                    )
                };
                Check::new(
                    Status::Warn,
                    format!("cgroup v2: {why}: memory, pids and cpu limits are not enforced"),
                    Some(fix.into()),
                )
            }
        }
        Err(c) => Check::new(
            Status::Warn,
            format!("cgroup v2: no delegated cgroup ({}): memory, pids and cpu limits are not enforced", c.message),
            Some(c.fix.clone()),
        ),
    });
    let full = userns_ok && abi >= 2 && r.seccomp_available;
    checks.push(if full {
        Check::new(
            Status::Ok,
            format!(
                "a bundle here runs fully confined: namespaces, Landlock ABI {abi}, seccomp; resource limits {}",
                if limits { "enforced" } else { "not enforced (warned at run time)" }
            ),
            None,
        )
    } else if abi >= 2 && r.seccomp_available {
        Check::new(
            Status::Fail,
            "bundles that require namespaces (every built-in profile does) are refused here; a profile \
             whose enforcement.require omits \"namespaces\" runs with Landlock and seccomp only",
            Some("fix the user-namespace problem above".into()),
        )
    } else {
        Check::new(
            Status::Fail,
            "no sandbox can run here: omac never runs an agent unsandboxed",
            Some("fix the problems above".into()),
        )
    });
    Section {
        title: "Sandbox",
        checks,
        config: false,
    }
}
