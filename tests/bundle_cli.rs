//! The command line: help, version, completions, misuse, bad profiles, and the reviewer's
//! commands (explain, diff, verify) with their exit codes.

mod common;

use std::path::{Path, PathBuf};

use common::{omac, run, schema_dir, show};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Fixture {
    _t: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    let home = root.join("home");
    let work = root.join("work");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(work.join(".omac/profiles")).unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "key").unwrap();
    Fixture {
        _t: t,
        root,
        home,
        work,
    }
}

impl Fixture {
    fn omac(&self) -> std::process::Command {
        let mut c = omac(&self.home);
        c.current_dir(&self.work);
        c
    }

    fn create(&self, out: &str, args: &[&str]) -> PathBuf {
        let dir = self.root.join(out);
        let o = run(self
            .omac()
            .args(["bundle", "create", "--out"])
            .arg(&dir)
            .args(args));
        assert!(o.status.success(), "{}", show(&o));
        dir
    }
}

#[test]
fn help_lists_every_command_on_one_line() {
    let f = fixture();
    let o = run(f.omac().arg("--help"));
    assert!(o.status.success());
    let text = stdout(&o);
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    for name in ["bundle", "version", "completions", "help"] {
        let line = commands
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
        assert!(
            line.split_whitespace().count() > 1,
            "{name} has no description on its line"
        );
    }
    // One line each: every line of the list starts with a command name.
    assert!(
        commands
            .iter()
            .all(|l| l.starts_with("  ") && !l.starts_with("    ")),
        "{text}"
    );
    let o = run(f.omac().args(["bundle", "--help"]));
    let text = stdout(&o);
    for name in ["create", "explain", "diff", "verify"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "bundle {name} missing:\n{text}"
        );
    }
}

