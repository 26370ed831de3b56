//! Every config.json omac writes is valid against the official OCI runtime-spec JSON Schema
//! (from `OMAC_OCI_SCHEMA_DIR`) and loads back: for every built-in profile and harness, and
//! for a generated battery of profiles (random modes, grants, ports, domains, seccomp
//! edits, resources, devices, environment lists and workdir access).

mod common;

use std::path::{Path, PathBuf};

use common::{omac, run, schema_dir, show, Validator};
use omac_bundle::profile::Lookup;
use omac_bundle::{HostFacts, Session};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A home and a workdir with the things profiles grant and protect.
fn fixture(root: &Path) -> (PathBuf, PathBuf) {
    let home = root.join("home");
    let work = root.join("work");
    for d in [
        "home/.ssh",
        "home/.rustup/toolchains",
        "home/.config/opencode",
        "home/.claude",
        "home/.codex",
        "home/.cache",
        "home/.nvm",
        "work/src/app",
        "work/.omac",
        "grants/a/deep",
        "grants/b",
        "grants/wo",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, text) in [
        ("home/.ssh/id_ed25519", "key"),
        ("home/.gitconfig", "[user]"),
        ("home/.bashrc", "rc"),
        ("work/.env", "A=1"),
        ("work/src/app/.envrc", "B=2"),
        ("work/src/app/server.pem", "pem"),
        ("grants/a/deep/.env", "C=3"),
        ("grants/b/notes.txt", "x"),
    ] {
        std::fs::write(root.join(f), text).unwrap();
    }
    (home, work)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn every_builtin_profile_and_harness_gives_a_schema_valid_bundle() {
    let schema = schema_dir();
    let validator = schema.as_deref().map(Validator::new);
    let t = tempfile::tempdir().unwrap();
    let (home, work) = fixture(t.path());
    let mut checked = 0;
    for profile in ["default", "strict", "ci", "open"] {
        for harness in [None, Some("opencode"), Some("claude"), Some("codex")] {
            let out = t
                .path()
                .join(format!("b-{profile}-{}", harness.unwrap_or("cmd")));
            let mut c = omac(&home);
            c.current_dir(&work)
                .args(["bundle", "create", "--profile", profile, "--out"])
                .arg(&out);
            match harness {
                Some(h) => {
                    c.args(["--harness", h]);
                }
                None => {
                    c.args(["--", "/bin/sh", "-c", "echo hi"]);
                }
            }
            let o = run(&mut c);
            assert!(o.status.success(), "{profile}/{harness:?}: {}", show(&o));
            let config = read_json(&out.join("config.json"));
            if let Some(v) = &validator {
                let errors = v.errors(&config);
                assert!(errors.is_empty(), "{profile}/{harness:?}: {errors:#?}");
            }
            let loaded = omac_bundle::load(&out)
                .unwrap_or_else(|e| panic!("{profile}/{harness:?} does not load back: {e}"));
            assert_eq!(loaded.config.oci_version, "1.1.0");
            let mut verify = omac(&home);
            verify.args(["bundle", "verify"]).arg(&out);
            if let Some(d) = &schema {
                verify.arg("--schema-dir").arg(d);
            }
            let o = run(&mut verify);
            assert!(o.status.success(), "{profile}/{harness:?}: {}", show(&o));
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

#[test]
fn the_schema_check_notices_an_invalid_config() {
    let Some(dir) = schema_dir() else { return };
    let v = Validator::new(&dir);
    let t = tempfile::tempdir().unwrap();
    let (home, work) = fixture(t.path());
    let out = t.path().join("b");
    let o = run(omac(&home)
        .current_dir(&work)
        .args(["bundle", "create", "--out"])
        .arg(&out)
        .args(["--", "/bin/true"]));
    assert!(o.status.success(), "{}", show(&o));
    let good = read_json(&out.join("config.json"));
    assert!(v.errors(&good).is_empty());
    for (what, edit) in [
        (
            "namespace type",
            json!({"linux": {"namespaces": [{"type": "bogus"}]}}),
        ),
        (
            "seccomp action",
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_MAYBE"}}}),
        ),
        ("uid", json!({"process": {"user": {"uid": -1, "gid": 0}}})),
        ("mount", json!({"mounts": [{"type": "tmpfs"}]})),
    ] {
        let mut bad = good.clone();
        merge(&mut bad, &edit);
        assert!(
            !v.errors(&bad).is_empty(),
            "a broken {what} passed the schema"
        );
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A subset of `pool` (in pool order).
fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

const GRANTS: &[&str] = &[
    "%R%/grants/a",
    "%R%/grants/b",
    "%R%/grants/missing",
    "~/.cache",
    "~/.nvm",
    "$HOME/.rustup",
    "~",
    "${UNSET_VAR}/x",
    "/usr/share",
];
const DENY: &[&str] = &[
    ".env",
    "*.pem",
    "secret*",
    "~/.aws",
    "%R%/grants/b/notes.txt",
    "id_*",
];
const OVERRIDE: &[&str] = &[".env", "~/.ssh", "~/.bashrc", ".envrc"];
const DOMAINS: &[&str] = &[
    "api.anthropic.com",
    "*.github.com",
    "pypi.org:443",
    "[::1]:8080",
    "10.0.0.1",
    "Example.COM.",
];
const VARS: &[&str] = &["*", "GOPATH", "AWS_*", "LC_*", "TERM"];
const LIFT: &[&str] = &[
    "@ptrace",
    "@io_uring",
    "ptrace",
    "unshare",
    "@namespaces",
    "@personality",
];
const SDENY: &[&str] = &["@ptrace", "uname:ENOSYS", "kcmp", "@bpf", "ptrace:EACCES"];
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/fuse",
    "/dev/kvm",
    "/dev/net/tun",
    "/dev/nonexistent",
];
const LAYERS: &[&str] = &[
    "namespaces",
    "landlock-fs",
    "landlock-net",
    "seccomp",
    "cgroups",
];

fn ports(min: i64) -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec(min..=65535i64, 0..4)
}

/// A random profile, as JSON; `%R%` in paths stands for the fixture root.
fn profile() -> impl Strategy<Value = Value> {
    let fs = (
        subset(GRANTS),
        subset(GRANTS),
        subset(GRANTS),
        subset(GRANTS),
        subset(DENY),
        subset(OVERRIDE),
    )
        .prop_map(|(allow, read, write, unix, deny, over)| {
            json!({"allow": allow, "read": read, "write": write, "allow_unix_dir": unix,
                   "deny": deny, "override_deny": over})
        });
    let prompt = (
        any::<bool>(),
        0..=86400i64,
        prop_oneof![Just("deny"), Just("allow")],
    )
        .prop_map(|(e, t, u)| json!({"enabled": e, "prompt_timeout_secs": t, "on_unavailable": u}));
    let net = (
        opt(prop_oneof![Just("filtered"), Just("blocked"), Just("open")]),
        opt(prop_oneof![Just("kernel"), Just("env-only")]),
        subset(DOMAINS),
        subset(DOMAINS),
        (ports(1), ports(1), ports(0)),
        opt(prompt),
        opt(prop_oneof![Just("http://proxy.corp:3128"), Just("http://u:p@10.1.1.1/")]),
        subset(&["jvm", "node"]),
    )
        .prop_map(|(mode, enf, allow, deny, (listen, connect, open), prompt, up, inj)| {
            let mut n = json!({"allow_domain": allow, "deny_domain": deny, "listen_port": listen,
                               "allow_tcp_connect": connect, "open_port": open,
                               "proxy_injection": inj, "no_proxy": ["corp.example"]});
            if let Some(m) = mode {
                n["mode"] = json!(m);
            }
            if let Some(e) = enf {
                n["enforcement"] = json!(e);
            }
            if let Some(p) = prompt {
                n["network_prompt"] = p;
            }
            if let Some(u) = up {
                n["upstream_proxy"] = json!(u);
            }
            n
        });
    let resources = (
        opt(prop_oneof![
            Just(json!("512M")),
            Just(json!(1073741824u64)),
            Just(json!("4G"))
        ]),
        opt(1..100_000i64),
        opt(1..640u32),
        opt(1..=1_048_576i64),
    )
        .prop_map(|(m, p, c, f)| {
            let mut r = json!({});
            if let Some(m) = m {
                r["memory"] = m;
            }
            if let Some(p) = p {
                r["pids"] = json!(p);
            }
            if let Some(c) = c {
                r["cpu"] = json!(c as f64 / 10.0);
            }
            if let Some(f) = f {
                r["open_files"] = json!(f);
            }
            r
        });
    (
        opt(prop_oneof![
            Just("default"),
            Just("strict"),
            Just("ci"),
            Just("open")
        ]),
        opt(prop_oneof![
            Just("none"),
            Just("read"),
            Just("write"),
            Just("readwrite"),
            Just("")
        ]),
        fs,
        net,
        (subset(VARS), subset(VARS)),
        (subset(LIFT), subset(SDENY)),
        resources,
        subset(DEVICES),
        opt(subset(LAYERS)),
    )
        .prop_map(
            |(
                extends,
                access,
                fs,
                net,
                (allow_vars, deny_vars),
                (lift, deny),
                res,
                devices,
                req,
            )| {
                let mut p = json!({"filesystem": fs, "network": net,
                    "environment": {"allow_vars": allow_vars, "deny_vars": deny_vars},
                    "seccomp": {"lift": lift, "deny": deny}, "resources": res, "devices": devices,
                    "meta": {"name": "generated"}});
                if let Some(e) = extends {
                    p["extends"] = json!(e);
                }
                if let Some(a) = access {
                    p["workdir"] = json!({"access": a});
                }
                if let Some(r) = req {
                    p["enforcement"] = json!({"require": r});
                }
                p
            },
        )
}

/// Session extras with one skill (layer, facade route, sidecar) per (name, hex digest).
fn extras_of(skills: impl IntoIterator<Item = (String, String)>) -> omac_bundle::Extras {
    let mut e = omac_bundle::Extras::default();
    for (name, hex) in skills {
        e.skills.push(omac_bundle::ext::SkillLayer {
            name: name.clone(),
            digest: format!("sha256:{hex}"),
            source: format!("/skills/{name}"),
        });
        e.facade_mounts.push(omac_bundle::ext::FacadeMount {
            mount: name.clone(),
            skill: name.clone(),
        });
        e.sidecars.push(omac_bundle::ext::Sidecar {
            skill: name.clone(),
            mount: name.clone(),
            command: vec!["python3".into(), "server.py".into()],
            health: omac_bundle::ext::Health {
                path: "/health".into(),
                initial_delay_ms: 100,
                interval_ms: 200,
                timeout_ms: 5000,
            },
            env: vec!["LANG".into()],
            secrets: vec!["API_TOKEN".into()],
            config: vec![],
            max_body_bytes: 1 << 20,
            idle_timeout_secs: 60,
        });
    }
    e.env.push(("OMAC_SESSION".into(), "fixed".into()));
    e
}

/// The host as generate sees it, with `home` and `work` from [`fixture`].
fn host_facts(home: &Path, work: &Path) -> HostFacts {
    HostFacts {
        workdir: work.to_path_buf(),
        home: home.to_path_buf(),
        // SAFETY: getuid and getgid cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        path: "/usr/local/bin:/usr/bin:/bin".into(),
        vars: [("HOME".to_string(), home.display().to_string())].into(),
    }
}

#[test]
fn a_skill_given_twice_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    let (home, work) = fixture(&root);
    let host = host_facts(&home, &work);
    let resolved = Lookup::new(None, &work).resolve("default").unwrap();
    let hex = |c: char| c.to_string().repeat(64);
    for (second, refused) in [("t", true), ("u", false)] {
        let session = Session {
            profile: &resolved,
            harness: None,
            command: vec!["/bin/true".into()],
            host: &host,
            extras: extras_of([("t".into(), hex('a')), (second.into(), hex('b'))]),
        };
        let got = omac_bundle::generate(&session, &mut Vec::new());
        match (refused, got) {
            (true, Err(e)) => assert!(e.to_string().contains("skills[].name \"t\" twice"), "{e}"),
            (false, Ok(b)) => assert_eq!(b.ext.skills.len(), 2),
            (r, got) => panic!(
                "second skill {second}: refused {r}, got {:?}",
                got.map(|_| ())
            ),
        }
    }
}

fn extras() -> impl Strategy<Value = omac_bundle::Extras> {
    // Skill names are distinct, as the registry makes them: generate refuses a session
    // that names one skill twice (see `a_skill_given_twice_is_refused`).
    proptest::collection::btree_map("[a-z]{1,8}", "[0-9a-f]{64}", 0..3).prop_map(extras_of)
}

#[test]
fn generated_profiles_give_schema_valid_bundles_that_load_back() {
    let schema = schema_dir();
    let validator = schema.as_deref().map(Validator::new);
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    let (home, work) = fixture(&root);
    let host = host_facts(&home, &work);
    let lookup = Lookup::new(None, &work);
    let root_str = root.display().to_string();
    let counter = std::cell::Cell::new(0usize);
    let cfg = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(p in profile(), extras in extras(), harness in 0usize..4)| {
        counter.set(counter.get() + 1);
        let n = counter.get();
        let text = serde_json::to_string_pretty(&p).unwrap().replace("%R%", &root_str);
        let file = root.join(format!("p{n}.json"));
        std::fs::write(&file, &text).unwrap();
        let resolved = lookup.resolve(file.to_str().unwrap())
            .unwrap_or_else(|e| panic!("a generated profile was refused: {e}\n{text}"));
        let session = Session {
            profile: &resolved,
            harness: omac_bundle::harness::HARNESSES.get(harness),
            command: if harness == 3 { vec!["/bin/sh".into(), "-c".into(), "true".into()] } else { vec![] },
            host: &host,
            extras,
        };
        let mut warnings = Vec::new();
        let bundle = omac_bundle::generate(&session, &mut warnings)
            .unwrap_or_else(|e| panic!("generation failed: {e}\n{text}"));
        let rendered = omac_bundle::render(&bundle);
        let out = root.join(format!("out{n}"));
        omac_bundle::render::write(&out, &rendered).unwrap();
        let config: Value = serde_json::from_slice(&rendered.config).unwrap();
        if let Some(v) = &validator {
            let errors = v.errors(&config);
            prop_assert!(errors.is_empty(), "{:#?}\n{}", errors, text);
        }
        let loaded = omac_bundle::load(&out)
            .unwrap_or_else(|e| panic!("does not load back: {e}\n{text}"));
        prop_assert_eq!(&loaded.config, &{
            let mut c = bundle.config.clone();
            c.annotations.insert(omac_bundle::ext::ANNOTATION.into(),
                                 omac_bundle::render::digest(&rendered.ext));
            c
        });
        prop_assert_eq!(loaded.ext.as_ref(), Some(&bundle.ext));
        for c in omac_bundle::verify::semantics(&loaded) {
            prop_assert!(c.status != omac_bundle::verify::Status::Fail,
                         "{}: {} {:?}\n{}", c.name, c.summary, c.details, text);
        }
        // explain and diff work on everything generate makes.
        let x = omac_bundle::explain::explain(&loaded);
        prop_assert!(!omac_bundle::explain::text::render(&x).is_empty());
        prop_assert!(omac_bundle::diff::diff(&loaded, &loaded).is_empty());
        std::fs::remove_dir_all(&out).unwrap();
    });
    assert!(counter.get() >= 96);
}
