//! The registry, `sidecar.json` (reference §5.1): which skills are registered, where, with
//! which digest. Two layers: the workdir's `<workdir>/.opencode/sidecar.json` and the
//! global `~/.config/omac/sidecar.json`.
//!
//! The file keeps the Go omac's shape byte for byte (2-space JSON, entries sorted by name,
//! no trailing newline, Go's HTML escaping), so both programs read and write the same file.
//! omac adds `layer_digest` (the OCI digest of the approved skill layer), which the Go
//! decoder ignores; keys it does not know are kept, not dropped. Writes are atomic under an
//! exclusive flock on `sidecar.json.lock`, which also guards `skill-config.yaml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::discover::{self, Scope};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::fsutil::{self, Lock};
use omac_bundle::harness::Harness;

/// The on-disk format version.
pub const VERSION: u32 = 1;

/// `sidecar.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Format version (1).
    #[serde(default)]
    pub version: u32,
    /// The registrations (Go writes `null` for none; read as empty).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub registered: Vec<Entry>,
    /// Keys omac does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The skill's name (its directory name).
    pub name: String,
    /// The harness whose scope it was registered in; empty = legacy, matches any harness.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub harness: String,
    /// The skill directory: relative to the workdir for workdir skills, absolute otherwise.
    #[serde(default)]
    pub skill_dir: String,
    /// The Go omac's bundle hash (kept so the Go omac sees no drift).
    #[serde(default)]
    pub bundle_hash: String,
    /// When it was registered (RFC 3339).
    #[serde(default, serialize_with = "go_time")]
    pub registered_at: String,
    /// Names of the secrets `omac.yaml` declared at registration.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub declared_secret_names: Vec<String>,
    /// Optional secrets the user declined; not asked again unless `--reprompt-secrets`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub skipped_secret_names: Vec<String>,
    /// Optional config fields the user declined; not asked again unless `--reprompt-fields`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub skipped_config_fields: Vec<String>,
    /// omac's addition: `sha256:<hex>` of the approved skill layer. Absent in entries the
    /// Go omac wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_digest: Option<String>,
    /// Keys omac does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Go cannot parse `""` as a `time.Time`: an unknown time is written as Go's zero time.
fn go_time<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() {
        "0001-01-01T00:00:00Z"
    } else {
        v
    })
}

impl Entry {
    /// Whether this entry serves `harness` (legacy entries with no harness serve all).
    pub fn serves(&self, harness: &str) -> bool {
        self.harness.is_empty() || self.harness == harness
    }

    /// The skill directory as an absolute path (`skill_dir` joined to the workdir if relative).
    pub fn abs_dir(&self, workdir: &Path) -> PathBuf {
        let p = Path::new(&self.skill_dir);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            crate::env::clean(&workdir.join(p))
        }
    }
}

impl Registry {
    /// Reads a registry file; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Registry> {
        let Some(bytes) = fsutil::read_if_exists(path)? else {
            return Ok(Registry {
                version: VERSION,
                ..Default::default()
            });
        };
        let mut r: Registry = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(
                path,
                "-",
                format!("is not a valid registry: {e}"),
                "fix the JSON by hand, or move the file away and register the skills again",
            )
        })?;
        if r.version == 0 {
            r.version = VERSION;
        }
        Ok(r)
    }

    /// The file's bytes as the Go omac writes them (entries sorted by name, stable).
    pub fn to_bytes(&mut self) -> Vec<u8> {
        if self.version == 0 {
            self.version = VERSION;
        }
        self.registered.sort_by(|a, b| a.name.cmp(&b.name));
        go_json(self)
    }

    /// The entry for `name` in `harness`'s scope: an exact harness match first, else a
    /// legacy (harness-less) one. With `harness` `None`, the first entry of that name.
    pub fn find(&self, name: &str, harness: Option<&str>) -> Option<&Entry> {
        self.index_of(name, harness).map(|i| &self.registered[i])
    }

    fn index_of(&self, name: &str, harness: Option<&str>) -> Option<usize> {
        let named = |e: &Entry| e.name == name;
        match harness {
            None => self.registered.iter().position(named),
            Some(h) => self
                .registered
                .iter()
                .position(|e| named(e) && e.harness == h)
                .or_else(|| {
                    self.registered
                        .iter()
                        .position(|e| named(e) && e.harness.is_empty())
                }),
        }
    }

    /// Inserts or replaces the entry keyed by (name, harness); a legacy entry of the same
    /// name is upgraded in place rather than duplicated.
    pub fn upsert(&mut self, e: Entry) {
        let idx = if e.harness.is_empty() {
            self.index_of(&e.name, None)
        } else {
            self.registered
                .iter()
                .position(|x| x.name == e.name && x.harness == e.harness)
                .or_else(|| {
                    self.registered
                        .iter()
                        .position(|x| x.name == e.name && x.harness.is_empty())
                })
        };
        match idx {
            Some(i) => self.registered[i] = e,
            None => self.registered.push(e),
        }
    }

    /// Removes the entry `find` would return; returns it.
    pub fn remove(&mut self, name: &str, harness: Option<&str>) -> Option<Entry> {
        self.index_of(name, harness)
            .map(|i| self.registered.remove(i))
    }
}

/// The files of one registry layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The directory holding them (`<workdir>/.opencode` or `~/.config/omac`).
    pub dir: PathBuf,
    /// `sidecar.json`.
    pub registry: PathBuf,
    /// `skill-config.yaml`.
    pub config: PathBuf,
    /// `sidecar.json.lock`, guarding both.
    pub lock: PathBuf,
}