#[test]
fn version_and_completions() {
    let f = fixture();
    let o = run(f.omac().arg("version"));
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("omac {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run(f.omac().arg("--version"));
    assert!(o.status.success());
    assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")));
    let o = run(f.omac().args(["completions", "bash"]));
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    assert!(
        text.contains("_omac()") && text.contains("complete -F"),
        "{text}"
    );
    assert!(text.contains("explain") && text.contains("--schema-dir"));
    let o = run(f.omac().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn misuse_exits_2_with_the_choices() {
    let f = fixture();
    let out = f.root.join("never");
    let o = run(f
        .omac()
        .args(["bundle", "create", "--harness", "vim", "--out"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let e = stderr(&o);
    assert!(
        e.contains("unknown harness \"vim\"")
            && e.contains("opencode (oc)")
            && e.contains("claude-code (claude, cc)")
            && e.contains("codex (cx)"),
        "{e}"
    );
    assert!(!out.exists());
    for args in [
        &["frobnicate"][..],
        &["bundle", "create", "--nope"][..],
        &[][..],
    ] {
        let o = run(f.omac().args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
    }
}

/// Writes `text` as profile `name` and returns its path.
fn profile(f: &Fixture, name: &str, text: &str) -> PathBuf {
    let p = f.root.join(format!("{name}.json"));
    std::fs::write(&p, text).unwrap();
    p
}

fn refused(f: &Fixture, spec: &str) -> String {
    let out = f.root.join("refused-out");
    let o = run(f
        .omac()
        .args(["bundle", "create", "--profile", spec, "--out"])
        .arg(&out)
        .args(["--", "/bin/true"]));
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(!out.exists(), "a bundle was written for a bad profile");
    stderr(&o)
}

#[test]
fn bad_profiles_exit_3_with_file_path_position_and_fix() {
    let f = fixture();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown-field",
            "{\n  \"network\": {\n    \"mdoe\": \"open\"\n  }\n}\n",
            &[
                ":3:",
                "network.mdoe",
                "unknown field `mdoe`",
                "fix: remove `mdoe`",
                "`mode`",
            ],
        ),
        (
            "wrong-type",
            "{\n  \"network\": {\"listen_port\": \"4097\"}\n}\n",
            &[
                ":2:",
                "network.listen_port",
                "invalid type",
                "fix: write a sequence",
            ],
        ),
        (
            "port",
            "{\"network\": {\"listen_port\": [80,\n 70000]}}",
            &[
                ":2:2:",
                "network.listen_port[1]",
                "port 70000 is out of range",
                "fix: write a port between 1 and 65535",
            ],
        ),
        (
            "glob",
            "{\"filesystem\": {\n  \"deny\": [\".env\", \"[unclosed\"]}}",
            &[
                ":2:20:",
                "filesystem.deny[1]",
                "invalid glob",
                "fix: write a basename pattern",
            ],
        ),
        (
            "relative",
            "{\"filesystem\": {\"read\": [\"relative/dir\"]}}",
            &[":1:", "filesystem.read[0]", "relative", "fix:"],
        ),
        (
            "parent",
            "{\n \"extends\": \"nope\"\n}\n",
            &[
                ":2:13:",
                "extends",
                "cannot extend \"nope\"",
                "fix: extend an existing profile",
            ],
        ),
    ];
    for (name, text, wants) in cases {
        let p = profile(&f, name, text);
        let e = refused(&f, p.to_str().unwrap());
        assert!(
            e.contains(&p.display().to_string()),
            "{name}: no file in {e}"
        );
        assert_eq!(
            e.matches("fix:").count(),
            1,
            "{name}: said more than once:\n{e}"
        );
        for w in *wants {
            assert!(e.contains(w), "{name}: {w:?} missing from:\n{e}");
        }
    }
    // A cycle through two files names both.
    let a = profile(&f, "cycle-a", "{\"extends\": \"./cycle-b.json\"}");
    let b = profile(&f, "cycle-b", "{\"extends\": \"./cycle-a.json\"}");
    let e = refused(&f, a.to_str().unwrap());
    assert!(
        e.contains("cycle") && e.contains("fix: break the cycle"),
        "{e}"
    );
    assert!(
        e.contains(&a.display().to_string()) && e.contains(&b.display().to_string()),
        "{e}"
    );
    // A bad profile found by name in the workdir layer names its file.
    let layered = f.work.join(".omac/profiles/team.json");
    std::fs::write(
        &layered,
        "{\"extends\": \"default\", \"workdir\": {\"access\": \"all\"}}",
    )
    .unwrap();
    let e = refused(&f, "team");
    assert!(
        e.contains(&layered.display().to_string())
            && e.contains("workdir.access")
            && e.contains("fix:"),
        "{e}"
    );
    // An unknown name lists the known ones.
    let out = f.root.join("x");
    let o = run(f
        .omac()
        .args(["bundle", "create", "-p", "nosuch", "--out"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        stderr(&o).contains("ci, default, open, strict, team"),
        "{}",
        show(&o)
    );
}

#[test]
fn explain_says_what_the_bundle_allows() {
    let f = fixture();
    let b = f.create("b", &["--profile", "strict", "--", "/bin/sh"]);
    let o = run(f.omac().args(["bundle", "explain"]).arg(&b));
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    for w in [
        "profile \"strict\"",
        "Read and write: ",
        &f.work.display().to_string(),
        "Mode blocked: no network at all",
        "Own network namespace",
        "ptrace: ptrace and process_vm_readv/writev",
        "namespaces: creating or joining namespaces",
        "Never passed: BASH_ENV",
        "no_new_privs: yes",
        "Required: landlock-fs",
        "Landlock: ABI 2 or newer (required)",
        "Scratch",
        &format!("{} ($HOME", f.home.display()),
    ] {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
    let o = run(f.omac().args(["bundle", "explain", "--json"]).arg(&b));
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "bundle",
            "enforcement",
            "environment",
            "filesystem",
            "format",
            "isolation",
            "network",
            "notes",
            "skills",
            "syscalls"
        ]
    );
    assert_eq!(v["format"], 1);
    assert_eq!(v["network"]["namespace"], "own");
    assert_eq!(v["network"]["policy"]["mode"], "blocked");
    assert_eq!(v["bundle"]["kind"], "omac");
    let rw: Vec<&str> = v["filesystem"]["readWrite"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["path"].as_str().unwrap())
        .collect();
    assert_eq!(rw, [f.work.to_str().unwrap()]);
    let groups: Vec<&str> = v["syscalls"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&"ptrace") && groups.contains(&"io_uring"),
        "{groups:?}"
    );
}

#[test]
fn diff_exits_0_when_equal_and_1_when_wider() {
    let f = fixture();
    let a = f.create("a", &["--", "/bin/sh"]);
    let a2 = f.create("a2", &["--", "/bin/sh"]);
    let strict = f.create("s", &["--profile", "strict", "--", "/bin/sh"]);
    let o = run(f.omac().args(["bundle", "diff"]).arg(&a).arg(&a2));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("allow the same"));
    let o = run(f.omac().args(["bundle", "diff"]).arg(&strict).arg(&a));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = stdout(&o);
    for w in [
        "network: network mode filtered instead of blocked",
        "network: allows the domain api.anthropic.com",
        "syscalls: no longer refuses ptrace (group ptrace)",
    ] {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
    let o = run(f
        .omac()
        .args(["bundle", "diff", "--json"])
        .arg(&strict)
        .arg(&a));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["bAllows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["aspect"] == "not-refused" && c["subject"] == "ptrace"));
    // The reverse says what strict takes away.
    let o = run(f
        .omac()
        .args(["bundle", "diff", "--json"])
        .arg(&a)
        .arg(&strict));
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bAllows"], w["aAllows"]);
    // A bad bundle is exit 3, not "different".
    let o = run(f
        .omac()
        .args(["bundle", "diff"])
        .arg(&a)
        .arg(f.root.join("missing")));
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(stderr(&o).contains("no config.json here"));
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn verify_passes_good_bundles_and_names_each_problem() {
    let f = fixture();
    let schema = schema_dir();
    let good = f.create("good", &["--", "/bin/sh"]);
    let mut c = f.omac();
    c.args(["bundle", "verify"]).arg(&good);
    match &schema {
        Some(d) => {
            c.arg("--schema-dir").arg(d);
        }
        None => {
            c.env_remove("OMAC_OCI_SCHEMA_DIR");
        }
    }
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = stdout(&o);
    assert!(
        text.contains("[ok]   omac.json: its digest sha256:"),
        "{text}"
    );
    assert!(
        text.contains("[ok]   skill layers: none in this bundle"),
        "{text}"
    );
    match &schema {
        Some(_) => assert!(
            text.contains("[ok]   schema: config.json is valid"),
            "{text}"
        ),
        None => assert!(text.contains("[skip] schema: NOT CHECKED"), "{text}"),
    }
    // Without a schema directory the check says plainly that it did not run.
    let o = run(f.omac().args(["bundle", "verify"]).arg(&good));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        stdout(&o).contains("[skip] schema: NOT CHECKED"),
        "{}",
        show(&o)
    );
    // The env variable works like the flag.
    if let Some(d) = &schema {
        let o = run(f
            .omac()
            .env("OMAC_OCI_SCHEMA_DIR", d)
            .args(["bundle", "verify"])
            .arg(&good));
        assert!(stdout(&o).contains("[ok]   schema:"), "{}", show(&o));
    }

    // omac.json changed alone.
    let tampered = f.create("tampered", &["--", "/bin/sh"]);
    let ext = tampered.join("omac.json");
    let text = std::fs::read_to_string(&ext)
        .unwrap()
        .replace("\"blocked\": [", "\"blocked\": [\n    \"X\",");
    std::fs::write(&ext, text).unwrap();
    let o = run(f.omac().args(["bundle", "verify"]).arg(&tampered));
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        stdout(&o).contains("[fail] omac.json")
            && stdout(&o).contains("does not match the annotation")
    );
    for cmd in ["explain", "diff"] {
        let mut c = f.omac();
        c.args(["bundle", cmd]).arg(&tampered);
        if cmd == "diff" {
            c.arg(&good);
        }
        let o = run(&mut c);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {}", show(&o));
    }

    // Two skill layers of one name, with the digest annotation made to match: every
    // command that reads the bundle refuses it by field. The control gives the second layer
    // another name and the same bundle loads.
    for (second, refused) in [("echo", true), ("other", false)] {
        let dir = f.create(&format!("dup-{second}"), &["--", "/bin/sh"]);
        let ext_path = dir.join("omac.json");
        let mut ext: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ext_path).unwrap()).unwrap();
        let layer = |name: &str, hex: char| {
            serde_json::json!({"name": name, "digest": format!("sha256:{}", hex.to_string().repeat(64)),
                               "source": format!("/skills/{name}")})
        };
        ext["skills"] = serde_json::json!([layer("echo", 'a'), layer(second, 'b')]);
        let text = serde_json::to_vec_pretty(&ext).unwrap();
        std::fs::write(&ext_path, &text).unwrap();
        edit_config(&dir, |v| {
            v["annotations"][omac_bundle::ext::ANNOTATION] =
                serde_json::json!(omac_bundle::render::digest(&text));
        });
        for cmd in ["explain", "verify", "diff"] {
            let mut c = f.omac();
            c.args(["bundle", cmd]).arg(&dir);
            if cmd == "diff" {
                c.arg(&dir);
            }
            let o = run(&mut c);
            let said = format!("{}{}", stdout(&o), stderr(&o));
            let named = said.contains("skills[].name: \"echo\" is given twice");
            if refused {
                assert_eq!(o.status.code(), Some(3), "{cmd}: {}", show(&o));
                assert!(named, "{cmd}: {}", show(&o));
            } else {
                assert!(!named, "{cmd}: {}", show(&o));
                if cmd != "verify" {
                    // (verify fails on the made-up layers' sources; that is not this check.)
                    assert_eq!(o.status.code(), Some(0), "{cmd}: {}", show(&o));
                }
            }
        }
    }

    // What the schema cannot see.
    let bad = f.create("bad", &["--", "/bin/sh"]);
    edit_config(&bad, |v| {
        v["process"]["capabilities"]["ambient"] = serde_json::json!(["CAP_KILL"]);
        v["process"]["user"]["uid"] = serde_json::json!(4242);
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({"destination": "/proc/sys", "type": "bind", "source": "/tmp", "options": ["bind"]}));
        mounts.push(
            serde_json::json!({"destination": "relative/x", "type": "tmpfs", "source": "tmpfs"}),
        );
        mounts.push(serde_json::json!({"destination": "/", "type": "tmpfs", "source": "tmpfs"}));
        v["linux"]["maskedPaths"] = serde_json::json!(["/proc/kcore"]);
    });
    let o = run(f.omac().args(["bundle", "verify"]).arg(&bad));
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let text = stdout(&o);
    for w in [
        "[fail] capabilities",
        "ambient CAP_KILL is not both permitted and inheritable",
        "[fail] ids",
        "process.user.uid 4242 is not mapped",
        "[fail] mounts",
        "puts /proc/sys under /proc",
        "\"relative/x\" is not a clean absolute path",
        "is hidden by the later mounts[",
        "[fail] consistency",
        "is not in linux.maskedPaths",
        "capabilities CAP_KILL are kept",
    ] {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }

    // A plain OCI bundle verifies on config.json alone.
    let plain = f.create("plain", &["--", "/bin/sh"]);
    std::fs::remove_file(plain.join("omac.json")).unwrap();
    edit_config(&plain, |v| {
        v["annotations"].as_object_mut().unwrap().clear();
    });
    let o = run(f.omac().args(["bundle", "verify"]).arg(&plain));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("[skip] omac.json: no omac.json"));
    let o = run(f.omac().args(["bundle", "explain"]).arg(&plain));
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("plain OCI 1.1.0"), "{}", show(&o));
}
