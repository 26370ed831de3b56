//! Lays out the omac binary's code in the order of `link/omac.order`: the functions a sandbox
//! start runs come first, together, in the order they first run.
//!
//! A run touches about 2.4 MB of the 12 MB of code. Laid out as the compiler leaves it, that
//! code is spread over the whole text. Each process of a run (omac, the stage, init, the
//! agent until its exec) then faults in a 64 KB window for each piece it reaches, and omac's
//! exit unmaps what all those faults mapped. Placed together, the same code takes fewer
//! faults and fewer mapped pages: side by side (`bash bench/compare.sh`, 8 rounds, all
//! lower), `omac run` of a confined `/bin/true` went from 5.69 to 5.02 ms on a busy machine.
//!
//! The order is a list of symbol names that `bash scripts/link-order.sh` writes from a
//! profiled run. Only LLD reads it (`--symbol-ordering-file`). LLD is the default linker of
//! `x86_64-unknown-linux-gnu` since Rust 1.90, so the list is passed only there and only
//! when no other linker was chosen. Names the binary does not have (code changed since the
//! list was made) are skipped without a warning. The order only moves code; the program is
//! the same.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link/omac.order");
    // scripts/link-order.sh profiles a build whose code comes in 4 KiB pages, one fault
    // each (src/entry.rs otherwise asks for 2 MB ones).
    println!("cargo:rustc-check-cfg=cfg(omac_code_in_small_pages)");
    println!("cargo:rerun-if-env-changed=OMAC_CODE_IN_SMALL_PAGES");
    if env::var_os("OMAC_CODE_IN_SMALL_PAGES").is_some() {
        println!("cargo:rustc-cfg=omac_code_in_small_pages");
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // The omac binary starts at `omac_entry` (src/entry.rs), which then jumps to glibc's
    // `_start`.
    if env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bin=omac=-Wl,-e,omac_entry");
    }
    let order = Path::new(&manifest).join("link/omac.order");
    if order.is_file() && links_with_lld() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the binary is linked by LLD: the target's default since Rust 1.90, unless a
/// linker was named.
fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|f| f.contains("linker")) {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
