//! `BPF_PROG_TEST_RUN`: the kernel runs a loaded program on a packet we
//! build, without attaching it. aya 0.14 keeps its own wrapper private.

use std::os::fd::RawFd;

/// bpf(2) with `cmd` and its part of `union bpf_attr`: aya 0.14 keeps its
/// syscall wrapper private, so this is the one place the agent issues
/// commands aya has no API for (test runs here, batch map reads in
/// `bpf_batch`). The kernel reads and writes `attr` in place.
pub fn sys_bpf<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<()> {
    // SAFETY: bpf(2) with an attr of the size passed; callers give a
    // zero-padded `#[repr(C)]` struct and keep alive whatever it points to.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `BPF_PROG_TEST_RUN`'s part of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

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
    run(TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    })
}

/// Runs the raw tracepoint program behind `fd` once, with no arguments.
pub fn test_run_raw_tracepoint(fd: RawFd) -> std::io::Result<TestRun> {
    run(TestRunAttr {
        prog_fd: fd as u32,
        ..TestRunAttr::default()
    })
}

fn run(mut attr: TestRunAttr) -> std::io::Result<TestRun> {
    // The kernel only reads `packet` (no data_out), and writes retval and duration.
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(TestRun {
        retval: attr.retval,
        ns_per_run: attr.duration,
    })
}
