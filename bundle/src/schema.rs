//! Checking a `config.json` against the official OCI runtime-spec JSON Schema (draft 4).
//!
//! The schema files are read from one directory given by the caller (a copy of the
//! runtime-spec's `schema/`), and only from it: the retriever refuses any reference that
//! is not a file of that directory, so a check never touches the network.
//!
//! runtime-spec v1.3.0 ships `defs.json` with `"$ref": "#definitions/uint32"` (a `/`
//! missing; fixed upstream in commit 04836b1). That one spelling is repaired in memory when
//! the file is read, so the released schema directory works as well as a newer one.

use std::path::{Path, PathBuf};

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;

/// The root schema file of a `config.json`.
pub const CONFIG_SCHEMA: &str = "config-schema.json";

/// Why the schema could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A schema file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A schema file is not JSON.
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The schema does not compile (a broken reference, a file missing).
    #[error("the schema in {} does not compile: {message}", dir.display())]
    Compile {
        /// The schema directory.
        dir: PathBuf,
        /// The compiler's message.
        message: String,
    },
}

/// A compiled config schema.
pub struct ConfigSchema {
    dir: PathBuf,
    validator: Validator,
}

impl std::fmt::Debug for ConfigSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSchema")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn encode(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(b) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Reads `file` of the schema directory, repairing the known v1.3.0 reference typo.
fn read_schema_file(path: &Path) -> Result<Value, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|e| SchemaError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let text = text.replace("\"#definitions/", "\"#/definitions/");
    serde_json::from_str(&text).map_err(|e| SchemaError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Resolves `$ref`s to files of one directory, and nothing else.
struct DirRetriever {
    dir: PathBuf,
}

impl Retrieve for DirRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        use std::os::unix::ffi::OsStrExt;
        let refuse = || -> Box<dyn std::error::Error + Send + Sync> {
            format!(
                "refusing to fetch {}: only files of {} are read",
                uri.as_str(),
                self.dir.display()
            )
            .into()
        };
        if uri.scheme().as_str() != "file" {
            return Err(refuse());
        }
        let raw = decode(uri.path().as_str()).ok_or_else(refuse)?;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&raw));
        let name = path.file_name().ok_or_else(refuse)?;
        if path.parent() != Some(self.dir.as_path()) || !name.as_bytes().ends_with(b".json") {
            return Err(refuse());
        }
        Ok(read_schema_file(&path)?)
    }
}

impl ConfigSchema {
    /// Compiles the config schema of directory `dir`.
    pub fn load(dir: &Path) -> Result<ConfigSchema, SchemaError> {
        let dir = std::fs::canonicalize(dir).map_err(|e| SchemaError::Read {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let root_path = dir.join(CONFIG_SCHEMA);
        let root = read_schema_file(&root_path)?;
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_base_uri(encode(&root_path))
            .with_retriever(DirRetriever { dir: dir.clone() })
            .build(&root)
            .map_err(|e| SchemaError::Compile {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        Ok(ConfigSchema { dir, validator })
    }

    /// The schema directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every violation in `config`, as `JSON-pointer: message`; empty when valid.
    pub fn check(&self, config: &Value) -> Vec<String> {
        self.validator
            .iter_errors(config)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                format!("{at}: {e}")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_odd_paths() {
        let p = Path::new("/a b/ü%/c.json");
        let uri = encode(p);
        assert!(uri.starts_with("file:///a%20b/"), "{uri}");
        let back = decode(uri.strip_prefix("file://").unwrap()).unwrap();
        assert_eq!(back, p.as_os_str().as_encoded_bytes());
    }

    #[test]
    fn the_retriever_reads_only_its_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(t.path()).unwrap();
        std::fs::write(dir.join("a.json"), "{\"x\": \"#definitions/y\"}").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.json"), "{}").unwrap();
        let r = DirRetriever { dir: dir.clone() };
        let uri = |s: String| jsonschema::uri::from_str(&s).unwrap();
        let v = r.retrieve(&uri(encode(&dir.join("a.json")))).unwrap();
        assert_eq!(v["x"], "#/definitions/y");
        for bad in [
            encode(&dir.join("sub/b.json")),
            encode(&dir.join("../etc/passwd.json")),
            "https://example.com/x.json".to_string(),
            encode(&dir.join("a.txt")),
        ] {
            assert!(r.retrieve(&uri(bad.clone())).is_err(), "{bad} was read");
        }
    }
}
