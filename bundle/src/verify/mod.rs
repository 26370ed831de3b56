//! `omac bundle verify`: is this a bundle a runtime can trust and run?
//!
//! Checks, each reported as one `[ok]`, `[fail]` or `[skip]` line:
//! - `config.json` is valid against the official OCI JSON Schema (when a schema directory
//!   is given; otherwise the check is reported as not run);
//! - `omac.json` is the one `config.json` names (its sha256 matches the annotation);
//! - what the schema cannot see: capability sets that runtimes refuse, ids the user
//!   namespace does not map, mount destinations that are relative, under `/proc` or hidden
//!   by a later mount, an unusable syscall filter, duplicate namespaces or limits;
//! - for omac bundles, that `config.json` agrees with `omac.json` (protected paths masked,
//!   network namespace as the mode says, nothing kept that omac never grants);
//! - every skill layer's digest against its source, with a digest function the caller
//!   supplies (the skills crate's reproducible-tar digest).
//!
//! [`verify`] reads the directory; [`semantics`] and [`layers`] are pure over a [`Loaded`].

mod semantics;

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::ext::ANNOTATION;
use crate::load::Loaded;
use crate::schema::ConfigSchema;

pub use semantics::semantics;

/// A function giving the `sha256:<hex>` layer digest of a skill directory.
pub type LayerDigest<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

/// What `verify` is given besides the bundle.
#[derive(Default, Clone, Copy)]
pub struct Options<'a> {
    /// The OCI runtime-spec `schema/` directory; `None` skips the schema check.
    pub schema_dir: Option<&'a Path>,
    /// The layer digest function; `None` skips the layer check (and says so).
    pub layer_digest: Option<LayerDigest<'a>>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Ok,
    /// The bundle is invalid.
    Fail,
    /// Not run; the detail says why.
    Skip,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Its outcome.
    pub status: Status,
    /// What was checked.
    pub name: String,
    /// The result in words.
    pub summary: String,
    /// Every problem found (or every item checked).
    pub details: Vec<String>,
}

impl Check {
    pub(crate) fn new(name: &str, problems: Vec<String>, ok: impl Into<String>) -> Check {
        let status = if problems.is_empty() {
            Status::Ok
        } else {
            Status::Fail
        };
        let summary = if problems.is_empty() {
            ok.into()
        } else {
            format!("{} problem(s)", problems.len())
        };
        Check {
            status,
            name: name.into(),
            summary,
            details: problems,
        }
    }

    pub(crate) fn skip(name: &str, why: impl Into<String>) -> Check {
        Check {
            status: Status::Skip,
            name: name.into(),
            summary: why.into(),
            details: vec![],
        }
    }

    pub(crate) fn fail(name: &str, why: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            name: name.into(),
            summary: why.into(),
            details: vec![],
        }
    }
}

/// All checks of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (skipped ones do not fail).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The report as `[ok]`/`[fail]`/`[skip]` lines.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for c in &self.checks {
            let tag = match c.status {
                Status::Ok => "[ok]  ",
                Status::Fail => "[fail]",
                Status::Skip => "[skip]",
            };
            let _ = writeln!(o, "{tag} {}: {}", c.name, c.summary);
            for d in &c.details {
                let _ = writeln!(o, "         {d}");
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Skip)
            .count();
        let _ = writeln!(
            o,
            "{}: {} checks, {failed} failed, {skipped} not run",
            if failed == 0 { "valid" } else { "INVALID" },
            self.checks.len()
        );
        o
    }
}

/// Checks the bundle in `dir`.
pub fn verify(dir: &Path, opts: &Options) -> Report {
    let mut checks = Vec::new();
    let config_path = dir.join("config.json");
    let value: Option<Value> = match std::fs::read_to_string(&config_path) {
        Err(e) => {
            checks.push(Check::fail(
                "config.json",
                format!("cannot read {}: {e}", config_path.display()),
            ));
            None
        }
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                checks.push(Check::fail("config.json", format!("not JSON: {e}")));
                None
            }
        },
    };
    let Some(value) = value else {
        return Report { checks };
    };
    checks.push(schema_check(&value, opts.schema_dir));
    match crate::load::load(dir) {
        Err(e) => {
            let name = match &e {
                crate::Error::Bundle { file, .. } if file.ends_with("omac.json") => "omac.json",
                _ => "config.json",
            };
            checks.push(Check::fail(name, e.to_string()));
        }
        Ok(loaded) => {
            checks.push(digest_check(&loaded, &value));
            checks.extend(semantics(&loaded));
            checks.push(layers(&loaded, opts.layer_digest));
        }
    }
    Report { checks }
}

