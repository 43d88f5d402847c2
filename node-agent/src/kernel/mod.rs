//! Kernel plumbing: what this kernel offers (BTF, tracefs layouts), loading and attaching the probes, the kernel's clock,
//! batch map reads and test runs through bpf(2), the one ring-buffer reader,
//! and the bench's hook floors. Everything above this module sees typed
//! maps and records, never a syscall.

pub mod batch;
pub mod clock;
pub mod grace;
pub mod hook_floor;
pub mod info;
pub mod kallsyms;
pub mod layout;
pub mod map_memory;
pub mod maps;
pub mod probes;
pub mod prog_bench;
pub mod ring;
pub mod test_run;
