//! Reading a bundle directory: `config.json` (any OCI bundle) and, when present,
//! `omac.json`, whose digest must match the annotation in `config.json`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::ext::{Extension, ANNOTATION, SCHEMA_VERSION};
use crate::oci::Spec;
use crate::render::digest;
use crate::Error;

/// A bundle read from disk.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The bundle directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: Spec,
    /// `omac.json`, absent for a plain OCI bundle.
    pub ext: Option<Extension>,
}

/// Parses `text` of bundle file `file`, refusing unknown fields with their JSON path.
pub fn parse_json<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, Error> {
    // The fast path; only a file that fails is parsed again to name the failing field.
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let fix = if msg.starts_with("unknown field") {
            "omac does not implement this setting; remove it (omac never ignores a setting it cannot honour)"
        } else {
            "correct the value (see the runtime spec, or regenerate with omac bundle create)"
        };
        Error::Bundle {
            file: file.to_string(),
            message: format!("{path}: {msg}"),
            fix: fix.into(),
        }
    })?;
    de.end().map_err(|e| Error::Bundle {
        file: file.to_string(),
        message: e.to_string(),
        fix: "remove what follows the JSON object".into(),
    })?;
    Ok(v)
}

fn read(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Loads the bundle in `dir`, checking that `omac.json` is the one `config.json` names.
pub fn load(dir: &Path) -> Result<Loaded, Error> {
    let config_path = dir.join("config.json");
    let config_file = config_path.display().to_string();
    let text = read(&config_path)?.ok_or_else(|| Error::Bundle {
        file: config_file.clone(),
        message: "no config.json here".into(),
        fix: "pass a bundle directory (make one with omac bundle create --out DIR)".into(),
    })?;
    let config: Spec = parse_json(&text, &config_file)?;
    let ext_path = dir.join("omac.json");
    let ext_file = ext_path.display().to_string();
    let ext_text = read(&ext_path)?;
    let ext = match (config.annotations.get(ANNOTATION), ext_text) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Error::Bundle {
                file: config_file,
                message: format!(
                    "omac.json is present but config.json has no {ANNOTATION} annotation"
                ),
                fix: "regenerate the bundle with omac bundle create, or remove omac.json".into(),
            })
        }
        (Some(_), None) => {
            return Err(Error::Bundle {
                file: ext_file,
                message: "config.json names an omac.json that is missing".into(),
                fix: "restore omac.json or regenerate the bundle".into(),
            })
        }
        (Some(want), Some(t)) => {
            let got = digest(t.as_bytes());
            if &got != want {
                return Err(Error::Bundle {
                    file: ext_file,
                    message: format!(
                        "digest {got} does not match the annotation {want} in config.json"
                    ),
                    fix: "omac.json or config.json was changed alone; regenerate the bundle".into(),
                });
            }
            let ext: Extension = parse_json(&t, &ext_file)?;
            if ext.schema_version != SCHEMA_VERSION {
                return Err(Error::Bundle {
                    file: ext_file,
                    message: format!(
                        "schemaVersion {} is not the version {SCHEMA_VERSION} this omac reads",
                        ext.schema_version
                    ),
                    fix: "regenerate the bundle with this omac".into(),
                });
            }
            if let Some((field, value)) = ext.duplicate() {
                return Err(Error::Bundle {
                    file: ext_file,
                    message: format!("{field}: {value:?} is given twice"),
                    fix: "give each one entry (omac bundle create never writes two)".into(),
                });
            }
            Some(ext)
        }
    };
    Ok(Loaded {
        dir: dir.to_path_buf(),
        config,
        ext,
    })
}
