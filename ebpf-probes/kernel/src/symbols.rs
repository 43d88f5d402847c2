//! Kernel text addresses named by the kernel itself, on demand: userspace
//! test-runs `symbol_name` (it is never attached) with an address as its one
//! argument and reads the name from `SYMBOL_NAME`. The kernel's `%ps` finds
//! the function by binary search of its symbol table, where reading
//! `/proc/kallsyms` would print all ~120k symbols to find a handful.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_snprintf,
    macros::{map, raw_tracepoint},
    maps::Array,
    programs::RawTracePointContext,
};
use osprey_abi::{SYMBOL_NAME_LEN, SymbolName};

#[map]
static SYMBOL_NAME: Array<SymbolName> = Array::with_max_entries(1, 0);

/// `bpf_snprintf` wants its format in a read-only map: a `static` is in
/// `.rodata`, which the loader freezes.
static FORMAT: [u8; 4] = *b"%ps\0";

#[raw_tracepoint]
pub fn symbol_name(ctx: RawTracePointContext) -> i32 {
    // SAFETY: the test run's context is its arguments; the first is ours.
    let addr = unsafe { *(ctx.as_ptr() as *const u64) };
    let Some(out) = SYMBOL_NAME.get_ptr_mut(0) else {
        return 0;
    };
    let args = [addr];
    // SAFETY: the buffer is the array value's name (SYMBOL_NAME_LEN bytes),
    // the format a NUL-terminated read-only string, `args` one u64 per `%`.
    unsafe {
        (*out).written = bpf_snprintf(
            (*out).name.as_mut_ptr() as *mut _,
            SYMBOL_NAME_LEN as u32,
            FORMAT.as_ptr() as *const _,
            args.as_ptr() as *mut u64,
            core::mem::size_of_val(&args) as u32,
        );
    }
    0
}
