//! `omac register|deregister|list|config|skills` end to end, with the real binary, the real
//! kernel keyring (OMAC_KEYRING_BACKEND=keyutils) and files in a private home.

mod skillkit;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use skillkit::{expect, files_containing, text, unique, World};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Removes a skill's keychain items (the kernel keyring outlives the test).
fn purge(w: &World, name: &str) {
    let _ = w.run(&["deregister", name, "--purge-secrets", "--purge-defaults"]);
}

#[test]
fn register_without_a_terminal_names_the_missing_secret_and_how_to_give_it() {
    let w = World::new();
    let name = unique("need");
    let dir = w.skill(&name);
    // Make the secret required.
    let y = std::fs::read_to_string(dir.join("omac.yaml"))
        .unwrap()
        .replace("required: no", "required: yes");
    std::fs::write(dir.join("omac.yaml"), y).unwrap();
    let o = w.run(&["register", &name]);
    expect(&o, 9);
    let e = stderr(&o);
    for want in [
        "ECHO_API_KEY",
        "OMAC_SECRET_ECHO_API_KEY",
        "--secrets-from",
        &format!("omac secrets set {name} ECHO_API_KEY"),
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    assert!(
        !w.work.join(".opencode/sidecar.json").exists(),
        "nothing registered"
    );
}

#[test]
fn register_stores_secrets_fields_and_the_layer_and_shows_the_install_script() {
    let mut w = World::new();
    let name = unique("reg");
    let dir = w.skill(&name);
    // If the install script ever ran, it would leave this marker.
    let marker = w.tmp.path().join("install-ran");
    std::fs::write(
        dir.join("install/linux.sh"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    let secrets = w.tmp.path().join("secrets.env");
    std::fs::write(&secrets, "# comment\nECHO_API_KEY=from-file-value\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    w.var("OMAC_CONFIG_ECHO_MODE", "strict");
    let o = w.run(&[
        "register",
        &name,
        "--secrets-from",
        secrets.to_str().unwrap(),
    ]);
    expect(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("bash {}", dir.join("install/linux.sh").display())),
        "{out}"
    );
    assert!(!marker.exists(), "the install script was run");

    let reg = w.registry();
    let e = &reg["registered"][0];
    assert_eq!(e["name"], name.as_str());
    assert_eq!(e["harness"], "opencode");
    assert_eq!(e["skill_dir"], format!(".opencode/skills/{name}"));
    assert_eq!(e["declared_secret_names"][0], "ECHO_API_KEY");
    let digest = e["layer_digest"].as_str().unwrap().to_string();
    let layer = w
        .home
        .join(".local/share/omac/layers/sha256")
        .join(&digest[7..]);
    assert!(layer.join("omac.yaml").is_file());
    let m = std::fs::metadata(&layer).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o555);

    let cfg = std::fs::read_to_string(w.work.join(".opencode/skill-config.yaml")).unwrap();
    assert!(cfg.contains("ECHO_MODE: strict"), "{cfg}");
    assert!(cfg.contains("ECHO_MAX_TICK: \"100\""), "{cfg}");

    let o = w.run(&["config", "show", &name, "--json"]);
    expect(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // printf %s from-file-value | sha256sum | cut -c1-12
    let want = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            &hex::encode(sha2::Sha256::digest(b"from-file-value"))[..12]
        )
    };
    assert_eq!(v["secrets"][0]["fingerprint"], want.as_str());
    let mode = v["config"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "ECHO_MODE")
        .unwrap();
    assert_eq!(
        (mode["value"].as_str(), mode["source"].as_str()),
        (Some("strict"), Some("stored"))
    );
    let o = w.run(&["config", "get", &name, "ECHO_MAX_TICK"]);
    expect(&o, 0);
    assert_eq!(stdout(&o), "100\n");
    expect(&w.run(&["config", "get", &name, "NOPE"]), 3);

    // The secret is nowhere on disk: not in the registry, the config, the store, the home.
    assert_eq!(
        files_containing(&w.work, b"from-file-value"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_containing(&w.home, b"from-file-value"),
        Vec::<std::path::PathBuf>::new()
    );
    purge(&w, &name);
}

#[test]
fn a_changed_skill_needs_force_and_gets_a_new_layer() {
    let w = World::new();
    let name = unique("chg");
    let dir = w.skill(&name);
    expect(&w.run(&["register", &name, "--no-secrets"]), 0);
    let first = w.registry()["registered"][0]["layer_digest"].clone();
    std::fs::write(dir.join("scripts/sidecar.py"), "print('changed')\n").unwrap();

    let o = w.run(&["list", "--json"]);
    expect(&o, 0);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["layer"], "changed");

    let o = w.run(&["register", &name, "--no-secrets"]);
    expect(&o, 5);
    assert!(stderr(&o).contains("--force"), "{}", text(&o));
    assert_eq!(w.registry()["registered"][0]["layer_digest"], first);
    let o = w.run(&["register", &name, "--no-secrets", "--force"]);
    expect(&o, 0);
    assert_ne!(w.registry()["registered"][0]["layer_digest"], first);
}

#[test]
fn refusals_have_their_exit_codes() {
    let w = World::new();
    expect(&w.run(&["register", "nowhere"]), 4);

    let bad = unique("bad");
    let dir = w.skill(&bad);
    std::fs::write(
        dir.join("omac.yaml"),
        format!("name: {bad}\nsidecar:\n  command: [x]\n  mount: NO\n"),
    )
    .unwrap();
    let o = w.run(&["register", &bad]);
    expect(&o, 3);
    assert!(stderr(&o).contains("sidecar.mount"), "{}", text(&o));

    let pure = unique("pure");
    let dir = w.skill(&pure);
    std::fs::write(dir.join("omac.yaml"), format!("name: {pure}\n")).unwrap();
    expect(&w.run(&["register", &pure]), 2);

    // The same name under two harnesses: ask which.
    let both = unique("both");
    w.skill(&both);
    w.skill_at(&w.work.join(".claude/skills"), &both);
    let o = w.run(&["register", &both, "--no-secrets"]);
    expect(&o, 2);
    assert!(stderr(&o).contains("--harness"), "{}", text(&o));
    let o = w.run(&["register", &both, "--no-secrets", "--harness", "claude"]);
    expect(&o, 0);
    assert_eq!(w.registry()["registered"][0]["harness"], "claude-code");
    expect(&w.run(&["register", &both, "--harness", "vim"]), 2);

    // A sidecar program inside a folder the layer leaves out.
    let built = unique("built");
    let dir = w.skill(&built);
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    std::fs::write(dir.join("dist/server"), "#!/bin/sh\n").unwrap();
    std::fs::write(
        dir.join("omac.yaml"),
        format!("name: {built}\nsidecar:\n  command: [./dist/server]\n"),
    )
    .unwrap();
    let o = w.run(&["register", &built]);
    expect(&o, 3);
    assert!(stderr(&o).contains("dist/"), "{}", text(&o));

    expect(
        &w.run(&["register", "x", "--no-secrets", "--secrets-from", "f"]),
        2,
    );
    expect(&w.run(&["config", "show", "nothing-here"]), 4);
    expect(&w.run(&["secrets", "list", "nothing-here"]), 4);
}

#[test]
fn global_skills_register_globally_with_absolute_paths() {
    let w = World::new();
    let name = unique("glob");
    let dir = w.skill_at(&w.home.join(".config/opencode/skills"), &name);
    let o = w.run(&["register", &name, "--no-secrets"]);
    expect(&o, 0);
    assert!(stdout(&o).contains("global"), "{}", text(&o));
    let reg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.home.join(".config/omac/sidecar.json")).unwrap())
            .unwrap();
    assert_eq!(reg["registered"][0]["skill_dir"], dir.display().to_string());
    assert!(!w.work.join(".opencode/sidecar.json").exists());
    // With a workdir copy of the same name, plain `register` takes the workdir one (the one
    // sessions use) and says so; --global still picks the global one.
    w.skill(&name);
    let o = w.run(&["register", &name, "--no-secrets"]);
    expect(&o, 0);
    assert!(stderr(&o).contains("--global"), "{}", text(&o));
    assert_eq!(
        w.registry()["registered"][0]["skill_dir"],
        format!(".opencode/skills/{name}")
    );
    expect(&w.run(&["register", &name, "--no-secrets", "--global"]), 0);
}

