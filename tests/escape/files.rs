//! Files: protected paths by every route, writes outside the grants, masks, links.

use std::os::unix::fs::symlink;

use crate::harness::*;

fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// Reads `path` inside (must be refused) and unconfined (must find the secret).
fn read_refused(env: &Env, profile: &str, path: &str) {
    assert_safe(&env.confined(profile, &["read", path, &env.secret]));
    assert_breach(&env.unconfined(&["read", path, &env.secret]));
}

#[test]
fn ssh_key_in_home() {
    let env = Env::new();
    read_refused(&env, "default", &p(&env.home.join(".ssh/id_rsa")));
}

#[test]
fn aws_credentials_in_home() {
    let env = Env::new();
    read_refused(&env, "default", &p(&env.home.join(".aws/credentials")));
}

#[test]
fn file_outside_every_grant() {
    let env = Env::new();
    read_refused(&env, "default", &p(&env.outside.join("secret.txt")));
}

#[test]
fn env_file_in_workdir_is_masked() {
    let env = Env::new();
    read_refused(&env, "default", &p(&env.work.join(".env")));
}

#[test]
fn nested_env_file_is_masked() {
    let env = Env::new();
    read_refused(&env, "default", &p(&env.work.join("sub/.env")));
}

#[test]
fn env_file_in_strict_profile() {
    let env = Env::new();
    read_refused(&env, "strict", &p(&env.work.join(".env")));
}

#[test]
fn symlink_in_workdir_to_ssh_key() {
    let env = Env::new();
    symlink(env.home.join(".ssh/id_rsa"), env.work.join("key")).unwrap();
    read_refused(&env, "default", &p(&env.work.join("key")));
}

#[test]
fn symlink_in_workdir_to_masked_env_file() {
    let env = Env::new();
    symlink(".env", env.work.join("alias")).unwrap();
    read_refused(&env, "default", &p(&env.work.join("alias")));
}

#[test]
fn relative_symlink_climbing_out_of_the_workdir() {
    let env = Env::new();
    symlink("../home/.ssh", env.work.join("up")).unwrap();
    read_refused(&env, "default", &p(&env.work.join("up/id_rsa")));
}

#[test]
fn dotdot_from_the_root() {
    let env = Env::new();
    let path = format!("/../../..{}", env.outside.join("secret.txt").display());
    read_refused(&env, "default", &path);
}

#[test]
fn proc_self_root() {
    let env = Env::new();
    let path = format!("/proc/self/root{}", env.home.join(".ssh/id_rsa").display());
    read_refused(&env, "default", &path);
}

#[test]
fn proc_1_root() {
    let env = Env::new();
    let inside = format!("/proc/1/root{}", env.outside.join("secret.txt").display());
    assert_safe(&env.confined("default", &["read", &inside, &env.secret]));
    // Unconfined, the same route through another process's root reaches the host.
    let sleeper = Sleeper::start(&[]);
    let outside = format!(
        "/proc/{}/root{}",
        sleeper.pid(),
        env.outside.join("secret.txt").display()
    );
    assert_breach(&env.unconfined(&["read", &outside, &env.secret]));
}

#[test]
fn proc_1_cwd() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["readlink", "/proc/1/cwd"]));
    let sleeper = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["readlink", &format!("/proc/{}/cwd", sleeper.pid())]));
}

#[test]
fn proc_1_environ() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["read", "/proc/1/environ", "PATH="]));
    let sleeper = Sleeper::start(&[("OMAC_ESCAPE_SECRET", &env.secret)]);
    let path = format!("/proc/{}/environ", sleeper.pid());
    assert_breach(&env.unconfined(&["read", &path, &env.secret]));
}

#[test]
fn proc_1_exe() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["readlink", "/proc/1/exe"]));
    let sleeper = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["readlink", &format!("/proc/{}/exe", sleeper.pid())]));
}

#[test]
fn proc_1_fd() {
    let env = Env::new();
    assert_safe(&env.confined("default", &["steal-fds", "1"]));
    let sleeper = Sleeper::start(&[]);
    assert_breach(&env.unconfined(&["steal-fds", &sleeper.pid()]));
}

