//! `omac secrets list|set|unset|import|backend`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use omac_skills::{Env, Scope};

use crate::cli::SecretsCommand;
use crate::commands::skillctx::{registered, secret_scope};
use crate::commands::values::{self, Outcome, SecretTarget};
use crate::exit::{Code, Failure};
use crate::secrets::{self, files, keychain, prompt, Keychain, Secret};

/// `omac secrets ...`.
pub fn run(env: &Env, cmd: SecretsCommand) -> anyhow::Result<i32> {
    match cmd {
        SecretsCommand::List { skill } => list(env, &skill),
        SecretsCommand::Set { skill, name, stdin } => set(env, &skill, &name, stdin),
        SecretsCommand::Unset { skill, name } => unset(env, &skill, &name),
        SecretsCommand::Import { skill, from } => import(env, &skill, &from),
        SecretsCommand::Backend => backend(),
    }
}

fn notice_if_volatile(kc: &Keychain) {
    if kc.is_volatile() {
        eprintln!("omac: notice: {}", keychain::volatile_notice());
    }
}

fn list(env: &Env, skill: &str) -> anyhow::Result<i32> {
    let r = registered(env, skill)?;
    let specs = r
        .skill
        .meta
        .sidecar
        .as_ref()
        .map(|s| s.secrets.clone())
        .unwrap_or_default();
    if specs.is_empty() {
        println!("(no secrets declared)");
        return Ok(0);
    }
    let kc = Keychain::open()?;
    let workdir = (r.scope == Scope::Workdir).then_some(env.workdir.as_path());
    let passthrough = r
        .skill
        .meta
        .sidecar
        .as_ref()
        .map(|s| s.env_passthrough.clone())
        .unwrap_or_default();
    println!(
        "{:<28} {:<8} {:<24} DESCRIPTION",
        "NAME", "REQUIRED", "A RUN USES"
    );
    for s in &specs {
        let status = match secrets::resolve_for_run(&kc, workdir, skill, s, &passthrough, false) {
            Ok(Some((_, src))) => match src {
                secrets::Source::KeychainWorkdir => "keychain".to_string(),
                secrets::Source::KeychainGlobal if workdir.is_some() => {
                    "keychain (global item)".into()
                }
                secrets::Source::KeychainGlobal => "keychain".into(),
                secrets::Source::SecretVar(v) | secrets::Source::Passthrough(v) => format!("${v}"),
            },
            Ok(None) => "absent".into(),
            Err(e) => format!("invalid: {e}"),
        };
        let req = if s.is_required() {
            "required"
        } else {
            "optional"
        };
        println!("{:<28} {:<8} {:<24} {}", s.name, req, status, s.description);
    }
    eprintln!("(keychain: {}, {})", kc.backend().name(), kc.why());
    Ok(0)
}

fn set(env: &Env, skill: &str, name: &str, from_stdin: bool) -> anyhow::Result<i32> {
    let r = registered(env, skill)?;
    let Some(spec) = r
        .skill
        .meta
        .sidecar
        .as_ref()
        .and_then(|s| s.secret(name))
        .cloned()
    else {
        return Err(Failure::new(
            Code::Config,
            format!("skill {skill:?} declares no secret named {name:?} (see `omac secrets list {skill}`)"),
        )
        .into());
    };
    let kc = Keychain::open()?;
    let service = secret_scope(env, r.scope).service(skill);
    let mut from_file: BTreeMap<String, Secret> = BTreeMap::new();
    if from_stdin && !prompt::interactive() {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        let mut v = Secret::new(buf);
        let bytes = v.expose();
        let trimmed = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .map(<[u8]>::to_vec);
        if let Some(t) = trimmed {
            v = Secret::new(t);
        }
        if v.is_empty() {
            return Err(Failure::new(
                Code::Secret,
                format!("no value for {name} on standard input"),
            )
            .into());
        }
        from_file.insert(name.to_string(), v);
    }
    let declined = BTreeSet::new();
    let target = SecretTarget {
        kc: &kc,
        skill,
        service,
        reprompt: true,
        declined: &declined,
        from_file: &from_file,
        interactive: prompt::interactive(),
    };
    match target.acquire(&spec)? {
        Outcome::Stored(_) => {
            println!(
                "[ok] stored {skill}/{name} in the keychain ({})",
                kc.backend().name()
            );
            notice_if_volatile(&kc);
            Ok(0)
        }
        Outcome::Declined => {
            println!("[noop] {skill}/{name} left as it was");
            Ok(0)
        }
        _ => Err(Failure::new(
            Code::Secret,
            format!(
                "no value for {name}, and stdin is not a terminal, so omac cannot ask:\n  {}\n  \
                 or pipe it: `... | omac secrets set {skill} {name} --stdin`",
                values::how_to_provide_secret(skill, name)
            ),
        )
        .into()),
    }
}

fn unset(env: &Env, skill: &str, name: &str) -> anyhow::Result<i32> {
    let kc = Keychain::open()?;
    let mut n = 0;
    for scope in [
        secrets::Scope::workdir(&env.workdir),
        secrets::Scope::Global,
    ] {
        if kc.delete(&scope.service(skill), name)? {
            n += 1;
        }
    }
    if n == 0 {
        println!("[noop] {skill}/{name} was not in the keychain");
    } else {
        println!("[ok] removed {skill}/{name} from the keychain");
    }
    Ok(0)
}

fn import(env: &Env, skill: &str, from: &std::path::Path) -> anyhow::Result<i32> {
    let r = registered(env, skill)?;
    let sidecar = r.skill.meta.sidecar.clone().unwrap_or_default();
    let values = files::read_secrets(from)?;
    for (k, v) in &values {
        let Some(spec) = sidecar.secret(k) else {
            return Err(Failure::new(
                Code::Config,
                format!(
                    "{k} in {} is not declared in {skill}'s sidecar.secrets",
                    from.display()
                ),
            )
            .into());
        };
        spec.check(v.expose_str().unwrap_or_default())
            .map_err(|e| Failure::new(Code::Secret, format!("{}: {e}", from.display())))?;
    }
    let kc = Keychain::open()?;
    let service = secret_scope(env, r.scope).service(skill);
    for (k, v) in &values {
        kc.set(&service, k, v)?;
        println!("  stored {k}");
    }
    notice_if_volatile(&kc);
    Ok(0)
}

fn backend() -> anyhow::Result<i32> {
    let kc = Keychain::open()?;
    kc.ping()?;
    println!("{}", kc.backend().name());
    eprintln!("omac: {} ({})", kc.backend().name(), kc.why());
    notice_if_volatile(&kc);
    Ok(0)
}
