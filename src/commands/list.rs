//! `omac list`: the registered skills of this workdir and the global ones (workdir wins on
//! a name), with their mount, secrets, whether the sidecar's program is there, and whether
//! the directory still matches the approved layer.

use std::path::Path;

use omac_skills::approval::{self, Drift};
use omac_skills::registry;
use omac_skills::{timefmt, Env};
use serde::Serialize;

use crate::cli::ListArgs;
use crate::commands::skillctx;

/// One row.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    scope: &'static str,
    harness: String,
    mount: Option<String>,
    secrets: usize,
    binary: String,
    layer: String,
    digest: Option<String>,
    registered_at: String,
    dir: String,
    stale: bool,
}

/// Interpreters whose first non-flag argument is the program (as the Go omac's `list`).
const INTERPRETERS: &[&str] = &[
    "python", "python3", "ruby", "node", "bun", "bash", "sh", "zsh", "env", "uv", "uvx",
];

fn artifact(command: &[String]) -> Option<&str> {
    let head = command.first()?;
    let base = Path::new(head).file_name()?.to_str()?;
    if INTERPRETERS.contains(&base) && command.len() > 1 {
        if let Some(a) = command[1..].iter().find(|a| !a.starts_with('-')) {
            return Some(a);
        }
    }
    Some(head)
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// `omac list`.
pub fn run(env: &Env, args: ListArgs) -> anyhow::Result<i32> {
    let merged = registry::merged(env, None)?;
    let store = skillctx::store(env)?;
    let mut rows = Vec::new();
    for r in &merged {
        let e = &r.entry;
        let loaded = omac_skills::load(&r.dir).ok();
        let sidecar = loaded.as_ref().and_then(|s| s.meta.sidecar.as_ref());
        let stale = sidecar.is_none();
        let binary = match sidecar.and_then(|s| artifact(&s.command)) {
            None => "no".to_string(),
            Some(a) if Path::new(a).is_absolute() && Path::new(a).exists() => "yes".into(),
            Some(a) if !Path::new(a).is_absolute() && r.dir.join(a).exists() => "yes".into(),
            Some(a) if !a.contains('/') && on_path(a) => "yes (on $PATH)".into(),
            Some(_) => "no".into(),
        };
        let layer = if stale {
            "stale".to_string()
        } else {
            match approval::check(e, &r.dir) {
                Ok(Drift::Unchanged { digest }) => match store.locate(&digest) {
                    Ok(Some(_)) => "ok".into(),
                    _ if e.layer_digest.is_none() => "ok (go registration)".into(),
                    _ => "not in store".into(),
                },
                Ok(Drift::Changed { .. }) => "changed".into(),
                Err(err) => format!("unreadable: {err}"),
            }
        };
        rows.push(Row {
            name: e.name.clone(),
            scope: r.scope.as_str(),
            harness: if e.harness.is_empty() {
                "any".into()
            } else {
                e.harness.clone()
            },
            mount: sidecar.map(|s| s.mount_or(&e.name).to_string()),
            secrets: e.declared_secret_names.len(),
            binary,
            layer,
            digest: e.layer_digest.clone(),
            registered_at: e.registered_at.clone(),
            dir: r.dir.display().to_string(),
            stale,
        });
    }
    let stale: Vec<&Row> = rows.iter().filter(|r| r.stale).collect();
    if args.json {
        let shown: Vec<&Row> = rows.iter().filter(|r| args.all || !r.stale).collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("(no skills registered in this workdir or globally)");
        return Ok(0);
    }
    let shown: Vec<&Row> = rows.iter().filter(|r| args.all || !r.stale).collect();
    let header = [
        "NAME",
        "SCOPE",
        "HARNESS",
        "MOUNT",
        "SECRETS",
        "BINARY",
        "LAYER",
        "REGISTERED",
    ];
    let cells: Vec<[String; 8]> = shown
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.scope.to_string(),
                r.harness.clone(),
                r.mount
                    .as_ref()
                    .map(|m| format!("/{m}/"))
                    .unwrap_or_else(|| "-".into()),
                r.secrets.to_string(),
                r.binary.clone(),
                r.layer.clone(),
                timefmt::short(&r.registered_at),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |vals: Vec<&str>| {
        vals.iter()
            .zip(widths.iter())
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for c in &cells {
        println!("{}", line(c.iter().map(String::as_str).collect()));
    }
    if shown.is_empty() {
        println!("(no live skills; only stale registrations remain, see below)");
    }
    if !stale.is_empty() {
        eprintln!(
            "\nomac list: {} stale registration(s) whose skill directory is gone or broken:",
            stale.len()
        );
        for s in &stale {
            let flag = if s.scope == "global" { " --global" } else { "" };
            eprintln!(
                "  {} ({}, was {}): remove with `omac deregister{flag} {}`",
                s.name, s.scope, s.dir, s.name
            );
        }
        eprintln!("  or `omac deregister --prune` to remove all of them");
    }
    let changed: Vec<&Row> = shown
        .iter()
        .copied()
        .filter(|r| r.layer == "changed")
        .collect();
    for c in changed {
        eprintln!(
            "omac list: {} changed since it was registered; review it, then `omac register {} --force`",
            c.name, c.name
        );
    }
    Ok(0)
}
