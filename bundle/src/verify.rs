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

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Component, Path};

use serde::Serialize;
use serde_json::Value;

use crate::ext::ANNOTATION;
use crate::load::Loaded;
use crate::oci::{IdMapping, Spec};
use crate::schema::ConfigSchema;

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
    fn new(name: &str, problems: Vec<String>, ok: impl Into<String>) -> Check {
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

    fn skip(name: &str, why: impl Into<String>) -> Check {
        Check {
            status: Status::Skip,
            name: name.into(),
            summary: why.into(),
            details: vec![],
        }
    }

    fn fail(name: &str, why: impl Into<String>) -> Check {
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

fn is_clean_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir))
}

fn mapped(id: u32, maps: &[IdMapping]) -> bool {
    maps.iter()
        .any(|m| id >= m.container_id && (id as u64) < m.container_id as u64 + m.size as u64)
}

fn overlapping(maps: &[IdMapping]) -> bool {
    let mut ranges: Vec<(u64, u64)> = maps
        .iter()
        .map(|m| (m.container_id as u64, m.container_id as u64 + m.size as u64))
        .collect();
    ranges.sort();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
}

fn check_version(spec: &Spec) -> Check {
    let v = &spec.oci_version;
    let parts: Vec<&str> = v.split(['.', '-', '+']).collect();
    let ok =
        parts.len() >= 3 && parts[0] == "1" && parts[1..3].iter().all(|p| p.parse::<u32>().is_ok());
    let mut problems = vec![];
    if !ok {
        problems.push(format!(
            "ociVersion {v:?} is not a 1.x.y version (fix: write \"1.1.0\")"
        ));
    }
    let mut c = Check::new("ociVersion", problems, v.to_string());
    if ok && parts[1].parse::<u32>().is_ok_and(|m| m >= 2) {
        c.details.push(
            "note: crun 1.8 refuses versions from 1.2.0 on (\"unknown version specified\")".into(),
        );
    }
    c
}

fn check_capabilities(spec: &Spec) -> Check {
    let mut p = vec![];
    if let Some(c) = &spec.process.capabilities {
        let set = |v: &[String]| -> BTreeSet<String> { v.iter().cloned().collect() };
        let (bounding, permitted, inheritable) =
            (set(&c.bounding), set(&c.permitted), set(&c.inheritable));
        for a in &c.ambient {
            if !permitted.contains(a) || !inheritable.contains(a) {
                p.push(format!(
                    "ambient {a} is not both permitted and inheritable: the kernel refuses to raise it \
                     (runc ignores the error, oci-runtime-tool reports it; fix: add it to both sets or drop it)"
                ));
            }
        }
        for e in &c.effective {
            if !permitted.contains(e) {
                p.push(format!(
                    "effective {e} is not permitted: capset fails in runc and crun (fix: add it to permitted or drop it)"
                ));
            }
        }
        for i in &c.inheritable {
            if !bounding.contains(i) {
                p.push(format!(
                    "inheritable {i} is outside the bounding set: capset fails in runc and crun \
                     (fix: add it to bounding or drop it)"
                ));
            }
        }
        for (name, list) in [
            ("bounding", &c.bounding),
            ("effective", &c.effective),
            ("inheritable", &c.inheritable),
            ("permitted", &c.permitted),
            ("ambient", &c.ambient),
        ] {
            for n in list {
                if !n.starts_with("CAP_") {
                    p.push(format!("{name} {n:?} is not a CAP_* name"));
                }
            }
        }
    }
    let ok = match &spec.process.capabilities {
        None => "not set (left to the runtime)",
        Some(_) => "the sets are consistent",
    };
    Check::new("capabilities", p, ok)
}

fn check_ids(spec: &Spec) -> Check {
    let l = &spec.linux;
    let u = &spec.process.user;
    let mut p = vec![];
    if spec.creates_namespace("user") {
        for (what, maps) in [("uid", &l.uid_mappings), ("gid", &l.gid_mappings)] {
            if maps.is_empty() {
                p.push(format!(
                    "a user namespace is created but linux.{what}Mappings is empty (fix: map the invoking {what})"
                ));
            }
            if maps.iter().any(|m| m.size == 0) {
                p.push(format!("a {what} mapping has size 0"));
            }
            if overlapping(maps) {
                p.push(format!("{what} mappings overlap inside the namespace"));
            }
        }
        if !l.uid_mappings.is_empty() && !mapped(u.uid, &l.uid_mappings) {
            p.push(format!(
                "process.user.uid {} is not mapped in the user namespace (fix: add a uidMapping for it)",
                u.uid
            ));
        }
        if !l.gid_mappings.is_empty() {
            for g in std::iter::once(&u.gid).chain(&u.additional_gids) {
                if !mapped(*g, &l.gid_mappings) {
                    p.push(format!(
                        "gid {g} of process.user is not mapped in the user namespace (fix: add a gidMapping for it)"
                    ));
                }
            }
        }
    } else if !l.uid_mappings.is_empty() || !l.gid_mappings.is_empty() {
        p.push("id mappings are given but no user namespace is created (fix: add {\"type\": \"user\"} to linux.namespaces)".into());
    }
    let ok = if spec.creates_namespace("user") {
        format!(
            "uid {} and gid {} are mapped in the user namespace",
            u.uid, u.gid
        )
    } else {
        "no user namespace".to_string()
    };
    Check::new("ids", p, ok)
}