/// The schema check of one parsed `config.json`.
pub fn schema_check(config: &Value, schema_dir: Option<&Path>) -> Check {
    let name = "schema";
    let Some(dir) = schema_dir else {
        return Check::skip(
            name,
            "NOT CHECKED against the OCI JSON Schema: no schema directory given \
             (pass --schema-dir DIR or set OMAC_OCI_SCHEMA_DIR to the runtime-spec's schema/)",
        );
    };
    match ConfigSchema::load(dir) {
        Err(e) => Check::fail(
            name,
            format!("cannot check: {e} (fix: point it at the runtime-spec's schema/ directory)"),
        ),
        Ok(schema) => Check::new(
            name,
            schema.check(config),
            format!(
                "config.json is valid against the OCI runtime-spec schema in {}",
                schema.dir().display()
            ),
        ),
    }
}

fn digest_check(loaded: &Loaded, raw: &Value) -> Check {
    let name = "omac.json";
    match &loaded.ext {
        None => Check::skip(
            name,
            "no omac.json: a plain OCI bundle (Landlock, network policy and skills are not part of it)",
        ),
        Some(_) => {
            let want = raw
                .pointer(&format!("/annotations/{}", ANNOTATION.replace('/', "~1")))
                .and_then(Value::as_str)
                .unwrap_or("?");
            Check::new(
                name,
                vec![],
                format!("its digest {want} matches the annotation {ANNOTATION} of config.json"),
            )
        }
    }
}

