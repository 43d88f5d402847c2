//! Struct member offsets and enum names from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`).

use std::collections::BTreeMap;

use btf_rs::{Btf, Type};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF from {VMLINUX} (kernel built without CONFIG_DEBUG_INFO_BTF?)")]
    Load(#[source] btf_rs::Error),
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

pub struct KernelBtf(Btf);

impl KernelBtf {
    pub fn load() -> Result<Self, BtfError> {
        // Mmap: look types up in place instead of parsing all of vmlinux's BTF
        // (tens of MiB of heap for a handful of lookups).
        Btf::from_file_with_backend(VMLINUX, btf_rs::Backend::Mmap)
            .map(Self)
            .map_err(BtfError::Load)
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous
    /// structs and unions (e.g. `sk_buff`'s `headers` group).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("struct {name}.{member}"));
        let types = self.0.resolve_types_by_name(name).map_err(|_| missing())?;
        let Some(Type::Struct(st)) = types.into_iter().find(|t| matches!(t, Type::Struct(_)))
        else {
            return Err(missing());
        };
        self.find_member(&st, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(missing)
    }

    fn find_member(&self, st: &btf_rs::Struct, member: &str, base_bits: u32) -> Option<u32> {
        for m in &st.members {
            let name = self.0.resolve_name(m).unwrap_or_default();
            let bits = base_bits + m.bit_offset();
            if name == member {
                return Some(bits);
            }
            if name.is_empty()
                && let Ok(Type::Struct(inner) | Type::Union(inner)) = self.0.resolve_chained_type(m)
                && let Some(found) = self.find_member(&inner, member, bits)
            {
                return Some(found);
            }
        }
        None
    }

    /// The values and names of `enum name`, with `prefix` stripped from the names.
    pub fn enum_names(&self, name: &str, prefix: &str) -> Result<BTreeMap<u32, String>, BtfError> {
        let types = self
            .0
            .resolve_types_by_name(name)
            .map_err(|_| BtfError::Missing(format!("enum {name}")))?;
        let Some(Type::Enum(en)) = types.into_iter().find(|t| matches!(t, Type::Enum(_))) else {
            return Err(BtfError::Missing(format!("enum {name}")));
        };
        Ok(en
            .members
            .iter()
            .filter_map(|m| {
                let n = self.0.resolve_name(m).ok()?;
                Some((m.val(), n.strip_prefix(prefix).unwrap_or(&n).to_owned()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads this machine's kernel BTF (present on every kernel Osprey supports).
    #[test]
    fn finds_sk_buff_members_and_drop_reasons_in_the_running_kernel() {
        let btf = KernelBtf::load();
        // In CI a missing BTF fails; elsewhere the skip is counted, as the
        // e2e tests' are.
        osprey_e2e::require!(btf.is_ok(), "no kernel BTF: {:?}", btf.as_ref().err());
        let Ok(btf) = btf else { return };
        let head = btf.member_offset("sk_buff", "head").unwrap();
        let nh = btf.member_offset("sk_buff", "network_header").unwrap();
        assert!(
            head > 0 && nh > 0 && head != nh,
            "head {head}, network_header {nh}"
        );
        let reasons = btf
            .enum_names("skb_drop_reason", "SKB_DROP_REASON_")
            .unwrap();
        // The names agree with the kfree_skb tracepoint's own table.
        let format = super::super::tracefs::TracepointFormat::parse(
            "skb/kfree_skb",
            include_str!("kfree_skb.format"),
        );
        let nf = reasons
            .iter()
            .find(|(_, n)| n.as_str() == "NETFILTER_DROP")
            .map(|(v, _)| *v);
        if std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
            .ok()
            .as_deref()
            == Some(include_str!("kfree_skb.format"))
        {
            assert_eq!(
                format
                    .symbols("reason")
                    .get(&nf.unwrap())
                    .map(String::as_str),
                Some("NETFILTER_DROP")
            );
        }
        assert!(nf.is_some());
    }
}
