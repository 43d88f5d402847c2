//! Link the agent with packed relative relocations (`DT_RELR`, glibc ≥ 2.36,
//! binutils ≥ 2.38). A position-independent Rust binary of this size carries
//! ~42k `R_X86_64_RELATIVE` entries, 1 MB of `.rela.dyn` that the dynamic
//! loader reads once at start and that then stays resident for the agent's
//! lifetime; packed, the table is a few KiB (`cargo xtask bench --only flows`,
//! RSS column).

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