/// The files of the `scope` layer (`None` when there is no home for the global one).
pub fn files(env: &Env, scope: Scope) -> Option<Files> {
    let dir = match scope {
        Scope::Workdir => env.workdir_state_dir(),
        Scope::Global => env.global_dir()?,
    };
    Some(Files {
        registry: dir.join("sidecar.json"),
        config: dir.join("skill-config.yaml"),
        lock: dir.join("sidecar.json.lock"),
        dir,
    })
}

/// The files of `scope`, or an error saying how to give omac a home.
pub fn files_or_err(env: &Env, scope: Scope) -> Result<Files> {
    files(env, scope).ok_or_else(|| Error::NotFound {
        what: "no global configuration directory (neither $XDG_CONFIG_HOME nor $HOME is set)"
            .into(),
        fix: "set HOME (or XDG_CONFIG_HOME) to your home directory".into(),
    })
}

/// Takes the layer's lock (creating its directory 0700).
pub fn lock(files: &Files) -> Result<Lock> {
    fsutil::ensure_dir(&files.dir, 0o700)?;
    Lock::exclusive(&files.lock)
}

/// Reads the layer's registry (empty when the file or the layer does not exist).
pub fn load(env: &Env, scope: Scope) -> Result<Registry> {
    match files(env, scope) {
        Some(f) => Registry::load(&f.registry),
        None => Ok(Registry {
            version: VERSION,
            ..Default::default()
        }),
    }
}

/// Under the layer's lock: reads the registry, lets `f` change it, and writes it back
/// atomically (mode 0600) if `f` succeeded and changed it. Concurrent updates never lose
/// each other's work.
pub fn update<T>(env: &Env, scope: Scope, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
    let files = files_or_err(env, scope)?;
    let _lock = lock(&files)?;
    let mut reg = Registry::load(&files.registry)?;
    let before = reg.clone();
    let out = f(&mut reg)?;
    if reg != before {
        fsutil::atomic_write(&files.registry, &reg.to_bytes(), 0o600)?;
    }
    Ok(out)
}

/// A registration with the layer it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The entry.
    pub entry: Entry,
    /// Workdir or global.
    pub scope: Scope,
    /// The skill directory, absolute.
    pub dir: PathBuf,
}

/// The merged registry: workdir entries win over global ones of the same name. With a
/// harness, only entries that serve it and whose directory lies in its scope (reference
/// §2.4 `DirInHarnessScope`) are kept. Sorted by name.
pub fn merged(env: &Env, harness: Option<&Harness>) -> Result<Vec<Registered>> {
    let mut out: Vec<Registered> = Vec::new();
    for scope in [Scope::Workdir, Scope::Global] {
        let reg = load(env, scope)?;
        for e in reg.registered {
            if let Some(h) = harness {
                let dir = e.abs_dir(&env.workdir);
                if !e.serves(h.name) || !discover::in_harness_scope(&dir, h) {
                    continue;
                }
            }
            if out.iter().any(|r| r.entry.name == e.name) {
                continue;
            }
            let dir = e.abs_dir(&env.workdir);
            out.push(Registered {
                entry: e,
                scope,
                dir,
            });
        }
    }
    out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(out)
}

/// JSON as Go's `json.MarshalIndent(v, "", "  ")` writes it: `<`, `>`, `&`, U+2028 and
/// U+2029 escaped, no trailing newline.
pub fn go_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter::default());
    // Serialising plain data into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    out
}

#[derive(Default)]
struct GoFormatter {
    pretty: serde_json::ser::PrettyFormatter<'static>,
}

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, harness: &str) -> Entry {
        Entry {
            name: name.into(),
            harness: harness.into(),
            skill_dir: format!(".opencode/skills/{name}"),
            bundle_hash: "sha256:00".into(),
            registered_at: "2026-08-20T10:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn harness_keys_and_legacy_upgrade() {
        let mut r = Registry::default();
        r.upsert(entry("a", ""));
        r.upsert(entry("a", "opencode"));
        assert_eq!(r.registered.len(), 1, "legacy entry upgraded in place");
        r.upsert(entry("a", "claude-code"));
        assert_eq!(r.registered.len(), 2);
        assert_eq!(
            r.find("a", Some("claude-code")).unwrap().harness,
            "claude-code"
        );
        assert!(r.find("a", Some("codex")).is_none());
        r.upsert(entry("b", ""));
        assert_eq!(
            r.find("b", Some("codex")).unwrap().name,
            "b",
            "legacy serves any harness"
        );
        assert_eq!(r.remove("a", Some("opencode")).unwrap().harness, "opencode");
        assert_eq!(r.registered.len(), 2);
    }

    #[test]
    fn go_escapes_and_unknown_keys_survive() {
        let mut r: Registry = serde_json::from_str(
            r#"{"version":1,"registered":[{"name":"x","skill_dir":"a&b","bundle_hash":"h",
               "registered_at":"2026-01-01T00:00:00Z","future":{"k":1}}],"also":true}"#,
        )
        .unwrap();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.contains(r#""skill_dir": "a\u0026b""#), "{text}");
        assert!(text.contains(r#""future": {"#), "{text}");
        assert!(text.contains(r#""also": true"#), "{text}");
        assert!(!text.ends_with('\n'));
        let back: Registry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.registered[0].skill_dir, "a&b");
    }

    #[test]
    fn null_registered_reads_as_empty() {
        let r: Registry = serde_json::from_str(r#"{"version":1,"registered":null}"#).unwrap();
        assert!(r.registered.is_empty());
    }
}
