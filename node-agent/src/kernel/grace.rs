//! Waiting out every BPF program that may still use what a flip replaced.
//!
//! Non-sleepable BPF programs run inside an RCU read-side critical section.
//! The kernel's update of a map-in-map from user space returns only after
//! `synchronize_rcu()` (`maybe_wait_bpf_programs`, kernel/bpf/syscall.c):
//! every program that began before the call has finished, however long a
//! hypervisor kept its vCPU descheduled. `ProgramGrace` owns a one-slot
//! array-of-maps and a one-slot array to put in it, and its `wait` is that
//! update: after flipping `ACTIVE_FLOW_MAP`, no program that read the old
//! index is still running.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_cmd, bpf_map_type};

use crate::kernel::test_run::{sys_bpf, zeroed_attr};

pub struct ProgramGrace {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl ProgramGrace {
    /// Creates the two maps (a few hundred bytes of kernel memory).
    pub fn new() -> io::Result<Self> {
        let inner = create_map(bpf_map_type::BPF_MAP_TYPE_ARRAY, None, b"GRACE_INNER")?;
        let outer = create_map(
            bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS,
            Some(&inner),
            b"GRACE",
        )?;
        Ok(Self { outer, inner })
    }

    /// Returns once every BPF program running when it was called has
    /// finished (an RCU grace period: milliseconds, not a busy wait).
    pub fn wait(&self) -> io::Result<()> {
        let key = 0u32;
        let value = self.inner.as_raw_fd() as u32;
        // The map element member of `union bpf_attr`, pointing at the key
        // and value above, which outlive the call.
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_2.map_fd = self.outer.as_raw_fd() as u32;
        attr.__bindgen_anon_2.key = &key as *const u32 as u64;
        attr.__bindgen_anon_2.__bindgen_anon_1.value = &value as *const u32 as u64;
        sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr)
    }
}

/// A one-entry map of 4-byte keys and values named `name`; an
/// array-of-maps takes the layout of `inner`.
fn create_map(map_type: bpf_map_type, inner: Option<&OwnedFd>, name: &[u8]) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_1.map_type = map_type as u32;
    attr.__bindgen_anon_1.key_size = 4;
    attr.__bindgen_anon_1.value_size = 4;
    attr.__bindgen_anon_1.max_entries = 1;
    attr.__bindgen_anon_1.inner_map_fd = inner.map_or(0, |fd| fd.as_raw_fd() as u32);
    // The name its memory is reported under (15 bytes and a NUL at most).
    let mut map_name = [0 as core::ffi::c_char; 16];
    for (dst, src) in map_name.iter_mut().zip(&name[..name.len().min(15)]) {
        *dst = *src as core::ffi::c_char;
    }
    attr.__bindgen_anon_1.map_name = map_name;
    // SAFETY: bpf(2) with a whole, zero-initialised `union bpf_attr` whose
    // map creation member is filled; BPF_MAP_CREATE returns the new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_MAP_CREATE as libc::c_long,
            &mut attr as *mut _,
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel just gave us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_numbers_are_the_kernels() {
        // include/uapi/linux/bpf.h
        assert_eq!(bpf_cmd::BPF_MAP_CREATE as u32, 0);
        assert_eq!(bpf_cmd::BPF_MAP_UPDATE_ELEM as u32, 2);
        assert_eq!(bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS as u32, 12);
    }
}
