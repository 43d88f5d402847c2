//! Offsets resolved by userspace at load time (`EbpfLoader::set_global`) from
//! the running kernel's tracefs formats and BTF. The zero defaults are never
//! used: the agent refuses to load the programs if it cannot resolve them.

macro_rules! offset {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        pub static $name: u32 = 0;
    };
}

offset!(OFF_DROP_SKBADDR);
offset!(OFF_DROP_PROTOCOL);
offset!(OFF_DROP_REASON);
offset!(OFF_DROP_LOCATION);
offset!(OFF_SKB_HEAD);
offset!(OFF_SKB_NETWORK_HEADER);
offset!(OFF_RTX_SPORT);
offset!(OFF_RTX_DPORT);
offset!(OFF_RTX_FAMILY);
offset!(OFF_RTX_SADDR);
offset!(OFF_RTX_DADDR);
offset!(OFF_RTX_SADDR_V6);
offset!(OFF_RTX_DADDR_V6);
offset!(OFF_SS_SKADDR);
offset!(OFF_SS_OLDSTATE);
offset!(OFF_SS_NEWSTATE);
offset!(OFF_SS_SPORT);
offset!(OFF_SS_DPORT);
offset!(OFF_SS_FAMILY);
offset!(OFF_SS_PROTOCOL);
offset!(OFF_SS_SADDR);
offset!(OFF_SS_DADDR);
offset!(OFF_SS_SADDR_V6);
offset!(OFF_SS_DADDR_V6);
offset!(OFF_SOCK_SK_ERR);
offset!(OFF_SW_PREV_PID);
offset!(OFF_SW_PREV_STATE);
offset!(OFF_SW_NEXT_PID);
offset!(OFF_WAKEUP_PID);
offset!(OFF_BIO_DEV);
offset!(OFF_BIO_NR_SECTOR);
offset!(OFF_BIO_RWBS);
offset!(OFF_OOM_PID);
offset!(OFF_OOM_COMM);
offset!(OFF_OOM_UID);
offset!(OFF_OOM_TOTAL_VM);
offset!(OFF_OOM_ANON_RSS);
offset!(SCHED_LAYOUT_KNOWN);

/// Reads a global so that the compiler cannot constant-fold the default.
#[inline(always)]
pub fn get(global: &'static u32) -> usize {
    // SAFETY: a read of a static; volatile keeps the load in the program.
    unsafe { core::ptr::read_volatile(global) as usize }
}

pub use self::{
    OFF_BIO_DEV as BIO_DEV, OFF_BIO_NR_SECTOR as BIO_NR_SECTOR, OFF_BIO_RWBS as BIO_RWBS,
    OFF_OOM_ANON_RSS as OOM_ANON_RSS, OFF_OOM_COMM as OOM_COMM, OFF_OOM_PID as OOM_PID,
    OFF_OOM_TOTAL_VM as OOM_TOTAL_VM, OFF_OOM_UID as OOM_UID, OFF_SW_NEXT_PID as SW_NEXT_PID,
    OFF_SW_PREV_PID as SW_PREV_PID, OFF_SW_PREV_STATE as SW_PREV_STATE,
    OFF_WAKEUP_PID as WAKEUP_PID,
};
pub use self::{
    OFF_DROP_LOCATION as DROP_LOCATION, OFF_DROP_PROTOCOL as DROP_PROTOCOL,
    OFF_DROP_REASON as DROP_REASON, OFF_DROP_SKBADDR as DROP_SKBADDR, OFF_RTX_DADDR as RTX_DADDR,
    OFF_RTX_DADDR_V6 as RTX_DADDR_V6, OFF_RTX_DPORT as RTX_DPORT, OFF_RTX_FAMILY as RTX_FAMILY,
    OFF_RTX_SADDR as RTX_SADDR, OFF_RTX_SADDR_V6 as RTX_SADDR_V6, OFF_RTX_SPORT as RTX_SPORT,
    OFF_SKB_HEAD as SKB_HEAD, OFF_SKB_NETWORK_HEADER as SKB_NETWORK_HEADER,
};
