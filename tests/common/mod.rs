//! Helpers shared by the integration tests: running the omac binary with a clean
//! environment, and the OCI JSON Schema from `OMAC_OCI_SCHEMA_DIR`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The omac binary under test.
pub const OMAC: &str = env!("CARGO_BIN_EXE_omac");

/// Where the built-in profiles live in the source tree.
pub const PROFILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");

/// A command for omac with only PATH, LANG and `home` as HOME in its environment.
pub fn omac(home: &Path) -> Command {
    let mut c = Command::new(OMAC);
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", home);
    c
}

/// Runs `cmd` and returns its output, failing the test when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout and stderr of `o`, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The schema directory named by `OMAC_OCI_SCHEMA_DIR`; `None` (with a message saying the
/// schema tests did not run) when the variable is unset. Panics when it is set but the
/// schema files are missing: CI must not pass without checking.
pub fn schema_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("OMAC_OCI_SCHEMA_DIR") else {
        eprintln!(
            "NOTE: OMAC_OCI_SCHEMA_DIR is not set: the OCI JSON Schema checks did NOT run \
             (set it to the runtime-spec's schema/ directory)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for f in [
        "config-schema.json",
        "config-linux.json",
        "defs.json",
        "defs-linux.json",
    ] {
        assert!(
            dir.join(f).is_file(),
            "OMAC_OCI_SCHEMA_DIR={} but {f} is missing there: the schema check cannot run",
            dir.display()
        );
    }
    Some(dir)
}

/// An OCI config validator built straight from the schema files with the jsonschema crate,
/// independent of omac's own `verify`: draft 4, references resolved only to files of `dir`.
pub struct Validator(jsonschema::Validator);

struct DirOnly(PathBuf);

impl jsonschema::Retrieve for DirOnly {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let path = PathBuf::from(uri.path().as_str());
        if uri.scheme().as_str() != "file" || path.parent() != Some(self.0.as_path()) {
            return Err(format!("refusing {}", uri.as_str()).into());
        }
        let text = std::fs::read_to_string(&path)?;
        // runtime-spec v1.3.0's defs.json has "#definitions/uint32" (fixed upstream later).
        Ok(serde_json::from_str(
            &text.replace("\"#definitions/", "\"#/definitions/"),
        )?)
    }
}

impl Validator {
    /// Compiles `dir/config-schema.json`.
    pub fn new(dir: &Path) -> Validator {
        let dir = std::fs::canonicalize(dir).expect("schema dir");
        assert!(
            dir.to_str()
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_graphic() && b != b'%')),
            "the test validator wants a plain schema path, got {}",
            dir.display()
        );
        let root_path = dir.join("config-schema.json");
        let root: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&root_path).expect("read schema"))
                .expect("schema is JSON");
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .with_base_uri(format!("file://{}", root_path.display()))
            .with_retriever(DirOnly(dir))
            .build(&root)
            .expect("the OCI schema compiles");
        Validator(v)
    }

    /// Every violation of `config`.
    pub fn errors(&self, config: &serde_json::Value) -> Vec<String> {
        self.0
            .iter_errors(config)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}
