//! The running kernel's layouts the tracepoint probes are loaded with:
//! tracepoint field offsets (tracefs) and `sk_buff` / `sock` member offsets
//! and drop reason names (BTF), and how the run-queue probes read the
//! scheduler's fields.

use std::collections::BTreeMap;

use osprey_abi::offsets;

use crate::kernel::info::{btf::KernelBtf, tracefs::TracepointFormat};

/// Whether this kernel's `sched_switch` and `sched_wakeup` records have the
/// layout the run-queue probes read with plain loads (`osprey_abi::sched_layout`).
fn sched_layout_known(switch: &TracepointFormat, wakeup: &TracepointFormat) -> bool {
    use osprey_abi::sched_layout as at;
    let is = |f: &TracepointFormat, field, size, want| f.offset(field, size).ok() == Some(want);
    is(switch, "prev_pid", 4, at::SW_PREV_PID)
        && is(switch, "prev_state", 8, at::SW_PREV_STATE)
        && is(switch, "next_pid", 4, at::SW_NEXT_PID)
        && is(wakeup, "pid", 4, at::WAKEUP_PID)
}

/// How the run-queue probes read their tracepoints' fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedFields {
    /// Plain loads at `osprey_abi::sched_layout`'s offsets where this kernel
    /// has that layout, else helper reads at tracefs offsets.
    Auto,
    /// Helper reads at tracefs offsets always: the portable path, which
    /// `Auto` takes on kernels of another layout (for its test).
    Helpers,
}

/// Tracepoint offsets of the resource probes (scheduler, block, OOM).
pub(super) fn resource_globals(
    sched_fields: SchedFields,
) -> Result<Vec<(&'static str, u32)>, String> {
    let load = |c, t| TracepointFormat::load(c, t).map_err(|e| e.to_string());
    let (switch, wakeup, bio, oom) = (
        load("sched", "sched_switch")?,
        load("sched", "sched_wakeup")?,
        load("block", "block_bio_queue")?,
        load("oom", "mark_victim")?,
    );
    let tp =
        |f: &TracepointFormat, field: &str, size| f.offset(field, size).map_err(|e| e.to_string());
    Ok(vec![
        (
            offsets::SCHED_LAYOUT_KNOWN,
            u32::from(sched_fields == SchedFields::Auto && sched_layout_known(&switch, &wakeup)),
        ),
        (offsets::SW_PREV_PID, tp(&switch, "prev_pid", 4)?),
        (offsets::SW_PREV_STATE, tp(&switch, "prev_state", 8)?),
        (offsets::SW_NEXT_PID, tp(&switch, "next_pid", 4)?),
        (offsets::WAKEUP_PID, tp(&wakeup, "pid", 4)?),
        (offsets::BIO_DEV, tp(&bio, "dev", 4)?),
        (offsets::BIO_NR_SECTOR, tp(&bio, "nr_sector", 4)?),
        (
            offsets::BIO_RWBS,
            bio.array_offset("rwbs", 2).map_err(|e| e.to_string())?,
        ),
        (offsets::OOM_PID, tp(&oom, "pid", 4)?),
        (offsets::OOM_COMM, tp(&oom, "comm", 4)?),
        (offsets::OOM_UID, tp(&oom, "uid", 4)?),
        (offsets::OOM_TOTAL_VM, tp(&oom, "total_vm", 8)?),
        (offsets::OOM_ANON_RSS, tp(&oom, "anon_rss", 8)?),
    ])
}

