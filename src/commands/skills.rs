//! `omac skills gc|digest|import`.

use omac_skills::{gc, layer, Env};

use crate::cli::SkillsCommand;
use crate::commands::skillctx;

/// `omac skills ...`.
pub fn run(env: &Env, cmd: SkillsCommand) -> anyhow::Result<i32> {
    match cmd {
        SkillsCommand::Digest { dir } => {
            println!("{}", layer::digest(&dir)?);
            Ok(0)
        }
        SkillsCommand::Import { dir, digest } => {
            // Validated first: an import approves the content for `omac run`.
            let skill = omac_skills::load(&dir)?;
            skillctx::print_warnings(&skill.warnings);
            let store = skillctx::store(env)?;
            let imported = store.import_dir(&dir, digest.as_deref())?;
            println!(
                "{} {} ({}) at {}",
                if imported.created {
                    "imported"
                } else {
                    "already present:"
                },
                imported.digest,
                skill.name,
                imported.path.display()
            );
            if let Some(cmd) = skill.meta.sidecar.as_ref().map(|s| s.command.join(" ")) {
                println!(
                    "omac run will start its sidecar `{cmd}` on this machine for bundles naming this digest"
                );
            }
            Ok(0)
        }
        SkillsCommand::Gc { dry_run } => {
            let store = skillctx::store(env)?;
            let out = gc::gc(env, &store, dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            let mut bytes = 0;
            for (d, size) in &out.report.removed {
                println!("{verb} {d} ({size} bytes)");
                bytes += size;
            }
            for d in &out.report.in_use {
                println!("kept {d} (in use by a running session or registration)");
            }
            for p in &out.forgotten {
                println!("forgot {} (no longer exists)", p.display());
            }
            println!(
                "{verb} {} layer(s), {bytes} bytes; kept {} referenced by {} registr{}",
                out.report.removed.len(),
                out.report.kept,
                out.registries.len(),
                if out.registries.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
            Ok(0)
        }
    }
}
