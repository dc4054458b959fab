//! Build script: link the release `qw` as a position-dependent executable on Linux.
//!
//! A position-independent `qw` carries ~21 000 relative relocations that the dynamic
//! loader applies at every start, copying ~100 pages of `.data.rel.ro` on write: about a
//! third of the page faults of `qw exec -- true`, which is benchmarked against GNU
//! `timeout` (`scripts/bench-exec`). Linked with `-no-pie` those addresses are fixed at
//! link time. The cost: the executable's own image is not randomized (shared libraries,
//! heap and stack still are). Debug and test builds are left as they are.
//!
//! A statically linked build (`scripts/build-release`: `+crt-static` with the static
//! relocation model) gets no `-no-pie` from here: rustc already links it position
//! dependent, and `-no-pie` would contradict a `+crt-static` build left position
//! independent (`-static-pie`).

#![allow(
    clippy::print_stdout,
    reason = "a build script talks to cargo on stdout"
)]

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_gnu = std::env::var("TARGET").is_ok_and(|t| t.ends_with("-linux-gnu"));
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if release && linux_gnu && !crt_static {
        println!("cargo::rustc-link-arg-bin=qw=-no-pie");
    }
}