/// Offsets and names read from the running kernel for the tracepoint probes.
pub struct KernelLayout {
    pub globals: Vec<(&'static str, u32)>,
    /// `enum skb_drop_reason` value → name (without the `SKB_DROP_REASON_` prefix).
    pub drop_reasons: BTreeMap<u32, String>,
}

impl KernelLayout {
    /// Reads the tracepoint formats and the kernel's BTF.
    pub fn resolve() -> Result<Self, String> {
        let drop = TracepointFormat::load("skb", "kfree_skb").map_err(|e| e.to_string())?;
        let rtx = TracepointFormat::load("tcp", "tcp_retransmit_skb").map_err(|e| e.to_string())?;
        let set_state =
            TracepointFormat::load("sock", "inet_sock_set_state").map_err(|e| e.to_string())?;
        let btf = KernelBtf::load().map_err(|e| e.to_string())?;
        let tp = |f: &TracepointFormat, field: &str, size| {
            f.offset(field, size).map_err(|e| e.to_string())
        };
        let skb = |member| {
            btf.member_offset("sk_buff", member)
                .map_err(|e| e.to_string())
        };
        let globals = vec![
            (offsets::DROP_SKBADDR, tp(&drop, "skbaddr", 8)?),
            (offsets::DROP_PROTOCOL, tp(&drop, "protocol", 2)?),
            (offsets::DROP_REASON, tp(&drop, "reason", 4)?),
            (offsets::DROP_LOCATION, tp(&drop, "location", 8)?),
            (offsets::SKB_HEAD, skb("head")?),
            (offsets::SKB_NETWORK_HEADER, skb("network_header")?),
            (offsets::RTX_SPORT, tp(&rtx, "sport", 2)?),
            (offsets::RTX_DPORT, tp(&rtx, "dport", 2)?),
            (offsets::RTX_FAMILY, tp(&rtx, "family", 2)?),
            (offsets::RTX_SADDR, tp(&rtx, "saddr", 4)?),
            (offsets::RTX_DADDR, tp(&rtx, "daddr", 4)?),
            (offsets::RTX_SADDR_V6, tp(&rtx, "saddr_v6", 16)?),
            (offsets::RTX_DADDR_V6, tp(&rtx, "daddr_v6", 16)?),
            (offsets::SS_SKADDR, tp(&set_state, "skaddr", 8)?),
            (offsets::SS_OLDSTATE, tp(&set_state, "oldstate", 4)?),
            (offsets::SS_NEWSTATE, tp(&set_state, "newstate", 4)?),
            (offsets::SS_SPORT, tp(&set_state, "sport", 2)?),
            (offsets::SS_DPORT, tp(&set_state, "dport", 2)?),
            (offsets::SS_FAMILY, tp(&set_state, "family", 2)?),
            (offsets::SS_PROTOCOL, tp(&set_state, "protocol", 2)?),
            (offsets::SS_SADDR, tp(&set_state, "saddr", 4)?),
            (offsets::SS_DADDR, tp(&set_state, "daddr", 4)?),
            (offsets::SS_SADDR_V6, tp(&set_state, "saddr_v6", 16)?),
            (offsets::SS_DADDR_V6, tp(&set_state, "daddr_v6", 16)?),
            (
                offsets::SOCK_SK_ERR,
                btf.member_offset("sock", "sk_err")
                    .map_err(|e| e.to_string())?,
            ),
        ];
        // BTF names the enum on every kernel; the tracepoint's own table is the fallback.
        let drop_reasons = btf
            .enum_names("skb_drop_reason", "SKB_DROP_REASON_")
            .unwrap_or_else(|_| drop.symbols("reason"));
        Ok(Self {
            globals,
            drop_reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = include_str!("info/sched_switch.format");
    const WAKEUP: &str = include_str!("info/sched_wakeup.format");

    #[test]
    fn sched_layout_is_known_only_where_the_formats_agree() {
        let switch = TracepointFormat::parse("sched/sched_switch", SWITCH);
        let wakeup = TracepointFormat::parse("sched/sched_wakeup", WAKEUP);
        // This kernel's (6.18) formats: the plain loads apply.
        assert!(sched_layout_known(&switch, &wakeup));
        // A kernel whose prev_state sits elsewhere (or is 4 bytes) falls back.
        let moved = SWITCH.replace(
            "field:long prev_state;\toffset:32;\tsize:8;",
            "field:long prev_state;\toffset:36;\tsize:8;",
        );
        assert_ne!(moved, SWITCH, "the fixture has the field to move");
        let moved = TracepointFormat::parse("sched/sched_switch", &moved);
        assert!(!sched_layout_known(&moved, &wakeup));
        let narrow = SWITCH.replace(
            "field:long prev_state;\toffset:32;\tsize:8;",
            "field:unsigned int prev_state;\toffset:32;\tsize:4;",
        );
        let narrow = TracepointFormat::parse("sched/sched_switch", &narrow);
        assert!(!sched_layout_known(&narrow, &wakeup));
    }
}
