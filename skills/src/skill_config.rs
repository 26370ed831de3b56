//! `skill-config.yaml` (reference §5.2): the non-secret config field values per skill, in
//! the workdir layer (`<workdir>/.opencode/`) and the global one (`~/.config/omac/`).
//!
//! Read with serde_norway; written by a small emitter that produces what gopkg.in/yaml.v3
//! (2-space indent, sorted keys) writes for this shape, so a file moves between the Go omac
//! and this one without spurious diffs. Written atomically (0600) under the registry lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::discover::Scope;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::{fsutil, registry, yaml};

/// Field values per skill: skill → field → canonical value.
pub type Values = BTreeMap<String, BTreeMap<String, String>>;

/// `skill-config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SkillConfig {
    /// Format version (1).
    #[serde(default)]
    pub version: u32,
    /// The values a run uses.
    #[serde(default, deserialize_with = "values")]
    pub skills: Values,
    /// Remembered values (global file only) that the Go omac's `register --defaults` offers;
    /// never read at run time.
    #[serde(default, deserialize_with = "values")]
    pub defaults: Values,
}

fn values<'de, D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Values;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of skill names to maps of field values")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
            let mut out = Values::new();
            while let Some(k) = map.next_key::<String>()? {
                let inner: Inner = map.next_value()?;
                out.insert(k, inner.0);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Values, E> {
            Ok(Values::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Values, E> {
            Ok(Values::new())
        }
    }
    struct Inner(BTreeMap<String, String>);
    impl<'de> Deserialize<'de> for Inner {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Inner, D::Error> {
            yaml::string_map(d).map(Inner)
        }
    }
    d.deserialize_any(V)
}

impl SkillConfig {
    /// Reads a file; a missing file is empty.
    pub fn load(path: &Path) -> Result<SkillConfig> {
        let Some(bytes) = fsutil::read_if_exists(path)? else {
            return Ok(SkillConfig {
                version: 1,
                ..Default::default()
            });
        };
        let text = String::from_utf8_lossy(&bytes);
        let (mut c, _unknown): (SkillConfig, _) = yaml::parse(&text).map_err(|e| {
            Error::invalid(
                path,
                e.path,
                e.message,
                "fix the YAML by hand (version, skills: {skill: {FIELD: value}}), or run \
                 `omac register <skill> --reprompt-fields`",
            )
        })?;
        if c.version == 0 {
            c.version = 1;
        }
        Ok(c)
    }

    /// The stored value of `skill`'s `field`.
    pub fn get(&self, skill: &str, field: &str) -> Option<&str> {
        self.skills.get(skill)?.get(field).map(String::as_str)
    }

    /// Stores `skill`'s `field`.
    pub fn set(&mut self, skill: &str, field: &str, value: &str) {
        self.skills
            .entry(skill.to_string())
            .or_default()
            .insert(field.to_string(), value.to_string());
    }

    /// Removes every value of `skill`; returns how many there were.
    pub fn remove_skill(&mut self, skill: &str) -> usize {
        self.skills.remove(skill).map(|m| m.len()).unwrap_or(0)
    }

    /// The file as yaml.v3 writes it.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "version: {}",
            if self.version == 0 { 1 } else { self.version }
        );
        emit_values(&mut out, "skills", &self.skills, true);
        emit_values(&mut out, "defaults", &self.defaults, false);
        out
    }
}

fn emit_values(out: &mut String, key: &str, values: &Values, always: bool) {
    if values.is_empty() {
        if always {
            let _ = writeln!(out, "{key}: {{}}");
        }
        return;
    }
    let _ = writeln!(out, "{key}:");
    for (skill, fields) in values {
        if fields.is_empty() {
            let _ = writeln!(out, "  {}: {{}}", scalar(skill));
            continue;
        }
        let _ = writeln!(out, "  {}:", scalar(skill));
        for (k, v) in fields {
            let _ = writeln!(out, "    {}: {}", scalar(k), scalar(v));
        }
    }
}

