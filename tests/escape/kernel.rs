//! The kernel's dangerous interfaces: new namespaces (the nested-user-namespace detach
//! attack), the mount API, io_uring, foreign syscall entry points, and the other calls the
//! policy refuses. Attacks that need capabilities are proven in a user namespace, where the
//! test user holds them.

use crate::harness::*;

fn refused(args: &[&str]) {
    let env = Env::new();
    assert_safe(&env.confined("default", args));
    assert_breach(&env.unconfined(args));
}

fn refused_privileged(args: &[&str]) {
    let env = Env::new();
    assert_safe(&env.confined("default", args));
    assert_breach(&env.unconfined_userns(args));
}

#[test]
fn nested_user_namespace() {
    refused(&["userns"]);
}

#[test]
fn nested_user_namespace_through_clone() {
    refused(&["clone-userns"]);
}

#[test]
fn clone3_hides_its_flags() {
    refused(&["clone3"]);
}

#[test]
fn setns() {
    refused(&["setns"]);
}

#[test]
fn mount_a_tmpfs() {
    let env = Env::new();
    let dir = env.work.display().to_string();
    assert_safe(&env.confined("default", &["mount", &dir]));
    assert_breach(&env.unconfined_userns(&["mount", &dir]));
}

#[test]
fn unmount_a_mask() {
    let env = Env::new();
    let mask = env.work.join(".env").display().to_string();
    assert_safe(&env.confined("default", &["umount", &mask]));
    // In a user namespace of its own, the test user can unmount what it mounted there.
    let dir = env.outside.display().to_string();
    let o = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none {dir} && exec {} umount {dir}",
            probe().display()
        ))
        .output()
        .unwrap();
    assert_breach(&o);
}

#[test]
fn fsopen() {
    refused_privileged(&["fsopen"]);
}

#[test]
fn fspick() {
    refused_privileged(&["fspick"]);
}

#[test]
fn open_tree_clone() {
    refused_privileged(&["open-tree", "/"]);
}

#[test]
fn move_mount() {
    refused_privileged(&["move-mount"]);
}

#[test]
fn mount_setattr() {
    refused_privileged(&["mount-setattr"]);
}

#[test]
fn pivot_root() {
    refused_privileged(&["pivot-root"]);
}

#[test]
fn chroot() {
    refused_privileged(&["chroot", "/tmp"]);
}

#[test]
fn io_uring() {
    refused(&["io-uring"]);
}

#[test]
fn x32_syscalls() {
    refused(&["x32"]);
}

#[test]
fn i386_syscalls() {
    refused(&["i386"]);
}

#[test]
fn bpf() {
    refused(&["bpf"]);
}

#[test]
fn perf_event_open() {
    refused(&["perf"]);
}

#[test]
fn userfaultfd() {
    refused(&["userfaultfd"]);
}

#[test]
fn personality_disabling_aslr() {
    refused(&["personality"]);
}

#[test]
fn vsock_sockets() {
    refused(&["socket", "40", "1", "0"]);
}

#[test]
fn packet_sockets() {
    refused_privileged(&["socket", "17", "3", "0"]);
}

#[test]
fn xdp_sockets() {
    refused_privileged(&["socket", "44", "3", "0"]);
}
