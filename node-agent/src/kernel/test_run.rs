//! `BPF_PROG_TEST_RUN`: the kernel runs a loaded program on a packet we
//! build, without attaching it. aya 0.14 keeps its own wrapper private.

use std::os::fd::RawFd;

use aya_obj::generated::{bpf_attr, bpf_cmd};

/// bpf(2) with `cmd` and `union bpf_attr`, aya's own bindings of the
/// kernel's types: aya 0.14 keeps its syscall wrapper private, so this is
/// the one place the agent issues commands aya has no API for (test runs
/// here, batch map reads in `kernel::batch`). The kernel reads and writes
/// `attr` in place.
pub fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<()> {
    // SAFETY: bpf(2) with a whole `union bpf_attr` of the size passed;
    // callers start from `zeroed_attr` and keep alive whatever it points to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An all-zero `union bpf_attr`: the kernel rejects non-zero bytes past the
/// command's part.
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: plain integers all through; zero is what the kernel expects
    // of every field a command leaves unset.
    unsafe { std::mem::zeroed() }
}

/// What a test run returned.
#[derive(Debug, Clone, Copy)]
pub struct TestRun {
    /// The program's return value (of its last run).
    pub retval: u32,
    /// Mean ns per run, as the kernel timed the loop.
    pub ns_per_run: u32,
}

/// Runs the program behind `fd` `repeat` times on `packet` (an Ethernet
/// frame), in the kernel.
pub fn test_run(fd: RawFd, packet: &[u8], repeat: u32) -> std::io::Result<TestRun> {
    let mut attr = zeroed_attr();
    attr.test.prog_fd = fd as u32;
    attr.test.data_size_in = packet.len() as u32;
    attr.test.data_in = packet.as_ptr() as u64;
    attr.test.repeat = repeat;
    run(attr)
}

/// Runs the raw tracepoint program behind `fd` once, with no arguments.
pub fn test_run_raw_tracepoint(fd: RawFd) -> std::io::Result<TestRun> {
    test_run_raw_tracepoint_with(fd, &[])
}

/// Runs the raw tracepoint program behind `fd` once, with `args` as the
/// tracepoint's arguments (its context).
pub fn test_run_raw_tracepoint_with(fd: RawFd, args: &[u64]) -> std::io::Result<TestRun> {
    let mut attr = zeroed_attr();
    attr.test.prog_fd = fd as u32;
    if !args.is_empty() {
        attr.test.ctx_in = args.as_ptr() as u64;
        attr.test.ctx_size_in = std::mem::size_of_val(args) as u32;
    }
    run(attr)
}

fn run(mut attr: bpf_attr) -> std::io::Result<TestRun> {
    // The kernel only reads `packet` (no data_out), and writes retval and duration.
    sys_bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr)?;
    // SAFETY: the `test` member, which the caller filled and the kernel wrote.
    let test = unsafe { attr.test };
    Ok(TestRun {
        retval: test.retval,
        ns_per_run: test.duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_commands_are_the_kernels_numbers() {
        // include/uapi/linux/bpf.h
        assert_eq!(bpf_cmd::BPF_PROG_TEST_RUN as u32, 10);
        assert_eq!(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH as u32, 25);
    }

    #[test]
    fn a_run_without_a_program_is_an_error_not_a_crash() {
        // fd -1 is never a program: EBADF (or EPERM without the capability).
        assert!(test_run(-1, &[0u8; 64], 1).is_err());
        assert!(test_run_raw_tracepoint(-1).is_err());
    }
}
