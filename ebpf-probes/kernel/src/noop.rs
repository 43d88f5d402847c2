//! Empty programs: what a hook itself costs, with no work in it. Never
//! attached by the agent; `osprey-agent hook-floor` attaches them for
//! `cargo xtask bench`, which sets their cost beside the flow programs'.

use aya_ebpf::{
    macros::{cgroup_skb, classifier},
    programs::{SkBuffContext, TcContext},
};

#[cgroup_skb(ingress)]
pub fn noop_ingress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(egress)]
pub fn noop_egress(_ctx: SkBuffContext) -> i32 {
    1
}

/// An empty TC classifier, for a tcx link (the kernel's own TC hook since
/// 6.6, without a qdisc): `TC_ACT_UNSPEC`, the next program decides.
#[classifier]
pub fn noop_tc(_ctx: TcContext) -> i32 {
    -1
}
