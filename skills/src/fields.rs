//! Config field values: type checking, the canonical stored form, and resolution
//! (stored value, then `default`, then `$default_from_env`), as the Go omac does them.

use crate::meta::{check_pattern, ConfigSpec, FieldType};

/// The canonical stored form of `raw` for `spec`: bools become `true`/`false`, ints their
/// base-10 rendering, strings (pattern-checked) and enums (one of `choices`) stay verbatim.
pub fn canonicalise(spec: &ConfigSpec, raw: &str) -> Result<String, String> {
    match spec.field_type() {
        FieldType::String => {
            check_pattern(&spec.name, &spec.pattern, raw)?;
            Ok(raw.to_string())
        }
        FieldType::Bool => parse_bool(raw)
            .map(str::to_string)
            .map_err(|e| format!("value for {}: {e}", spec.name)),
        FieldType::Int => raw
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("value for {}: not a valid integer: {raw:?}", spec.name)),
        FieldType::Enum => {
            if spec.choices.iter().any(|c| c == raw) {
                Ok(raw.to_string())
            } else {
                Err(format!(
                    "value for {} must be one of: {}",
                    spec.name,
                    spec.choices.join(", ")
                ))
            }
        }
    }
}

/// The bool spellings the Go omac accepts (case-insensitive, trimmed).
pub fn parse_bool(s: &str) -> Result<&'static str, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "on" => Ok("true"),
        "false" | "f" | "no" | "n" | "0" | "off" => Ok("false"),
        _ => Err(format!("not a bool: {s:?} (try true/false, yes/no, 1/0)")),
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `skill-config.yaml`.
    Stored,
    /// The field's `default`.
    Default,
    /// The host variable named by `default_from_env`.
    Env(String),
    /// Nowhere: the field has no value.
    Missing,
}

impl Source {
    /// The label `omac config show` prints (`stored`, `default`, `default_from_env:VAR`,
    /// `missing-required`, `missing-optional`), as the Go omac prints it.
    pub fn label(&self, required: bool) -> String {
        match self {
            Source::Stored => "stored".into(),
            Source::Default => "default".into(),
            Source::Env(v) => format!("default_from_env:{v}"),
            Source::Missing if required => "missing-required".into(),
            Source::Missing => "missing-optional".into(),
        }
    }
}

/// A config field's value for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical value, if any.
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// Resolves a field: `stored`, then `default`, then the non-empty host variable named by
/// `default_from_env` (looked up with `env`), canonicalised. An invalid value is an error
/// naming the field and where the value came from.
pub fn resolve(
    spec: &ConfigSpec,
    stored: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, String> {
    let (raw, source) = if let Some(v) = stored {
        (v.to_string(), Source::Stored)
    } else if !spec.default.is_empty() {
        (spec.default.clone(), Source::Default)
    } else if let Some(v) = Some(&spec.default_from_env)
        .filter(|n| !n.is_empty())
        .and_then(|n| env(n))
        .filter(|v| !v.is_empty())
    {
        (v, Source::Env(spec.default_from_env.clone()))
    } else {
        return Ok(Resolved {
            value: None,
            source: Source::Missing,
        });
    };
    let value = canonicalise(spec, &raw).map_err(|e| {
        let from = match &source {
            Source::Stored => "skill-config.yaml".to_string(),
            Source::Default => "its default".to_string(),
            Source::Env(v) => format!("${v}"),
            Source::Missing => String::new(),
        };
        format!("{e} (from {from})")
    })?;
    Ok(Resolved {
        value: Some(value),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ty: &str) -> ConfigSpec {
        ConfigSpec {
            name: "F".into(),
            type_name: ty.into(),
            ..Default::default()
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonicalise(&spec("bool"), " YES ").unwrap(), "true");
        assert_eq!(canonicalise(&spec("bool"), "off").unwrap(), "false");
        assert!(canonicalise(&spec("bool"), "maybe").is_err());
        assert_eq!(canonicalise(&spec("int"), " 0042 ").unwrap(), "42");
        assert_eq!(canonicalise(&spec("int"), "-7").unwrap(), "-7");
        assert!(canonicalise(&spec("int"), "1.5").is_err());
        let mut e = spec("enum");
        e.choices = vec!["demo".into(), "strict".into()];
        assert_eq!(canonicalise(&e, "demo").unwrap(), "demo");
        assert!(canonicalise(&e, "Demo").is_err());
        let mut s = spec("string");
        s.pattern = "^[a-z]+$".into();
        assert!(canonicalise(&s, "abc").is_ok());
        assert!(canonicalise(&s, "ab1").is_err());
    }

    #[test]
    fn resolution_order_is_stored_default_env() {
        let mut s = spec("int");
        s.default_from_env = "HOSTVAR".into();
        let env = |n: &str| (n == "HOSTVAR").then(|| "7".to_string());
        let r = resolve(&s, None, env).unwrap();
        assert_eq!(
            (r.value.as_deref(), r.source.clone()),
            (Some("7"), Source::Env("HOSTVAR".into()))
        );
        s.default = "5".into();
        assert_eq!(resolve(&s, None, env).unwrap().value.as_deref(), Some("5"));
        let r = resolve(&s, Some("9"), env).unwrap();
        assert_eq!((r.value.as_deref(), r.source), (Some("9"), Source::Stored));
        let none = resolve(&spec("string"), None, |_| None).unwrap();
        assert_eq!(none.source, Source::Missing);
        assert_eq!(none.source.label(true), "missing-required");
        assert!(resolve(&s, Some("x"), env)
            .unwrap_err()
            .contains("skill-config.yaml"));
    }
}