/// Checks every skill layer's digest against its source with `digest`.
pub fn layers(loaded: &Loaded, digest: Option<LayerDigest>) -> Check {
    let name = "skill layers";
    let skills = loaded
        .ext
        .as_ref()
        .map(|e| e.skills.as_slice())
        .unwrap_or(&[]);
    if skills.is_empty() {
        return Check::new(name, vec![], "none in this bundle");
    }
    let Some(f) = digest else {
        let list: Vec<String> = skills
            .iter()
            .map(|s| format!("{} {} (from {})", s.name, s.digest, s.source))
            .collect();
        let mut c = Check::skip(
            name,
            format!(
                "{} layer(s) NOT CHECKED: this build has no layer digest function",
                skills.len()
            ),
        );
        c.details = list;
        return c;
    };
    let mut problems = vec![];
    let mut checked = vec![];
    for s in skills {
        match f(Path::new(&s.source)) {
            Err(e) => problems.push(format!(
                "{}: cannot digest its source {}: {e}",
                s.name, s.source
            )),
            Ok(d) if d != s.digest => problems.push(format!(
                "{}: the bundle says {} but its source {} is {d} (fix: review the change, then regenerate the bundle)",
                s.name, s.digest, s.source
            )),
            Ok(_) => checked.push(format!("{} {} = {}", s.name, s.digest, s.source)),
        }
    }
    if problems.is_empty() {
        let mut c = Check::new(
            name,
            vec![],
            format!("{} layer(s) match their sources", checked.len()),
        );
        c.details = checked;
        c
    } else {
        Check::new(name, problems, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext::SkillLayer;
    use crate::oci::IdMapping;
    use crate::testing::{s, scratch};

    fn failed<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name && c.status == Status::Fail)
            .unwrap_or_else(|| panic!("{name} did not fail: {checks:#?}"))
    }

    fn says(c: &Check, text: &str) -> bool {
        c.details.iter().any(|d| d.contains(text)) || c.summary.contains(text)
    }

    #[test]
    fn a_generated_bundle_passes_every_check() {
        let sc = scratch();
        let l = sc.bundle("p", r#"{"extends": "default"}"#, Default::default());
        let report = verify(&l.dir, &Options::default());
        assert!(report.passed(), "{}", report.render());
        let schema = report.checks.iter().find(|c| c.name == "schema").unwrap();
        assert_eq!(schema.status, Status::Skip);
        assert!(report.render().contains("[skip] schema: NOT CHECKED"));
    }

    #[test]
    fn semantic_problems_are_named() {
        let sc = scratch();
        let mut l = sc.bundle("p", "{}", Default::default());
        let c = &mut l.config;
        c.process.user.uid = 4242;
        c.process.user.additional_gids = vec![77];
        c.linux.uid_mappings.push(IdMapping {
            container_id: 1000,
            host_id: 5000,
            size: 2,
        });
        c.process.capabilities = Some(crate::oci::Capabilities {
            effective: vec!["CAP_KILL".into()],
            inheritable: vec!["CAP_CHOWN".into()],
            ..Default::default()
        });
        c.mounts.push(crate::oci::Mount {
            destination: "/proc/self/x".into(),
            kind: Some("tmpfs".into()),
            source: Some("tmpfs".into()),
            options: vec![],
        });
        c.mounts.insert(
            0,
            crate::oci::Mount {
                destination: "/usr/lib".into(),
                kind: Some("bind".into()),
                source: None,
                options: vec!["bind".into()],
            },
        );
        c.linux.namespaces.retain(|n| n.kind != "network");
        c.process.rlimits[0].soft = u64::MAX;
        let checks = semantics(&l);
        let ids = failed(&checks, "ids");
        assert!(says(ids, "process.user.uid 4242 is not mapped"), "{ids:?}");
        assert!(says(ids, "gid 77 of process.user is not mapped"), "{ids:?}");
        assert!(says(ids, "uid mappings overlap"), "{ids:?}");
        let caps = failed(&checks, "capabilities");
        assert!(
            says(caps, "effective CAP_KILL is not permitted"),
            "{caps:?}"
        );
        assert!(
            says(caps, "inheritable CAP_CHOWN is outside the bounding set"),
            "{caps:?}"
        );
        let m = failed(&checks, "mounts");
        assert!(says(m, "puts /proc/self/x under /proc"), "{m:?}");
        assert!(says(m, "bind mount without a source"), "{m:?}");
        assert!(
            says(m, "(/usr/lib) is hidden by the later mounts["),
            "{m:?}"
        );
        let p = failed(&checks, "process");
        assert!(says(p, "soft 18446744073709551615 exceeds hard"), "{p:?}");
        let k = failed(&checks, "consistency");
        assert!(says(k, "needs a network namespace"), "{k:?}");
        assert!(says(k, "CAP_CHOWN, CAP_KILL are kept"), "{k:?}");
        assert!(says(k, "uid mapping is not the identity"), "{k:?}");
    }

    #[test]
    fn layers_are_checked_with_the_callers_digest_function() {
        let sc = scratch();
        let src = sc.path("skill");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("omac.yaml"), "name: echo\n").unwrap();
        // A stand-in for the skills crate's reproducible-tar digest.
        let digest = |dir: &Path| -> Result<String, String> {
            let bytes = std::fs::read(dir.join("omac.yaml")).map_err(|e| e.to_string())?;
            Ok(crate::render::digest(&bytes))
        };
        let good = digest(&src).unwrap();
        let extras = |d: &str, source: &Path| crate::Extras {
            skills: vec![SkillLayer {
                name: "echo".into(),
                digest: d.into(),
                source: s(source),
            }],
            ..Default::default()
        };
        let l = sc.bundle("ok", "{}", extras(&good, &src));
        let c = layers(&l, Some(&digest));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.details[0].contains("echo") && c.details[0].contains(&good));
        let skipped = layers(&l, None);
        assert_eq!(skipped.status, Status::Skip);
        assert!(skipped.summary.contains("NOT CHECKED") && skipped.details[0].contains(&good));
        std::fs::write(src.join("omac.yaml"), "name: evil\n").unwrap();
        let c = layers(&l, Some(&digest));
        assert_eq!(c.status, Status::Fail);
        assert!(c.details[0].contains("the bundle says"), "{c:?}");
        let gone = sc.bundle("gone", "{}", extras(&good, &sc.path("nowhere")));
        let c = layers(&gone, Some(&digest));
        assert_eq!(c.status, Status::Fail);
        assert!(c.details[0].contains("cannot digest its source"), "{c:?}");
        let report = verify(
            &gone.dir,
            &Options {
                schema_dir: None,
                layer_digest: Some(&digest),
            },
        );
        assert!(!report.passed());
    }

    #[test]
    fn a_tampered_extension_and_a_broken_schema_dir_fail() {
        let sc = scratch();
        let l = sc.bundle("p", "{}", Default::default());
        let ext = l.dir.join("omac.json");
        let text = std::fs::read_to_string(&ext)
            .unwrap()
            .replace("\"signal\"", "\"none\"");
        std::fs::write(&ext, text).unwrap();
        let r = verify(&l.dir, &Options::default());
        assert!(!r.passed());
        assert!(r.render().contains("[fail] omac.json"), "{}", r.render());
        let empty = sc.path("empty-schema");
        std::fs::create_dir_all(&empty).unwrap();
        let c = schema_check(&serde_json::json!({}), Some(&empty));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("cannot check"), "{c:?}");
    }
}
