//! `omac doctor`'s sandbox section on this host, and where user namespaces are taken away.

use std::process::Command;

const OMAC: &str = env!("CARGO_BIN_EXE_omac");

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_sandbox_section_reports_every_layer() {
    let o = Command::new(OMAC).arg("doctor").output().unwrap();
    let out = text(&o);
    assert!(out.contains("\nSandbox\n"), "{out}");
    for want in [
        "user namespaces:",
        "AppArmor",
        "Landlock: ABI",
        "seccomp:",
        "cgroup v2",
        "a bundle here runs fully confined",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    // Every line has a status tag; a failed check makes the exit code 4.
    for l in out.lines().filter(|l| l.starts_with("  [")) {
        assert!(
            l.starts_with("  [ok]") || l.starts_with("  [warn]") || l.starts_with("  [fail]"),
            "{l}"
        );
    }
    let failed = out.contains("[fail]");
    assert_eq!(o.status.code(), Some(if failed { 4 } else { 0 }), "{out}");
    assert!(out.contains("[ok]   user namespaces: available"), "{out}");
}

#[test]
fn unavailable_user_namespaces_are_named_with_the_fix() {
    let o = Command::new("unshare")
        .args([
            "-Ur",
            "--",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
            "sh",
            OMAC,
            "doctor",
        ])
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("[fail] user namespaces: unavailable: user namespaces are disabled: user.max_user_namespaces is 0"), "{out}");
    assert!(
        out.contains("fix: as root: sysctl -w user.max_user_namespaces"),
        "{out}"
    );
    assert!(out.contains("Landlock and seccomp only"), "{out}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_32_bit_entry_point_is_reported_as_the_kernel_labels_it() {
    use omac_seccomp::probe::{compat_entry, CompatEntry};
    let o = Command::new(OMAC).arg("doctor").output().unwrap();
    let out = text(&o);
    let want = match compat_entry() {
        CompatEntry::Labelled => "[ok]   seccomp: 32-bit (int 0x80) and x32 system calls are seen",
        CompatEntry::Absent => "[ok]   seccomp: no 32-bit entry point",
        CompatEntry::Unfiltered => "[warn] seccomp: this kernel runs i386 (int 0x80) system calls",
        CompatEntry::NotApplicable => panic!("the int 0x80 probe failed"),
    };
    assert!(out.contains(want), "{want:?} missing:\n{out}");
}