#[test]
fn symlink_in_workdir_to_proc_1_root() {
    let env = Env::new();
    symlink("/proc/1/root/", env.work.join("initroot")).unwrap();
    let inside = format!(
        "{}/{}",
        env.work.join("initroot").display(),
        env.outside.join("secret.txt").display()
    );
    assert_safe(&env.confined("default", &["read", &inside, &env.secret]));
    let sleeper = Sleeper::start(&[]);
    std::fs::remove_file(env.work.join("initroot")).unwrap();
    symlink(
        format!("/proc/{}/root/", sleeper.pid()),
        env.work.join("initroot"),
    )
    .unwrap();
    assert_breach(&env.unconfined(&["read", &inside, &env.secret]));
}

#[test]
fn hard_link_in_workdir_to_ssh_key() {
    let env = Env::new();
    let link = env.work.join("notes.txt");
    std::fs::hard_link(env.home.join(".ssh/id_rsa"), &link).unwrap();
    let o = env.confined("default", &["read", &p(&link), &env.secret]);
    assert_refused(&o, "hard links");
    assert_breach(&env.unconfined(&["read", &p(&link), &env.secret]));
}

#[test]
fn hard_link_in_workdir_to_masked_env_file() {
    let env = Env::new();
    let link = env.work.join("innocent.txt");
    std::fs::hard_link(env.work.join(".env"), &link).unwrap();
    let o = env.confined("default", &["read", &p(&link), &env.secret]);
    assert_refused(&o, "hard links");
    assert_breach(&env.unconfined(&["read", &p(&link), &env.secret]));
}

#[test]
fn new_hard_link_to_a_file_outside_the_view() {
    let env = Env::new();
    let src = p(&env.outside.join("secret.txt"));
    let dst = p(&env.work.join("stolen"));
    assert_safe(&env.confined("default", &["link", &src, &dst]));
    assert!(!env.work.join("stolen").exists());
    assert_breach(&env.unconfined(&["link", &src, &dst]));
}

#[test]
fn rename_an_ancestor_of_a_masked_file() {
    let env = Env::new();
    let (from, to) = (p(&env.work.join("sub")), p(&env.work.join("moved")));
    let o = env.confined("default", &["rename-read", &from, &to, ".env", &env.secret]);
    assert_safe(&o);
    // The unconfined run starts from the same layout.
    if env.work.join("moved").exists() {
        std::fs::rename(env.work.join("moved"), env.work.join("sub")).unwrap();
    }
    assert_breach(&env.unconfined(&["rename-read", &from, &to, ".env", &env.secret]));
}

#[test]
fn rename_a_masked_file() {
    let env = Env::new();
    let (from, to) = (p(&env.work.join(".env")), p(&env.work.join("env.txt")));
    assert_safe(&env.confined("default", &["rename", &from, &to]));
    assert!(env.work.join(".env").exists());
    assert_breach(&env.unconfined(&["rename", &from, &to]));
}

#[test]
fn write_a_new_file_in_home_reaches_only_a_tmpfs() {
    let env = Env::new();
    let target = env.home.join(".bashrc");
    let _ = env.confined("default", &["write", &p(&target)]);
    assert!(!target.exists(), "the sandbox wrote into the host's home");
    env.unconfined(&["write", &p(&target)]);
    assert!(target.exists());
}

#[test]
fn write_outside_every_grant() {
    let env = Env::new();
    let target = p(&env.outside.join("planted"));
    assert_safe(&env.confined("default", &["write", &target]));
    assert!(!env.outside.join("planted").exists());
    assert_breach(&env.unconfined(&["write", &target]));
}

fn read_only_grant(env: &Env) -> (String, std::path::PathBuf) {
    let ro = env.root.join("reference");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("doc.txt"), "original\n").unwrap();
    let profile = env.profile(
        "ro",
        &format!(
            r#"{{"extends": "default", "filesystem": {{"read": ["{}"]}}}}"#,
            ro.display()
        ),
    );
    (profile, ro)
}

#[test]
fn write_to_a_read_only_grant() {
    let env = Env::new();
    let (profile, ro) = read_only_grant(&env);
    let f = p(&ro.join("doc.txt"));
    assert_safe(&env.confined(&profile, &["write", &f]));
    assert_eq!(
        std::fs::read_to_string(ro.join("doc.txt")).unwrap(),
        "original\n"
    );
    assert_breach(&env.unconfined(&["write", &f]));
}