#[test]
fn deregister_keeps_or_purges_and_gc_frees_the_layer() {
    let mut w = World::new();
    let name = unique("dereg");
    w.skill(&name);
    w.var("OMAC_SECRET_ECHO_API_KEY", "dereg-secret-1");
    expect(&w.run(&["register", &name]), 0);
    w.unvar("OMAC_SECRET_ECHO_API_KEY");
    let digest = w.registry()["registered"][0]["layer_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer = w
        .home
        .join(".local/share/omac/layers/sha256")
        .join(&digest[7..]);

    let o = w.run(&["deregister", &name]);
    expect(&o, 0);
    assert!(stdout(&o).contains("kept 1 secret"), "{}", text(&o));
    assert!(layer.exists(), "the layer stays until gc");
    // Registered again, the secret is still in the keychain.
    let o = w.run(&["register", &name]);
    expect(&o, 0);
    assert!(
        stderr(&o).contains("already in the keychain"),
        "{}",
        text(&o)
    );

    let o = w.run(&[
        "deregister",
        &name,
        "--purge-secrets",
        "--purge-fields",
        "--purge-defaults",
    ]);
    expect(&o, 0);
    assert!(stdout(&o).contains("deleted 1 secret"), "{}", text(&o));
    let cfg = std::fs::read_to_string(w.work.join(".opencode/skill-config.yaml")).unwrap();
    assert!(!cfg.contains(&name), "{cfg}");

    let o = w.run(&["skills", "gc", "--dry-run"]);
    expect(&o, 0);
    assert!(
        stdout(&o).contains(&digest) && layer.exists(),
        "{}",
        text(&o)
    );
    let o = w.run(&["skills", "gc"]);
    expect(&o, 0);
    assert!(!layer.exists(), "{}", text(&o));
}

#[test]
fn an_unregistered_skill_dir_is_deleted_only_when_confirmed() {
    let w = World::new();
    let name = unique("loose");
    let dir = w.skill(&name);
    let o = w.run(&["deregister", &name]);
    expect(&o, 0);
    assert!(stdout(&o).contains("--yes") && dir.exists(), "{}", text(&o));
    let o = w.run(&["deregister", &name, "--yes"]);
    expect(&o, 0);
    assert!(!dir.exists(), "{}", text(&o));
    let o = w.run(&["deregister", &name]);
    expect(&o, 0);
    assert!(stdout(&o).contains("[noop]"));
}

#[test]
fn prune_drops_registrations_whose_directory_is_gone() {
    let w = World::new();
    let (a, b) = (unique("pa"), unique("pb"));
    w.skill(&a);
    let gone = w.skill(&b);
    expect(&w.run(&["register", &a, "--no-secrets"]), 0);
    expect(&w.run(&["register", &b, "--no-secrets"]), 0);
    std::fs::remove_dir_all(&gone).unwrap();
    let o = w.run(&["list"]);
    expect(&o, 0);
    assert!(
        stderr(&o).contains(&b) && stderr(&o).contains("stale"),
        "{}",
        text(&o)
    );
    let o = w.run(&["deregister", "--prune"]);
    expect(&o, 0);
    let names: Vec<String> = w.registry()["registered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![a]);
}

#[test]
fn concurrent_registers_lose_no_entry() {
    let w = World::new();
    let names: Vec<String> = (0..6).map(|i| unique(&format!("con{i}"))).collect();
    for n in &names {
        w.skill(n);
    }
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            w.cmd(&["register", n, "--no-secrets"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        expect(&c.wait_with_output().unwrap(), 0);
    }
    let reg = w.registry();
    let mut got: Vec<&str> = reg["registered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    got.sort();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want);
    let cfg = std::fs::read_to_string(w.work.join(".opencode/skill-config.yaml")).unwrap();
    for n in &names {
        assert!(
            cfg.contains(n.as_str()),
            "{n} lost from skill-config.yaml:\n{cfg}"
        );
    }
}

#[test]
fn gc_from_one_workdir_keeps_another_workdirs_layers() {
    let w = World::new();
    let name = unique("other");
    w.skill(&name);
    expect(&w.run(&["register", &name, "--no-secrets"]), 0);
    let digest = w.registry()["registered"][0]["layer_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let elsewhere = w.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = w.run(&["--workdir", elsewhere.to_str().unwrap(), "skills", "gc"]);
    expect(&o, 0);
    assert!(
        w.home
            .join(".local/share/omac/layers/sha256")
            .join(&digest[7..])
            .exists(),
        "{}",
        text(&o)
    );
}

#[test]
fn digest_command_prints_the_layer_digest() {
    let w = World::new();
    let o = w.run(&["skills", "digest", skillkit::fixture().to_str().unwrap()]);
    expect(&o, 0);
    let d = stdout(&o);
    assert!(d.starts_with("sha256:") && d.trim().len() == 71, "{d}");
}

#[test]
fn secret_sources_are_pattern_checked_and_keychain_failures_exit_8() {
    let mut w = World::new();
    let name = unique("pat");
    w.skill(&name);
    // The fixture's pattern is ^[A-Za-z0-9_-]{3,}$.
    w.var("OMAC_SECRET_ECHO_API_KEY", "x!");
    let o = w.run(&["register", &name]);
    expect(&o, 9);
    assert!(stderr(&o).contains("does not match"), "{}", text(&o));
    let file = w.tmp.path().join("s.env");
    std::fs::write(&file, "ECHO_API_KEY=no good\n").unwrap();
    w.unvar("OMAC_SECRET_ECHO_API_KEY");
    expect(
        &w.run(&["register", &name, "--secrets-from", file.to_str().unwrap()]),
        9,
    );
    std::fs::write(&file, "not a pair\n").unwrap();
    expect(
        &w.run(&["register", &name, "--secrets-from", file.to_str().unwrap()]),
        3,
    );
    // No usable keychain: 8, and nothing registered.
    w.var("OMAC_KEYRING_BACKEND", "secret-service");
    w.var("OMAC_SECRET_ECHO_API_KEY", "good-value");
    let o = w.run(&["register", &name]);
    expect(&o, 8);
    assert!(!w.work.join(".opencode/sidecar.json").exists());
}

#[test]
fn reprompting_without_a_terminal_keeps_what_is_stored() {
    let mut w = World::new();
    let name = unique("keep");
    w.skill(&name);
    w.var("OMAC_SECRET_ECHO_API_KEY", "kept-value");
    expect(&w.run(&["register", &name]), 0);
    w.unvar("OMAC_SECRET_ECHO_API_KEY");
    let o = w.run(&["register", &name, "--reprompt-secrets", "--reprompt-fields"]);
    expect(&o, 0);
    assert!(stderr(&o).contains("[keep] ECHO_API_KEY"), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&w.run(&["config", "show", &name, "--json"]).stdout).unwrap();
    assert_ne!(v["secrets"][0]["fingerprint"], "<missing>");
    purge(&w, &name);
}
