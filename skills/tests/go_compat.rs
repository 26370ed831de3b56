//! Compatibility with the Go omac, checked with Go itself: a small Go program
//! (`tests/gocompat/main.go`, the Go omac's file shapes with encoding/json and
//! gopkg.in/yaml.v3) decodes what omac writes and re-encodes it. Needs the Debian packages
//! golang-go and golang-gopkg-yaml.v3-dev (.ci/apt-packages).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use omac_skills::registry::{Entry, Registry};
use omac_skills::skill_config::SkillConfig;

fn here(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Builds the Go helper once per test run (GOPATH mode against Debian's Go sources).
fn gocompat() -> &'static Path {
    static BIN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, bin) = BIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("gocompat");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(here("tests/gocompat/main.go"))
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", dir.path().join("cache"))
            .env("HOME", dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `go` ({e}): install golang-go and golang-gopkg-yaml.v3-dev (.ci/apt-packages)")
            });
        assert!(
            out.status.success(),
            "building the Go helper failed (are golang-go and golang-gopkg-yaml.v3-dev installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, bin)
    });
    bin
}

/// Runs the Go helper: `mode in out`; returns the bytes Go wrote.
fn go_roundtrip(mode: &str, input: &[u8]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let (i, o) = (d.path().join("in"), d.path().join("out"));
    std::fs::write(&i, input).unwrap();
    let out = Command::new(gocompat())
        .arg(mode)
        .arg(&i)
        .arg(&o)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Go could not read it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&o).unwrap()
}

#[test]
fn the_golden_files_are_what_go_writes() {
    for (mode, file) in [
        ("registry", "tests/golden/go-sidecar.json"),
        ("config", "tests/golden/go-skill-config.yaml"),
    ] {
        let golden = std::fs::read(here(file)).unwrap();
        assert_eq!(
            String::from_utf8(go_roundtrip(mode, &golden)).unwrap(),
            String::from_utf8(golden).unwrap(),
            "{file} is not byte-identical to Go's encoding of it"
        );
    }
}

#[test]
fn go_reads_omacs_registry_and_would_write_the_same_bytes() {
    let mut reg = Registry::default();
    for (name, harness, layer) in [
        ("b-skill", "", None),
        ("a-skill", "claude-code", None),
        ("c<&>", "codex", Some("sha256:ff")),
    ] {
        reg.upsert(Entry {
            name: name.into(),
            harness: harness.into(),
            skill_dir: format!(".opencode/skills/{name}"),
            bundle_hash: "sha256:00".into(),
            registered_at: "2026-08-20T10:11:12Z".into(),
            declared_secret_names: vec!["A".into(), "B".into()],
            skipped_config_fields: vec!["F".into()],
            layer_digest: layer.map(str::to_string),
            ..Default::default()
        });
    }
    let go = go_roundtrip("registry", &reg.to_bytes());
    // Go drops only the field it does not know (layer_digest); everything else is identical.
    let mut without = reg.clone();
    for e in &mut without.registered {
        e.layer_digest = None;
    }
    assert_eq!(
        String::from_utf8(go).unwrap(),
        String::from_utf8(without.to_bytes()).unwrap()
    );
}

#[test]
fn go_reads_omacs_skill_config_and_would_write_the_same_bytes() {
    let tricky = [
        "hello",
        "hello world",
        "100",
        "-7",
        "0x10",
        "1e3",
        "1:20",
        "false",
        "True",
        "yes",
        "No",
        "on",
        "y",
        "",
        "~",
        "null",
        "a: b",
        "x:",
        ":x",
        "?x",
        "-x",
        "- x",
        " lead",
        "trail ",
        "#x",
        "x #y",
        "x#y",
        "@x",
        "%x",
        "`x",
        "'q'",
        "\"dq\"",
        "it's",
        "[a]",
        "{a}",
        "a,b",
        "*x",
        "&x",
        "!x",
        "|x",
        ">x",
        "tab\there",
        "héllo",
        "日本語",
        "https://api.example.com:8443/v1?a=b&c=d",
        "C:\\path",
        "---",
        "...",
        ".5",
        "+1",
        "0o17",
    ];
    let mut c = SkillConfig {
        version: 1,
        ..Default::default()
    };
    for (i, v) in tricky.iter().enumerate() {
        c.set("s", &format!("F{i:02}"), v);
    }
    c.defaults
        .entry("s".into())
        .or_default()
        .insert("F00".into(), "hello".into());
    let ours = c.to_yaml();
    let go = String::from_utf8(go_roundtrip("config", ours.as_bytes())).unwrap();
    // Go decoded every value as the same string...
    let back: SkillConfig = serde_norway::from_str(&go).unwrap();
    for (i, v) in tricky.iter().enumerate() {
        assert_eq!(
            back.get("s", &format!("F{i:02}")),
            Some(*v),
            "value {v:?} changed through Go"
        );
    }
    // ...and writes exactly the bytes omac wrote.
    assert_eq!(go, ours);
}

#[test]
fn go_and_omac_read_the_fixture_omac_yaml_alike() {
    let fixture = here("tests/fixtures/echo-skill/omac.yaml");
    let out = Command::new(gocompat())
        .arg("meta")
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let go: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = omac_skills::load(fixture.parent().unwrap()).unwrap().meta;
    let sc = ours.sidecar.as_ref().unwrap();
    assert_eq!(go["Version"], ours.version.as_str());
    assert_eq!(go["Sidecar"]["Command"], serde_json::json!(sc.command));
    assert_eq!(
        go["Sidecar"]["Secrets"][0]["Required"],
        serde_json::json!(sc.secrets[0].required)
    );
    for (i, f) in sc.config.iter().enumerate() {
        assert_eq!(
            go["Sidecar"]["Config"][i]["Default"],
            f.default.as_str(),
            "{}",
            f.name
        );
        assert_eq!(
            go["Sidecar"]["Config"][i]["Required"],
            serde_json::json!(f.required),
            "{}",
            f.name
        );
        assert_eq!(
            go["Sidecar"]["Config"][i]["Choices"],
            serde_json::json!(if f.choices.is_empty() {
                None
            } else {
                Some(&f.choices)
            })
        );
    }
    assert_eq!(go["Sidecar"]["Health"]["TimeoutMS"], 60000);
    assert_eq!(go["Sidecar"]["InstallScripts"]["linux"], "install/linux.sh");
}