fn check_mounts(spec: &Spec) -> Check {
    let mut p = vec![];
    let ms = &spec.mounts;
    for (i, m) in ms.iter().enumerate() {
        let d = &m.destination;
        if !is_clean_absolute(d) {
            p.push(format!(
                "mounts[{i}].destination {d:?} is not a clean absolute path"
            ));
            continue;
        }
        let dp = Path::new(d);
        if dp.starts_with("/proc")
            && !(dp == Path::new("/proc") && m.kind.as_deref() == Some("proc"))
        {
            p.push(format!(
                "mounts[{i}] puts {d} under /proc: only the proc filesystem itself belongs there (runtimes refuse or it hides kernel files)"
            ));
        }
        let is_bind = m.kind.as_deref() == Some("bind")
            || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind && m.source.as_deref().is_none_or(str::is_empty) {
            p.push(format!(
                "mounts[{i}] ({d}) is a bind mount without a source"
            ));
        }
        for (j, later) in ms.iter().enumerate().skip(i + 1) {
            let lp = Path::new(&later.destination);
            if dp.starts_with(lp) {
                p.push(format!(
                    "mounts[{i}] ({d}) is hidden by the later mounts[{j}] ({}) (fix: mount parents before children, each path once)",
                    later.destination
                ));
                break;
            }
        }
    }
    for (what, list) in [
        ("maskedPaths", &spec.linux.masked_paths),
        ("readonlyPaths", &spec.linux.readonly_paths),
    ] {
        for (i, x) in list.iter().enumerate() {
            if !is_clean_absolute(x) {
                p.push(format!(
                    "linux.{what}[{i}] {x:?} is not a clean absolute path"
                ));
            }
        }
    }
    Check::new(
        "mounts",
        p,
        format!(
            "{} mounts with absolute destinations, in a usable order",
            ms.len()
        ),
    )
}

fn check_process(loaded: &Loaded) -> Check {
    let spec = &loaded.config;
    let mut p = vec![];
    let pr = &spec.process;
    if pr.args.is_empty() {
        p.push("process.args is empty (fix: give the command to run)".into());
    }
    if !pr.cwd.starts_with('/') {
        p.push(format!("process.cwd {:?} is not absolute", pr.cwd));
    }
    for (i, kv) in pr.env.iter().enumerate() {
        if !kv.contains('=') || kv.starts_with('=') {
            p.push(format!("process.env[{i}] {kv:?} is not NAME=value"));
        }
    }
    let mut kinds = BTreeSet::new();
    for r in &pr.rlimits {
        if !kinds.insert(&r.kind) {
            p.push(format!("rlimit {} is given twice", r.kind));
        }
        if r.soft > r.hard {
            p.push(format!(
                "rlimit {}: soft {} exceeds hard {}",
                r.kind, r.soft, r.hard
            ));
        }
    }
    let mut ns = BTreeSet::new();
    for n in &spec.linux.namespaces {
        if !ns.insert(&n.kind) {
            p.push(format!("namespace {} is listed twice", n.kind));
        }
    }
    let root = loaded.dir.join(&spec.root.path);
    if !root.is_dir() {
        p.push(format!(
            "root.path {} is not a directory (fix: create it; omac bundles use an empty rootfs/)",
            root.display()
        ));
    }
    Check::new(
        "process",
        p,
        "argv, cwd, environment, rlimits, namespaces and root are well-formed",
    )
}

