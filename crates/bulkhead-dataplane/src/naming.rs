//! Names the agent, the CNI plugin and `bulkhead workload` must agree on.

/// Default prefix of workload interfaces on a node (the node side of each veth).
pub const WORKLOAD_PREFIX: &str = "bh";

/// The node-side interface name of workload `namespace/name`: the prefix and hex digits
/// of a 64-bit FNV-1a hash of `namespace/name`, 15 bytes at most (Linux's limit).
/// Stable across processes and versions: it is how the agent finds a pod's interface.
pub fn workload_interface(prefix: &str, namespace: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain(*b"/").chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let digits = 15usize.saturating_sub(prefix.len()).min(16);
    let hex = format!("{h:016x}");
    format!("{prefix}{}", &hex[..digits])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_fit_linux() {
        let a = workload_interface(WORKLOAD_PREFIX, "shop", "frontend");
        assert_eq!(a, workload_interface(WORKLOAD_PREFIX, "shop", "frontend"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("bh"));
        assert_ne!(a, workload_interface(WORKLOAD_PREFIX, "shop", "backend"));
        assert_eq!(workload_interface("cali", "x", "y").len(), 15);
    }
}