/// A string as a YAML scalar the way yaml.v3 chooses its style: plain when that reads back
/// as the same string, double-quoted when plain text would read as another type (`100`,
/// `false`, `yes`, `~`, ``), single-quoted when plain is not allowed (`a: b`, ` x`), and
/// double-quoted with escapes for control characters, line and paragraph separators and the
/// byte order mark (outside double quotes YAML reads the separators as line breaks, which
/// quoting folds away).
pub fn scalar(s: &str) -> String {
    if s.chars().any(escaped) {
        return double_quoted(s);
    }
    if resolves_to_non_string(s) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // yaml.v3's escapes for the line and paragraph separators.
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if escaped(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters a scalar carries only as a double-quoted escape.
fn escaped(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// Whether a plain scalar `s` would be read as null, a bool (YAML 1.1 spellings included,
/// as yaml.v3 quotes them), a number or a sexagesimal number.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    let body = plain.trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .iter()
        .find_map(|(p, r)| lower.strip_prefix(p).map(|rest| (rest.to_string(), *r)));
    if let Some((digits, r)) = radix {
        return !digits.is_empty() && u128::from_str_radix(&digits, r).is_ok();
    }
    if plain.parse::<f64>().is_ok() || plain.parse::<i128>().is_ok() {
        return true;
    }
    // Sexagesimal (YAML 1.1 base 60), which yaml.v3 also quotes: 1:20, 190:20:30.5
    let mut parts = body.split(':');
    let head_ok = parts
        .next()
        .map(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or(false);
    let rest: Vec<&str> = parts.collect();
    head_ok
        && !rest.is_empty()
        && rest.iter().enumerate().all(|(i, p)| {
            let p = if i + 1 == rest.len() {
                p.split('.').next().unwrap_or("")
            } else {
                p
            };
            !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit())
        })
}

/// libyaml's rule for plain scalars in block context.
fn plain_allowed(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let Some(&first) = chars.first() else {
        return false;
    };
    if first.is_whitespace() || chars.last().is_some_and(|c| c.is_whitespace()) {
        return false;
    }
    let ws_after = |i: usize| chars.get(i + 1).is_none_or(|c| c.is_whitespace());
    match first {
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => return false,
        '-' | '?' | ':' if ws_after(0) => return false,
        _ => {}
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    for (i, &c) in chars.iter().enumerate() {
        if c == ':' && ws_after(i) {
            return false;
        }
        if c == '#' && i > 0 && chars[i - 1].is_whitespace() {
            return false;
        }
        if c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' {
            return false;
        }
    }
    true
}

/// Reads the layer's `skill-config.yaml` (empty when it or the layer does not exist).
pub fn load(env: &Env, scope: Scope) -> Result<SkillConfig> {
    match registry::files(env, scope) {
        Some(f) => SkillConfig::load(&f.config),
        None => Ok(SkillConfig::default()),
    }
}

/// Under the registry lock of the layer: reads the file, lets `f` change it, writes it back
/// atomically (0600) if `f` succeeded and changed it.
pub fn update<T>(
    env: &Env,
    scope: Scope,
    f: impl FnOnce(&mut SkillConfig) -> Result<T>,
) -> Result<T> {
    let files = registry::files_or_err(env, scope)?;
    let _lock = registry::lock(&files)?;
    let mut c = SkillConfig::load(&files.config)?;
    let before = c.clone();
    let out = f(&mut c)?;
    if c != before {
        fsutil::atomic_write(&files.config, c.to_yaml().as_bytes(), 0o600)?;
    }
    Ok(out)
}

/// The merged values a run uses for `skill`: workdir values override global ones per field.
pub fn merged_for(env: &Env, skill: &str) -> Result<BTreeMap<String, String>> {
    let mut out = load(env, Scope::Global)?
        .skills
        .remove(skill)
        .unwrap_or_default();
    if let Some(w) = load(env, Scope::Workdir)?.skills.remove(skill) {
        out.extend(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn styles_match_yaml_v3() {
        assert_eq!(scalar("hello"), "hello");
        assert_eq!(scalar("100"), "\"100\"");
        assert_eq!(scalar("false"), "\"false\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("~"), "\"~\"");
        assert_eq!(scalar("1e3"), "\"1e3\"");
        assert_eq!(scalar("0x10"), "\"0x10\"");
        assert_eq!(scalar("1:20"), "\"1:20\"");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar(" lead"), "' lead'");
        assert_eq!(scalar("#x"), "'#x'");
        assert_eq!(scalar("it's"), "it's");
        assert_eq!(scalar("http://host:8080/x?a=b"), "http://host:8080/x?a=b");
        assert_eq!(scalar("hello world"), "hello world");
        assert_eq!(scalar("two\nlines"), "\"two\\nlines\"");
        assert_eq!(scalar(" \u{2028}"), "\" \\L\"");
        assert_eq!(scalar("a\u{2029}b\u{feff}"), "\"a\\Pb\\uFEFF\"");
    }

    /// Found by the property below: a separator after a space came back without the space
    /// when single-quoted.
    #[test]
    fn separators_read_back_unchanged() {
        for v in [" \u{2028}", "\u{2029}x", "x \u{2028} y", "\u{feff}bom"] {
            let mut c = SkillConfig {
                version: 1,
                ..Default::default()
            };
            c.set("s", "F", v);
            let back: SkillConfig = serde_norway::from_str(&c.to_yaml()).unwrap();
            assert_eq!(back.get("s", "F"), Some(v), "{}", c.to_yaml());
        }
    }

    #[test]
    fn the_go_shape() {
        let mut c = SkillConfig {
            version: 1,
            ..Default::default()
        };
        assert_eq!(c.to_yaml(), "version: 1\nskills: {}\n");
        c.set("echo-rest", "ECHO_MAX_TICK", "100");
        c.set("echo-rest", "ECHO_GREETING", "hello");
        assert_eq!(
            c.to_yaml(),
            "version: 1\nskills:\n  echo-rest:\n    ECHO_GREETING: hello\n    ECHO_MAX_TICK: \"100\"\n"
        );
    }

    proptest! {
        #[test]
        fn every_value_reads_back_unchanged(key in "[A-Za-z0-9_. -]{1,12}", v in any::<String>()) {
            let mut c = SkillConfig { version: 1, ..Default::default() };
            c.set(&key, "F", &v);
            let text = c.to_yaml();
            let back: SkillConfig = serde_norway::from_str(&text).unwrap();
            prop_assert_eq!(back.get(&key, "F"), Some(v.as_str()), "{}", text);
        }
    }
}
