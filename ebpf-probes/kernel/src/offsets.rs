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

/// Reads a global so that the compiler cannot constant-fold the default.
#[inline(always)]
pub fn get(global: &'static u32) -> usize {
    // SAFETY: a read of a static; volatile keeps the load in the program.
    unsafe { core::ptr::read_volatile(global) as usize }
}

pub use self::{
    OFF_DROP_PROTOCOL as DROP_PROTOCOL, OFF_DROP_REASON as DROP_REASON,
    OFF_DROP_SKBADDR as DROP_SKBADDR, OFF_RTX_DADDR as RTX_DADDR, OFF_RTX_DADDR_V6 as RTX_DADDR_V6,
    OFF_RTX_DPORT as RTX_DPORT, OFF_RTX_FAMILY as RTX_FAMILY, OFF_RTX_SADDR as RTX_SADDR,
    OFF_RTX_SADDR_V6 as RTX_SADDR_V6, OFF_RTX_SPORT as RTX_SPORT, OFF_SKB_HEAD as SKB_HEAD,
    OFF_SKB_NETWORK_HEADER as SKB_NETWORK_HEADER,
};