fn check_seccomp(spec: &Spec) -> Check {
    let Some(f) = &spec.linux.seccomp else {
        return Check::new("seccomp", vec![], "no syscall filter");
    };
    let mut p = vec![];
    match omac_seccomp::compile(f) {
        Ok(c) => {
            if let Some(native) = omac_seccomp::oci::Arch::native() {
                if !f.architectures.is_empty() && !f.architectures.contains(&native) {
                    p.push(format!(
                        "the filter does not list this machine's {} entry point",
                        native.spec_name()
                    ));
                }
            }
            if p.is_empty() {
                return Check::new(
                    "seccomp",
                    p,
                    format!(
                        "the filter compiles ({} rules, {} BPF instructions)",
                        f.syscalls.len(),
                        c.instruction_count()
                    ),
                );
            }
        }
        Err(e) => p.push(format!("the filter cannot be compiled: {e}")),
    }
    Check::new("seccomp", p, "")
}

/// Checks that `config.json` says what `omac.json` says (omac bundles only).
fn check_consistency(loaded: &Loaded) -> Option<Check> {
    let ext = loaded.ext.as_ref()?;
    let spec = &loaded.config;
    let mut p = vec![];
    for pr in &ext.protected {
        if !spec.linux.masked_paths.contains(&pr.path) {
            p.push(format!(
                "protected path {} ({}) is not in linux.maskedPaths",
                pr.path, pr.rule
            ));
        }
    }
    let own_netns = ext.network.mode != "open" && ext.network.enforcement == "kernel";
    if own_netns != spec.creates_namespace("network") {
        p.push(format!(
            "network mode {} ({} enforcement) {} a network namespace, config.json {}",
            ext.network.mode,
            ext.network.enforcement,
            if own_netns { "needs" } else { "does not use" },
            if spec.creates_namespace("network") {
                "creates one"
            } else {
                "creates none"
            }
        ));
    }
    for k in ["user", "mount", "pid", "ipc", "uts"] {
        if !spec.creates_namespace(k) {
            p.push(format!(
                "omac bundles create a {k} namespace; config.json does not"
            ));
        }
    }
    if !spec.process.no_new_privileges {
        p.push("noNewPrivileges is off; omac bundles always set it".into());
    }
    if let Some(c) = &spec.process.capabilities {
        let kept: BTreeSet<&String> = c
            .bounding
            .iter()
            .chain(&c.effective)
            .chain(&c.permitted)
            .chain(&c.inheritable)
            .chain(&c.ambient)
            .collect();
        if !kept.is_empty() {
            let names: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
            p.push(format!(
                "capabilities {} are kept; omac bundles keep none",
                names.join(", ")
            ));
        }
    } else {
        p.push("process.capabilities is absent: the runtime would keep its defaults".into());
    }
    for (what, maps) in [
        ("uid", &spec.linux.uid_mappings),
        ("gid", &spec.linux.gid_mappings),
    ] {
        if maps.iter().any(|m| m.container_id != m.host_id) {
            p.push(format!(
                "a {what} mapping is not the identity; omac maps the invoking {what} to itself"
            ));
        }
    }
    if ext.enforcement.require.iter().any(|l| l == "seccomp") && spec.linux.seccomp.is_none() {
        p.push("seccomp is required but config.json has no filter".into());
    }
    if ext.workdir.access != "none" {
        let wd = &ext.workdir.path;
        match spec.mounts.iter().find(|m| &m.destination == wd) {
            None => p.push(format!("the work directory {wd} is not mounted")),
            Some(m) => {
                let ro = m.options.iter().any(|o| o == "ro");
                let wants_write = ext.workdir.access.contains("write");
                if ro == wants_write {
                    p.push(format!(
                        "the work directory {wd} is mounted {} but its access is {}",
                        if ro { "read-only" } else { "read-write" },
                        ext.workdir.access
                    ));
                }
            }
        }
    }
    for r in &ext.landlock.fs {
        if !r.path.starts_with('/') {
            p.push(format!("Landlock rule path {:?} is not absolute", r.path));
        }
        for a in &r.access {
            if crate::rights::abi_of(a).is_none() {
                p.push(format!("Landlock right {a:?} on {} is unknown", r.path));
            }
        }
    }
    for l in &ext.enforcement.require {
        if !crate::ext::LAYERS.iter().any(|(n, _)| n == l) {
            p.push(format!("required layer {l:?} is unknown"));
        }
    }
    Some(Check::new(
        "consistency",
        p,
        "config.json agrees with omac.json (masks, namespaces, privileges, work directory, Landlock)",
    ))
}

/// The checks the schema cannot make, over a loaded bundle.
pub fn semantics(loaded: &Loaded) -> Vec<Check> {
    let spec = &loaded.config;
    let mut v = vec![
        check_version(spec),
        check_process(loaded),
        check_capabilities(spec),
        check_ids(spec),
        check_mounts(spec),
        check_seccomp(spec),
    ];
    v.extend(check_consistency(loaded));
    v
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
