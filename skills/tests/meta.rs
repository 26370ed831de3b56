//! omac.yaml and SKILL.md: skills written for the Go omac load unchanged; every broken field
//! is refused with its path, the rule and a fix; unknown fields warn.

use std::path::{Path, PathBuf};

use omac_skills::meta::{self, FieldType};
use omac_skills::{skill, Error};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo-skill")
}

#[test]
fn the_fixture_loads_with_yaml_v3_semantics() {
    let s = skill::load(&fixture()).unwrap();
    assert_eq!(s.name, "echo-skill");
    assert_eq!(s.meta.version, "1.0", "a float version is read as text");
    let sc = s.meta.sidecar.as_ref().unwrap();
    assert_eq!(sc.command[3], "${SIDECAR_PORT}");
    assert_eq!(sc.mount_or("echo-skill"), "echo");
    let key = sc.secret("ECHO_API_KEY").unwrap();
    assert!(
        !key.is_required(),
        "`required: no` is a YAML 1.1 bool, as yaml.v3 reads it"
    );
    assert!(key.check("abc").is_ok());
    assert!(key.check("a").is_err());
    let tick = sc.field("ECHO_MAX_TICK").unwrap();
    assert_eq!(
        (tick.field_type(), tick.default.as_str()),
        (FieldType::Int, "100")
    );
    assert_eq!(sc.field("ECHO_VERBOSE").unwrap().default, "false");
    let h = sc.health();
    assert_eq!(
        (
            h.path.as_str(),
            h.initial_delay_ms,
            h.timeout_ms,
            h.interval_ms
        ),
        ("/status", 500, 60000, 500)
    );
    assert_eq!(sc.install_script_for("linux"), Some("install/linux.sh"));
    assert_eq!(sc.limits.as_ref().unwrap().max_body_bytes, Some(1_048_576));
    assert_eq!(s.doc.as_ref().unwrap().metadata["omac-mount"], "echo");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn health_defaults_apply_to_zero_and_absent_values() {
    let (m, _) = meta::parse(
        "name: x\nsidecar:\n  command: [x]\n  health: {initial_delay_ms: 0}\n",
        Path::new("omac.yaml"),
    )
    .unwrap();
    let h = m.sidecar.unwrap().health();
    assert_eq!(
        (
            h.path.as_str(),
            h.initial_delay_ms,
            h.timeout_ms,
            h.interval_ms
        ),
        ("/status", 200, 5000, 500)
    );
}

/// (omac.yaml text, the field the refusal must name, a word of the rule).
const BROKEN: &[(&str, &str, &str)] = &[
    ("description: no name\n", "name", "required"),
    ("name: x\nsidecar:\n  mount: x\n", "sidecar.command", "required"),
    ("name: x\nsidecar:\n  command: []\n", "sidecar.command", "required"),
    ("name: x\nsidecar:\n  command: python3 s.py\n", "sidecar.command", "a list"),
    ("name: x\nsidecar:\n  command: ['']\n", "sidecar.command[0]", "empty"),
    ("name: x\nsidecar:\n  command: [x]\n  mount: Bad_Mount\n", "sidecar.mount", "must match"),
    ("name: x\nsidecar:\n  command: [x]\n  secrets: [{name: lower}]\n", "sidecar.secrets[0].name", "environment variable"),
    ("name: x\nsidecar:\n  command: [x]\n  secrets: [{name: A, pattern: '('}]\n", "sidecar.secrets[0].pattern", "regular expression"),
    ("name: x\nsidecar:\n  command: [x]\n  secrets: [{name: A, required: maybe}]\n", "sidecar.secrets[0].required", "maybe"),
    ("name: x\nsidecar:\n  command: [x]\n  secrets: [{name: A}, {name: A}]\n", "sidecar.secrets[1].name", "both"),
    ("name: x\nsidecar:\n  command: [x]\n  secrets: [{name: A}]\n  config: [{name: A}]\n", "sidecar.config[0].name", "both"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: float}]\n", "sidecar.config[0].type", "float"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, choices: [a]}]\n", "sidecar.config[0].choices", "enum"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: enum}]\n", "sidecar.config[0].choices", "non-empty"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: enum, choices: [a], pattern: x}]\n", "sidecar.config[0].pattern", "enum"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: bool, pattern: x}]\n", "sidecar.config[0]", "bool"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: int, choices: [1]}]\n", "sidecar.config[0]", "int"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: bool, default: perhaps}]\n", "sidecar.config[0].default", "perhaps"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: int, default: 1.5}]\n", "sidecar.config[0].default", "integer"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: enum, choices: [a, b], default: c}]\n", "sidecar.config[0].default", "one of"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, pattern: '^[a-z]+$', default: ABC}]\n", "sidecar.config[0].default", "match"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A, pattern: '[z-a]'}]\n", "sidecar.config[0].pattern", "regular expression"),
    ("name: x\nsidecar:\n  command: [x]\n  env_passthrough: [bad-name]\n", "sidecar.env_passthrough[0]", "environment variable"),
    ("name: x\nsidecar:\n  command: [x]\n  config: [{name: A}]\n  env_passthrough: [A]\n", "sidecar.env_passthrough[0]", "both"),
    ("name: x\nsidecar:\n  command: [x]\n  health: {path: status}\n", "sidecar.health.path", "'/'"),
    ("name: x\nsidecar:\n  command: [x]\n  health: {timeout_ms: -1}\n", "sidecar.health.timeout_ms", "-1"),
    ("name: x\nsidecar:\n  command: [x]\n  limits: {max_body_bytes: lots}\n", "sidecar.limits.max_body_bytes", "lots"),
    ("name: x\nsidecar: [x]\n", "sidecar", "sequence"),
    ("name: x\nfoo: 'unterminated\n", "foo", "line"),
];

