//! Empty cgroup_skb programs: what the hook itself costs, with no work in
//! it. Never attached by the agent; `osprey-agent hook-floor` attaches them
//! for `cargo xtask bench`, which sets their cost beside the flow programs'.

use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

#[cgroup_skb(ingress)]
pub fn noop_ingress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(egress)]
pub fn noop_egress(_ctx: SkBuffContext) -> i32 {
    1
}
