//! OOM kills (`oom:mark_victim`) as events: the victim's pid, command and
//! size, and the cgroup of the task whose allocation triggered the kill.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::RingBuf,
    programs::TracePointContext,
};
use osprey_abi::OomEvent;

use crate::{
    offsets::{self, OOM_ANON_RSS, OOM_COMM, OOM_PID, OOM_TOTAL_VM, OOM_UID},
    shared::count_resource_loss,
};

#[map]
static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024, 0);

#[tracepoint]
pub fn oom_victim(ctx: TracePointContext) -> u32 {
    let Some(mut entry) = OOM_EVENTS.reserve::<OomEvent>(0) else {
        count_resource_loss(|loss| loss.oom_ring_full += 1);
        return 0;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: offsets from this kernel's tracepoint format; the entry is ours.
    let ok = unsafe {
        // `comm` is a __data_loc string: offset in the low 16 bits.
        let comm = ctx
            .read_at::<u32>(offsets::get(&OOM_COMM))
            .and_then(|loc| ctx.read_at::<[u8; 16]>((loc & 0xffff) as usize));
        match (
            ctx.read_at::<u32>(offsets::get(&OOM_PID)),
            ctx.read_at::<u32>(offsets::get(&OOM_UID)),
            ctx.read_at::<u64>(offsets::get(&OOM_TOTAL_VM)),
            ctx.read_at::<u64>(offsets::get(&OOM_ANON_RSS)),
            comm,
        ) {
            (Ok(pid), Ok(uid), Ok(total_vm), Ok(anon_rss), Ok(comm)) => {
                (*event).ts_ns = bpf_ktime_get_ns();
                (*event).trigger_cgroup_id = bpf_get_current_cgroup_id();
                (*event).victim_pid = pid;
                (*event).victim_uid = uid;
                (*event).comm = comm;
                (*event).total_vm_kb = total_vm;
                (*event).anon_rss_kb = anon_rss;
                true
            }
            _ => false,
        }
    };
    if ok {
        entry.submit(0);
    } else {
        entry.discard(0);
    }
    0
}