#[test]
fn truncate_a_read_only_grant() {
    let env = Env::new();
    let (profile, ro) = read_only_grant(&env);
    let f = p(&ro.join("doc.txt"));
    assert_safe(&env.confined(&profile, &["truncate", &f]));
    assert_eq!(
        std::fs::read_to_string(ro.join("doc.txt")).unwrap(),
        "original\n"
    );
    assert_breach(&env.unconfined(&["truncate", &f]));
}

#[test]
fn unlink_in_a_read_only_grant() {
    let env = Env::new();
    let (profile, ro) = read_only_grant(&env);
    let f = p(&ro.join("doc.txt"));
    assert_safe(&env.confined(&profile, &["unlink", &f]));
    assert!(ro.join("doc.txt").exists());
    assert_breach(&env.unconfined(&["unlink", &f]));
}

#[test]
fn chmod_in_a_read_only_grant() {
    let env = Env::new();
    let (profile, ro) = read_only_grant(&env);
    let f = p(&ro.join("doc.txt"));
    assert_safe(&env.confined(&profile, &["chmod", &f]));
    assert_breach(&env.unconfined(&["chmod", &f]));
}

#[test]
fn write_to_omac_control_files_in_the_workdir() {
    let env = Env::new();
    std::fs::create_dir_all(env.work.join(".omac")).unwrap();
    std::fs::write(env.work.join(".omac/profile.json"), "{}\n").unwrap();
    let f = p(&env.work.join(".omac/profile.json"));
    assert_safe(&env.confined("default", &["write", &f]));
    assert_eq!(
        std::fs::read_to_string(env.work.join(".omac/profile.json")).unwrap(),
        "{}\n"
    );
    assert_breach(&env.unconfined(&["write", &f]));
}

/// Two runs in one workdir without `.omac`: the first ends while the second runs. Its end
/// must not take away the second's cover of the control directory (a mount point removed
/// on the host is unmounted in every namespace), or the second's agent could plant a
/// profile for the next session.
#[test]
fn another_runs_end_does_not_uncover_the_control_directory() {
    let env = Env::new();
    let dir = env.work.join(".omac");
    assert!(!dir.exists());
    let with_args = |b: &std::path::Path, args: serde_json::Value| {
        let cfg = b.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        v["process"]["args"] = args;
        std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    let short = env.bundle("default", &["status", "caps"]);
    with_args(&short, serde_json::json!(["/bin/sleep", "0.3"]));
    let plant = p(&dir.join("profile.json"));
    let late = env.bundle("default", &["status", "caps"]);
    let script = format!(
        "sleep 1.5; mkdir .omac 2>/dev/null; exec {} write {plant}",
        probe().display()
    );
    with_args(&late, serde_json::json!(["/bin/sh", "-c", script]));
    let mut first = env.spawn_run(&[], &short);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let o = env.run(&late);
    let _ = first.wait();
    assert_safe(&o);
    assert!(!dir.join("profile.json").exists(), "a profile was planted");
    assert_breach(&env.unconfined(&["write", &plant]));
}

#[test]
fn symlink_swapped_into_a_granted_path_after_bundle_creation() {
    let env = Env::new();
    let cache = env.work.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let profile = env.profile(
        "cache",
        &format!(
            r#"{{"extends": "default", "filesystem": {{"allow": ["{}"]}}}}"#,
            cache.display()
        ),
    );
    let key = p(&cache.join("id_rsa"));
    let bundle = env.bundle(&profile, &["read", &key, &env.secret]);
    // A previous session's agent (it can write the workdir) swaps the directory.
    std::fs::remove_dir(&cache).unwrap();
    symlink(env.home.join(".ssh"), &cache).unwrap();
    assert_refused(&env.run(&bundle), "planted");
    assert_breach(&env.unconfined(&["read", &key, &env.secret]));
}

#[test]
fn exec_from_a_noexec_tmpfs() {
    let env = Env::new();
    let inside = env.confined(
        "default",
        &["exec-copy", "/bin/true", "/dev/shm/omac-escape-true"],
    );
    assert_safe(&inside);
    // The host's /dev/shm lets the same copy run.
    let dst = format!("/dev/shm/omac-escape-true-{}", std::process::id());
    let o = env.unconfined(&["exec-copy", "/bin/true", &dst]);
    let _ = std::fs::remove_file(&dst);
    assert_breach(&o);
}
