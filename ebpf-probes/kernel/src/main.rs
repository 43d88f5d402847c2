//! Osprey's kernel programs. One program, one purpose, one file.
#![no_std]
#![no_main]
// BPF atomic adds (see `shared::atomic_add`).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod block;
mod clock;
mod connections;
mod dns;
mod drops;
mod flows;
mod handover;
mod headers;
mod http;
mod net;
mod noop;
mod offsets;
mod oom;
mod payload;
mod retransmits;
mod sched;
mod shared;
mod symbols;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
