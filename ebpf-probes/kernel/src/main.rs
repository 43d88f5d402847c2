//! Osprey's kernel programs. One program, one purpose, one file.
#![no_std]
#![no_main]

mod flows;
mod headers;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
