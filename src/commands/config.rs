//! `omac config show|get`: a skill's config fields as a run resolves them (stored value,
//! then `default`, then `$default_from_env`; workdir values over global ones) and its
//! secrets as fingerprints only (`sha256:` + 12 hex digits), as the Go omac prints them.

use omac_skills::fields;
use omac_skills::{skill_config, Env, Scope};
use serde::Serialize;

use crate::cli::ConfigCommand;
use crate::commands::skillctx::{registered, secret_scope};
use crate::exit::{Code, Failure};
use crate::secrets::{self, Keychain};

#[derive(Debug, Serialize)]
struct FieldView {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
    source: String,
    required: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
}

#[derive(Debug, Serialize)]
struct SecretView {
    name: String,
    fingerprint: String,
    required: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
}

#[derive(Debug, Serialize)]
struct SkillView {
    skill: String,
    mount: String,
    workdir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<String>,
    config: Vec<FieldView>,
    secrets: Vec<SecretView>,
}

/// `omac config ...`.
pub fn run(env: &Env, cmd: ConfigCommand) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Show { skill, json } => {
            let v = view(env, &skill, true)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_text(&v);
            }
            Ok(0)
        }
        ConfigCommand::Get { skill, field } => {
            let v = view(env, &skill, false)?;
            let Some(f) = v.config.iter().find(|f| f.name == field) else {
                return Err(Failure::new(
                    Code::Config,
                    format!("{skill:?} has no config field named {field:?} (see `omac config show {skill}`)"),
                )
                .into());
            };
            if f.source.starts_with("missing") {
                return Err(Failure::new(
                    Code::Secret,
                    format!(
                        "{skill}/{field} is not set\n  fix: `omac register {skill} --reprompt-fields`, or set \
                         OMAC_CONFIG_{field} and register again"
                    ),
                )
                .into());
            }
            println!("{}", f.value);
            Ok(0)
        }
    }
}

fn view(env: &Env, skill: &str, with_secrets: bool) -> anyhow::Result<SkillView> {
    let r = registered(env, skill)?;
    let Some(sc) = r.skill.meta.sidecar.clone() else {
        return Err(Failure::new(
            Code::Config,
            format!("skill {skill:?} has no sidecar block in omac.yaml"),
        )
        .into());
    };
    let stored = skill_config::merged_for(env, skill)?;
    let mut config = Vec::new();
    for spec in &sc.config {
        let lookup = |n: &str| std::env::var(n).ok();
        let (value, source) =
            match fields::resolve(spec, stored.get(&spec.name).map(String::as_str), lookup) {
                Ok(res) => {
                    let label = res.source.label(spec.is_required());
                    let value = res.value.unwrap_or_else(|| format!("<{label}>"));
                    (value, label)
                }
                Err(e) => (format!("<invalid: {e}>"), "invalid".to_string()),
            };
        config.push(FieldView {
            name: spec.name.clone(),
            kind: spec.field_type().as_str(),
            value,
            source,
            required: spec.is_required(),
            description: spec.description.clone(),
        });
    }
    let mut secrets_out = Vec::new();
    if with_secrets && !sc.secrets.is_empty() {
        let kc = Keychain::open()?;
        let own = secret_scope(env, r.scope).service(skill);
        let global = secrets::Scope::Global.service(skill);
        for spec in &sc.secrets {
            let mut v = kc.get(&own, &spec.name)?;
            if v.is_none() && r.scope == Scope::Workdir {
                v = kc.get(&global, &spec.name)?;
            }
            secrets_out.push(SecretView {
                name: spec.name.clone(),
                fingerprint: v
                    .map(|s| s.fingerprint())
                    .unwrap_or_else(|| "<missing>".into()),
                required: spec.is_required(),
                description: spec.description.clone(),
            });
        }
    }
    Ok(SkillView {
        skill: skill.to_string(),
        mount: sc.mount_or(skill).to_string(),
        workdir: env.workdir.display().to_string(),
        layer: r.entry.layer_digest.clone(),
        config,
        secrets: secrets_out,
    })
}

fn table(rows: Vec<Vec<String>>) {
    let n = rows.first().map(Vec::len).unwrap_or(0);
    let mut w = vec![0; n];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("  {}", line.join("  ").trim_end());
    }
}

fn print_text(v: &SkillView) {
    println!("skill:   {}", v.skill);
    println!("mount:   /{}/", v.mount);
    println!("workdir: {}", v.workdir);
    if let Some(l) = &v.layer {
        println!("layer:   {l}");
    }
    if v.config.is_empty() {
        println!("\nconfig: (none declared)");
    } else {
        println!("\nconfig:");
        let mut rows = vec![vec![
            "NAME".into(),
            "TYPE".into(),
            "REQ".into(),
            "SOURCE".into(),
            "VALUE".into(),
        ]];
        for f in &v.config {
            let mut value = f.value.clone();
            if value.chars().count() > 80 {
                value = value.chars().take(79).collect::<String>() + "…";
            }
            rows.push(vec![
                f.name.clone(),
                f.kind.into(),
                if f.required { "yes" } else { "no" }.into(),
                f.source.clone(),
                value,
            ]);
        }
        table(rows);
    }
    if v.secrets.is_empty() {
        println!("\nsecrets: (none declared)");
    } else {
        println!("\nsecrets:");
        let mut rows = vec![vec!["NAME".into(), "REQ".into(), "FINGERPRINT".into()]];
        for s in &v.secrets {
            rows.push(vec![
                s.name.clone(),
                if s.required { "yes" } else { "no" }.into(),
                s.fingerprint.clone(),
            ]);
        }
        table(rows);
    }
}