#[test]
fn every_rule_is_refused_with_field_rule_and_fix() {
    for (text, want_field, want_rule) in BROKEN {
        let file = Path::new("/s/x/omac.yaml");
        let r = meta::parse(text, file).and_then(|(m, _)| m.validate(file, Some("x")));
        match r {
            Err(Error::Invalid {
                file: f,
                field,
                rule,
                fix,
            }) => {
                assert_eq!(f, file);
                assert_eq!(&field, want_field, "for {text:?}: {rule}");
                assert!(
                    rule.contains(want_rule),
                    "for {text:?}: rule {rule:?} lacks {want_rule:?}"
                );
                assert!(!fix.is_empty());
            }
            other => panic!("{text:?} was not refused: {other:?}"),
        }
    }
}

#[test]
fn go_permitted_shapes_are_accepted() {
    // Overlap between a secret and a passthrough is the documented CI fallback.
    let ok = [
        "name: x\nsidecar:\n  command: [x]\n  secrets: [{name: A}]\n  env_passthrough: [A]\n",
        "name: x\nsidecar:\n  command: [server, --port, 8080]\n",
        "name: x\n",
        "name: x\nsidecar:\n  command: [x]\n  config: [{name: A, type: bool, default: yes}]\n",
    ];
    for t in ok {
        let f = Path::new("omac.yaml");
        let (m, w) = meta::parse(t, f).unwrap();
        m.validate(f, Some("x")).unwrap();
        assert!(w.is_empty(), "{t}: {w:?}");
    }
}

#[test]
fn unknown_fields_warn_with_a_suggestion() {
    let f = Path::new("omac.yaml");
    let (m, w) = meta::parse(
        "name: x\nauthr: me\nsidecar:\n  command: [x]\n  helth: {path: /s}\n  secrets: [{name: A, requird: false}]\n",
        f,
    )
    .unwrap();
    m.validate(f, Some("x")).unwrap();
    let got: Vec<(&str, bool)> = w
        .iter()
        .map(|w| (w.field.as_str(), w.message.contains("did you mean")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("authr", true),
            ("sidecar.helth", true),
            ("sidecar.secrets.0.requird", true)
        ]
    );
    assert!(w[1].message.contains("`health`"));
}

#[test]
fn advice_is_a_warning_not_a_refusal() {
    let f = Path::new("omac.yaml");
    let (m, _) = meta::parse(
        "name: other\nsidecar:\n  command: [x]\n  secrets: [{name: A, multiline: true}]\n  install_scripts: {beos: a.sh, linux: ../../x.sh}\n",
        f,
    )
    .unwrap();
    let w = m.validate(f, Some("x")).unwrap();
    let fields: Vec<&str> = w.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "name",
            "sidecar.secrets[0].multiline",
            "sidecar.install_scripts.beos",
            "sidecar.install_scripts.linux"
        ]
    );
}

#[test]
fn skill_dirs_without_omac_yaml_or_with_a_bad_skill_md() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    std::fs::create_dir(&dir).unwrap();
    assert!(matches!(skill::load(&dir), Err(Error::NotFound { .. })));
    std::fs::write(dir.join("omac.yaml"), "name: s\n").unwrap();
    let s = skill::load(&dir).unwrap();
    assert_eq!(s.warnings.len(), 1, "a missing SKILL.md is a warning");
    std::fs::write(dir.join("SKILL.md"), "---\nname: t\ndescription: d\n---\n").unwrap();
    match skill::load(&dir) {
        Err(Error::Invalid { field, file, .. }) => {
            assert_eq!(field, "name");
            assert!(file.ends_with("SKILL.md"));
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join("omac.yaml"), [0xff, 0xfe]).unwrap();
    assert!(matches!(skill::load(&dir), Err(Error::Invalid { .. })));
}
