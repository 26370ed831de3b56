//! Link options of the omac binary.

fn main() {
    // A position-dependent executable: the dynamic loader has no relative relocations to
    // apply, so the ~480 KB of pointers in .data.rel.ro stay clean pages of the file
    // instead of being written (copied) at every start, and every fork (the sandbox's
    // init, the agent) has that much less private memory to copy. This is most of what
    // starting omac costs before a sandbox (see bench/runtime.sh). The cost: the binary's
    // own code and data load at a fixed address (its libraries keep ASLR).
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bin=omac=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
