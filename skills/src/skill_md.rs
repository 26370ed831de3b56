//! `SKILL.md`: the agentskills.io frontmatter the agent reads (reference §2.3).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result, Warning};
use crate::yaml;

/// The file name of a skill's agent-facing document.
pub const SKILL_MD: &str = "SKILL.md";

/// The frontmatter of `SKILL.md`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SkillDoc {
    /// 1–64 chars of `[a-z0-9-]`, no leading, trailing or doubled hyphen, equal to the
    /// directory name.
    #[serde(default, deserialize_with = "yaml::string")]
    pub name: String,
    /// What the skill does and when to use it (at most 1024 chars).
    #[serde(default, deserialize_with = "yaml::string")]
    pub description: String,
    /// Optional.
    #[serde(default, deserialize_with = "yaml::string")]
    pub license: String,
    /// Optional, at most 500 chars.
    #[serde(default, deserialize_with = "yaml::string")]
    pub compatibility: String,
    /// Optional string map; omac's convention is `omac-mount` and `omac-sidecar`.
    #[serde(default, deserialize_with = "yaml::string_map")]
    pub metadata: BTreeMap<String, String>,
    /// Optional, experimental; kept as written.
    #[serde(default, rename = "allowed-tools")]
    pub allowed_tools: Option<serde_norway::Value>,
}

/// Splits `---\n<yaml>\n---` off the top of a markdown text: (frontmatter, body).
pub fn split_frontmatter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']) == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// Reads and checks `SKILL.md` text against the agentskills.io rules.
pub fn parse(text: &str, file: &Path, dir_name: Option<&str>) -> Result<(SkillDoc, Vec<Warning>)> {
    let bad = |field: &str, rule: String, fix: &str| Error::invalid(file, field, rule, fix);
    let Some((front, body)) = split_frontmatter(text) else {
        return Err(bad(
            "-",
            "has no frontmatter (a `---` line, YAML, and a closing `---` at the top)".into(),
            "start SKILL.md with `---`, `name: <skill>`, `description: <what and when>`, `---`",
        ));
    };
    let (doc, unknown): (SkillDoc, _) = yaml::parse(front).map_err(|e| {
        bad(
            &e.path,
            e.message,
            "correct the frontmatter YAML (name, description, license, compatibility, metadata)",
        )
    })?;
    let mut warnings: Vec<Warning> = unknown
        .into_iter()
        .map(|field| Warning {
            file: file.to_path_buf(),
            field,
            message: "unknown frontmatter field (agentskills.io defines name, description, \
                      license, compatibility, metadata, allowed-tools)"
                .into(),
        })
        .collect();

    let name = &doc.name;
    if name.is_empty() {
        return Err(bad(
            "name",
            "is required".into(),
            "add `name: <the skill's directory name>`",
        ));
    }
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.chars().count() > 64
        || !chars_ok
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Err(bad(
            "name",
            format!(
                "{name:?} must be 1-64 characters of a-z, 0-9 and '-', without a leading, \
                 trailing or doubled '-'"
            ),
            "rename the skill (and its directory), e.g. `name: echo-rest`",
        ));
    }
    if let Some(dir) = dir_name {
        if dir != name {
            return Err(bad(
                "name",
                format!("{name:?} must equal the skill's directory name {dir:?}"),
                "rename the directory or the `name` so they agree",
            ));
        }
    }
    if doc.description.trim().is_empty() {
        return Err(bad(
            "description",
            "is required".into(),
            "say what the skill does and when to use it, in at most 1024 characters",
        ));
    }
    if doc.description.chars().count() > 1024 {
        return Err(bad(
            "description",
            format!(
                "is {} characters; at most 1024 are allowed",
                doc.description.chars().count()
            ),
            "shorten it and move the detail into the body or references/",
        ));
    }
    if doc.compatibility.chars().count() > 500 {
        return Err(bad(
            "compatibility",
            format!(
                "is {} characters; at most 500 are allowed",
                doc.compatibility.chars().count()
            ),
            "shorten it",
        ));
    }
    let lines = body.lines().count();
    if lines > 500 {
        warnings.push(Warning {
            file: file.to_path_buf(),
            field: "-".into(),
            message: format!(
                "the body has {lines} lines; keep it under 500 and move detail into references/"
            ),
        });
    }
    Ok((doc, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(SkillDoc, Vec<Warning>)> {
        parse(text, Path::new("SKILL.md"), Some("echo-rest"))
    }

    #[test]
    fn a_good_frontmatter() {
        let (d, w) = check(
            "---\nname: echo-rest\ndescription: Echo things. Use when testing.\nlicense: MIT\n\
             metadata:\n  omac-mount: echo\n  omac-sidecar: \"true\"\n---\n# Echo\n",
        )
        .unwrap();
        assert_eq!(d.metadata["omac-mount"], "echo");
        assert!(w.is_empty());
    }

    #[test]
    fn rule_breakers_are_refused_with_the_field() {
        let field = |t: &str| match check(t) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field("# no frontmatter\n"), "-");
        assert_eq!(field("---\ndescription: d\n---\n"), "name");
        assert_eq!(field("---\nname: Echo-Rest\ndescription: d\n---\n"), "name");
        assert_eq!(
            field("---\nname: echo--rest\ndescription: d\n---\n"),
            "name"
        );
        assert_eq!(field("---\nname: other\ndescription: d\n---\n"), "name");
        assert_eq!(field("---\nname: echo-rest\n---\n"), "description");
        let long = format!(
            "---\nname: echo-rest\ndescription: {}\n---\n",
            "x".repeat(1025)
        );
        assert_eq!(field(&long), "description");
        let compat = format!(
            "---\nname: echo-rest\ndescription: d\ncompatibility: {}\n---\n",
            "x".repeat(501)
        );
        assert_eq!(field(&compat), "compatibility");
    }

    #[test]
    fn unknown_fields_warn() {
        let (_, w) = check("---\nname: echo-rest\ndescription: d\ncolour: red\n---\n").unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].field, "colour");
    }
}
