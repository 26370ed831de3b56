//! The registry files keep the Go omac's formats, and concurrent writers never lose entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omac_skills::registry::{self, Entry, Registry};
use omac_skills::skill_config::{self, SkillConfig};
use omac_skills::{Env, Scope};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn env_in(dir: &Path) -> Env {
    Env {
        workdir: dir.join("work"),
        home: Some(dir.join("home")),
        xdg_config_home: None,
        xdg_data_home: None,
    }
}

#[test]
fn a_go_written_registry_is_rewritten_byte_for_byte() {
    let path = golden("go-sidecar.json");
    let original = std::fs::read(&path).unwrap();
    let mut reg = Registry::load(&path).unwrap();
    assert_eq!(reg.registered.len(), 3);
    assert_eq!(
        reg.registered[0].declared_secret_names,
        vec!["ECHO_API_KEY"]
    );
    assert_eq!(reg.registered[1].harness, "", "legacy entry");
    assert_eq!(reg.registered[1].registered_at, "2026-01-02T03:04:05+02:00");
    assert_eq!(
        String::from_utf8(reg.to_bytes()).unwrap(),
        String::from_utf8(original).unwrap()
    );
}

#[test]
fn omac_entries_add_only_fields_the_go_decoder_ignores() {
    let mut reg = Registry::default();
    reg.upsert(Entry {
        name: "s".into(),
        harness: "opencode".into(),
        skill_dir: ".opencode/skills/s".into(),
        bundle_hash: "sha256:aa".into(),
        registered_at: "2026-08-20T10:11:12Z".into(),
        layer_digest: Some("sha256:bb".into()),
        ..Default::default()
    });
    let v: serde_json::Value = serde_json::from_slice(&reg.to_bytes()).unwrap();
    let e = &v["registered"][0];
    let go_fields = [
        "name",
        "harness",
        "skill_dir",
        "bundle_hash",
        "registered_at",
        "declared_secret_names",
        "skipped_secret_names",
        "skipped_config_fields",
    ];
    for (k, _) in e.as_object().unwrap() {
        assert!(
            go_fields.contains(&k.as_str()) || k == "layer_digest",
            "unexpected key {k}"
        );
    }
    assert_eq!(v["version"], 1);
    // An entry without a time is written as Go's zero time, which Go can parse.
    let mut r = Registry::default();
    r.upsert(Entry {
        name: "t".into(),
        ..Default::default()
    });
    let text = String::from_utf8(r.to_bytes()).unwrap();
    assert!(
        text.contains("\"registered_at\": \"0001-01-01T00:00:00Z\""),
        "{text}"
    );
}

#[test]
fn a_go_written_skill_config_is_rewritten_byte_for_byte() {
    let path = golden("go-skill-config.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    let c = SkillConfig::load(&path).unwrap();
    assert_eq!(c.get("echo-rest", "ECHO_MAX_TICK"), Some("100"));
    assert_eq!(c.get("other-skill", "PAIR"), Some("key: value"));
    assert_eq!(c.get("other-skill", "EMPTY"), Some(""));
    assert_eq!(c.defaults["echo-rest"]["ECHO_GREETING"], "hello world");
    assert_eq!(c.to_yaml(), original);
}

#[test]
fn hand_edited_config_values_read_as_text() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("skill-config.yaml");
    std::fs::write(&p, "version: 1\nskills:\n  s:\n    N: 100\n    B: true\n").unwrap();
    let c = SkillConfig::load(&p).unwrap();
    assert_eq!(c.get("s", "N"), Some("100"));
    assert_eq!(c.get("s", "B"), Some("true"));
    std::fs::write(&p, "version: 1\nskills: [oops\n").unwrap();
    let e = SkillConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("skill-config.yaml"), "{e}");
}

#[test]
fn concurrent_updates_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let env = Arc::new(env_in(d.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let env = env.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    registry::update(&env, Scope::Workdir, |r| {
                        r.upsert(Entry {
                            name: format!("skill-{t}-{i}"),
                            skill_dir: format!(".opencode/skills/skill-{t}-{i}"),
                            ..Default::default()
                        });
                        Ok(())
                    })
                    .unwrap();
                    skill_config::update(&env, Scope::Workdir, |c| {
                        c.set(&format!("skill-{t}"), &format!("F{i}"), &i.to_string());
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    // A reader never sees a torn file while the writers run.
    let reader = {
        let env = env.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                registry::load(&env, Scope::Workdir).unwrap();
                skill_config::load(&env, Scope::Workdir).unwrap();
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    reader.join().unwrap();
    let reg = registry::load(&env, Scope::Workdir).unwrap();
    assert_eq!(reg.registered.len(), 96);
    let names: Vec<&str> = reg.registered.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are kept sorted by name");
    let cfg = skill_config::load(&env, Scope::Workdir).unwrap();
    assert_eq!(cfg.skills.values().map(|m| m.len()).sum::<usize>(), 96);
    // Files are private, no temp files remain.
    let dir = env.workdir.join(".opencode");
    for ent in std::fs::read_dir(&dir).unwrap() {
        let ent = ent.unwrap();
        let name = ent.file_name().into_string().unwrap();
        assert!(!name.contains(".tmp-"), "leftover {name}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            ent.metadata().unwrap().permissions().mode() & 0o077,
            0,
            "{name} is private"
        );
    }
}

#[test]
fn a_failed_update_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let env = env_in(d.path());
    registry::update(&env, Scope::Global, |r| {
        r.upsert(Entry {
            name: "keep".into(),
            ..Default::default()
        });
        Ok(())
    })
    .unwrap();
    let before = std::fs::read(d.path().join("home/.config/omac/sidecar.json")).unwrap();
    let r: omac_skills::Result<()> = registry::update(&env, Scope::Global, |r| {
        r.registered.clear();
        Err(omac_skills::Error::NotFound {
            what: "x".into(),
            fix: "y".into(),
        })
    });
    assert!(r.is_err());
    let after = std::fs::read(d.path().join("home/.config/omac/sidecar.json")).unwrap();
    assert_eq!(before, after);
}

#[test]
fn merged_prefers_the_workdir_and_filters_by_harness() {
    let d = tempfile::tempdir().unwrap();
    let env = env_in(d.path());
    let entry = |name: &str, harness: &str, dir: &str| Entry {
        name: name.into(),
        harness: harness.into(),
        skill_dir: dir.into(),
        ..Default::default()
    };
    registry::update(&env, Scope::Global, |r| {
        r.upsert(entry("a", "", "/g/.config/opencode/skills/a"));
        r.upsert(entry("g", "", "/g/.config/opencode/skills/g"));
        r.upsert(entry("c", "", "/g/.claude/skills/c"));
        Ok(())
    })
    .unwrap();
    registry::update(&env, Scope::Workdir, |r| {
        r.upsert(entry("a", "opencode", ".opencode/skills/a"));
        r.upsert(entry("x", "claude-code", ".claude/skills/x"));
        Ok(())
    })
    .unwrap();
    let oc = omac_bundle::harness::find("opencode").unwrap();
    let m = registry::merged(&env, Some(oc)).unwrap();
    let got: Vec<(&str, Scope)> = m.iter().map(|r| (r.entry.name.as_str(), r.scope)).collect();
    assert_eq!(got, vec![("a", Scope::Workdir), ("g", Scope::Global)]);
    assert_eq!(m[0].dir, env.workdir.join(".opencode/skills/a"));
    assert_eq!(registry::merged(&env, None).unwrap().len(), 4);
}
