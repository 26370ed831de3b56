//! YAML reading as the Go omac reads it (gopkg.in/yaml.v3): lenient scalars, unknown keys
//! collected instead of refused, and errors that carry the dotted path of the bad field.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Why a YAML document could not be read into the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Dotted path of the field (`sidecar.health.timeout_ms`), or `-` for the document.
    pub path: String,
    /// What serde_norway said (with line and column when it knows them).
    pub message: String,
}

/// Parses `text` into `T`, returning the paths of the keys the model does not know.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), ParseError> {
    let mut unknown = Vec::new();
    let de = serde_norway::Deserializer::from_str(text);
    let result: Result<T, _> = {
        // `?` marks an Option in serde_ignored's paths; users write no such key.
        let mut note = |p: serde_ignored::Path<'_>| {
            let path = p.to_string();
            let clean: Vec<&str> = path.split('.').filter(|s| *s != "?").collect();
            unknown.push(clean.join("."))
        };
        let ignoring = serde_ignored::Deserializer::new(de, &mut note);
        serde_path_to_error::deserialize(ignoring)
    };
    match result {
        Ok(v) => Ok((v, unknown)),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path.is_empty() || path == "." {
                "-".to_string()
            } else {
                path
            };
            let message = e.into_inner().to_string();
            // serde_norway may prefix its own rendering of the path: keep one.
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(message);
            Err(ParseError { path, message })
        }
    }
}

/// Any scalar as text, as yaml.v3 decodes a scalar into a Go `string`: `100` is `"100"`,
/// `false` is `"false"`, `~` is `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(ScalarText)
}

/// A list of scalars as text (`[python3, 8080]` is `["python3", "8080"]`); `~` is empty.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList)
}

/// A map of scalars as text; `~` is empty.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_any(StringMap)
}

/// A boolean, also spelled as yaml.v3 accepts for typed bools (`yes`, `no`, `on`, `off`,
/// `y`, `n`); `~` is unset.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(LenientBool)
}

struct ScalarText;

impl<'de> Visitor<'de> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (or a number or boolean, read as text)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // `1.0` stays `1.0`; the exact source spelling (`1.10`) is not kept: quote it.
        Ok(format!("{v:?}"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

struct StringList;

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list such as [a, b]")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(Text(s)) = seq.next_element::<Text>()? {
            out.push(s);
        }
        Ok(out)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }
}

struct StringMap;

impl<'de> Visitor<'de> for StringMap {
    type Value = BTreeMap<String, String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of names to text")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((Text(k), Text(v))) = map.next_entry::<Text, Text>()? {
            out.insert(k, v);
        }
        Ok(out)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
}

/// A scalar read as text (helper for lists and maps).
struct Text(String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        d.deserialize_any(ScalarText).map(Text)
    }
}

struct LenientBool;

impl<'de> Visitor<'de> for LenientBool {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
        Ok(Some(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<bool>, E> {
        match v {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                Ok(Some(true))
            }
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
            | "FALSE" => Ok(Some(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default, deserialize_with = "string")]
        s: String,
        #[serde(default, deserialize_with = "strings")]
        l: Vec<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
        #[serde(default)]
        n: Option<u64>,
    }

    #[test]
    fn scalars_read_as_text_like_yaml_v3() {
        let (d, unknown): (Doc, _) =
            parse("s: 100\nl: [python3, 8080, true, 1.0]\nb: yes\nextra: 1\n").unwrap();
        assert_eq!(d.s, "100");
        assert_eq!(d.l, vec!["python3", "8080", "true", "1.0"]);
        assert_eq!(d.b, Some(true));
        assert_eq!(unknown, vec!["extra"]);
        let (d, _): (Doc, _) = parse("s: ~\nl: ~\nb: ~\nn: 3\n").unwrap();
        assert_eq!((d.s.as_str(), d.l.len(), d.b, d.n), ("", 0, None, Some(3)));
    }

    #[test]
    fn errors_carry_the_field_path() {
        let e = parse::<Doc>("n: -5\n").unwrap_err();
        assert_eq!(e.path, "n");
        assert!(e.message.contains("-5"), "{}", e.message);
        let e = parse::<Doc>("l: python3 x.py\n").unwrap_err();
        assert_eq!(e.path, "l");
        let e = parse::<Doc>("b: maybe\n").unwrap_err();
        assert_eq!(e.path, "b");
        let e = parse::<Doc>("s: [unclosed\n").unwrap_err();
        assert!(e.message.contains("line"), "{}", e.message);
    }
}
