//! Link-time settings of the agent binary (GNU/Linux).
//!
//! - Packed relative relocations (`DT_RELR`, glibc ≥ 2.36, binutils ≥ 2.38).
//!   A position-independent Rust binary of this size carries ~42k
//!   `R_X86_64_RELATIVE` entries, 1 MB of `.rela.dyn` that the dynamic loader
//!   reads once at start and that then stays resident for the agent's
//!   lifetime; packed, the table is a few KiB (`cargo xtask bench --only
//!   flows`, RSS column).
//! - The functions that run, side by side: `osprey-agent.order` lists them
//!   (`cargo xtask layout` writes it from a profiled run) and the linker (LLD,
//!   rustc's default on x86_64 Linux) places them first, in that order. The
//!   kernel maps code 64 KiB at a time around each page a fault reads; packed,
//!   those 64 KiB hold code that runs instead of code that never does
//!   (`cargo xtask bench --only scrape`, executable column). Names the file
//!   lists that a change renamed are skipped without a warning.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
            .join("osprey-agent.order");
        // LLD is rustc's own linker on x86_64 Linux; GNU ld has no such option.
        let lld = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
        if lld && order.exists() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                order.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
        println!("cargo:rerun-if-changed=osprey-agent.order");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
