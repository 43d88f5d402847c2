//! What the running kernel says about itself: tracepoint layouts (tracefs)
//! and type layouts and enum names (BTF). The probes depend on these instead
//! of offsets compiled in, so they stay right across kernel versions.
pub mod btf;
pub mod tracefs;
