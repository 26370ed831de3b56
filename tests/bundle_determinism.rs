//! The same inputs give byte-identical bundles: twice in a row, into another output
//! directory, and from another current directory; the files are canonical JSON.

mod common;

use std::path::Path;

use common::{omac, run, show};

/// A project with `.env` files at several depths and a home with protected paths.
fn project(root: &Path) {
    for d in [
        "home/.ssh",
        "home/.aws",
        "home/.config/opencode",
        "work/a/b/c/d",
        "work/svc/api",
        "work/node_modules/pkg",
        "elsewhere",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, text) in [
        ("home/.ssh/id_rsa", "key"),
        ("home/.aws/credentials", "aws"),
        ("work/.env", "TOP=1"),
        ("work/a/.envrc", "export A=1"),
        ("work/a/b/c/d/.env", "DEEP=1"),
        ("work/svc/api/.env", "API=1"),
        ("work/node_modules/pkg/.env", "PKG=1"),
        ("work/a/b/notes.md", "not secret"),
    ] {
        std::fs::write(root.join(f), text).unwrap();
    }
}

fn create(root: &Path, cwd: &Path, out: &Path, extra: &[&str]) {
    let mut c = omac(&root.join("home"));
    c.current_dir(cwd)
        .arg("--workdir")
        .arg(root.join("work"))
        .args(["bundle", "create", "--out"])
        .arg(out)
        .args(extra);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", show(&o));
}

fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("omac.json")).unwrap(),
    )
}

#[test]
fn same_inputs_give_byte_identical_files() {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    project(&root);
    for args in [
        &["--", "/bin/sh", "-c", "echo hi"][..],
        &["--profile", "strict", "--harness", "claude"][..],
        &["--profile", "open", "--harness", "codex", "--", "/bin/true"][..],
        &[][..],
    ] {
        let a = root.join("out-a");
        let b = root.join("elsewhere/out-b");
        create(&root, &root.join("work"), &a, args);
        let first = files(&a);
        create(&root, &root.join("work"), &a, args);
        assert_eq!(
            files(&a),
            first,
            "{args:?}: a second run changed the bundle"
        );
        create(&root, &root.join("elsewhere"), &b, args);
        assert_eq!(
            files(&b),
            first,
            "{args:?}: another --out or cwd changed the bundle"
        );
        let rootfs: Vec<_> = std::fs::read_dir(b.join("rootfs")).unwrap().collect();
        assert!(rootfs.is_empty(), "rootfs/ is not empty");
        // No temporary files are left beside the bundle.
        let names: Vec<String> = std::fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["config.json", "omac.json", "rootfs"], "{names:?}");
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}

#[test]
fn files_are_canonical_json() {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    project(&root);
    let out = root.join("out");
    create(&root, &root.join("work"), &out, &["--", "/bin/true"]);
    let (config, ext) = files(&out);
    for (name, bytes) in [("config.json", config), ("omac.json", ext)] {
        // serde_json's map is sorted: re-rendering sorts keys at every level.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut again = serde_json::to_vec_pretty(&v).unwrap();
        again.push(b'\n');
        assert_eq!(
            String::from_utf8(again).unwrap(),
            String::from_utf8(bytes).unwrap(),
            "{name} is not canonical"
        );
    }
}

#[test]
fn env_files_in_nested_directories_are_masked_in_a_stable_order() {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    project(&root);
    let out = root.join("out");
    create(&root, &root.join("work"), &out, &["--", "/bin/true"]);
    let ext: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("omac.json")).unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let w = root.join("work");
    let want: Vec<String> = [
        ".env",
        "a/.envrc",
        "a/b/c/d/.env",
        "node_modules/pkg/.env",
        "svc/api/.env",
    ]
    .iter()
    .map(|p| w.join(p).display().to_string())
    .collect();
    let got: Vec<String> = ext["protected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["rule"] == "env-file")
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    let masked: Vec<&str> = config["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in &want {
        assert!(masked.contains(&p.as_str()), "{p} is not masked");
    }
    assert!(!masked.iter().any(|m| m.ends_with("notes.md")));
    // Adding a secret changes the bundle, and nothing else does.
    std::fs::write(w.join("a/b/.env"), "NEW=1").unwrap();
    let out2 = root.join("out2");
    create(&root, &root.join("work"), &out2, &["--", "/bin/true"]);
    let (c1, e1) = files(&out);
    let (c2, e2) = files(&out2);
    assert_ne!(e1, e2);
    assert_ne!(c1, c2);
    std::fs::remove_file(w.join("a/b/.env")).unwrap();
    create(&root, &root.join("work"), &out2, &["--", "/bin/true"]);
    assert_eq!(files(&out2), (c1, e1));
}
