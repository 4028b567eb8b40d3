//! Reading the table back. Every check first asks the kernel for the namespace's ruleset
//! generation (one netlink message): if no transaction was committed since Bulkhead's
//! last apply, the table is Bulkhead's and nothing is listed. The first such check after
//! an apply takes a fingerprint of what the kernel holds; when the generation has moved,
//! the table is listed again and compared with it. Any difference means something
//! outside Bulkhead changed the table (or flushed the ruleset): a tamper event.
//!
//! The fingerprint hashes `nft list table inet bulkhead` (rules and set elements), which
//! costs time proportional to the table (≈ 0.35 s at 50,000 elements); it runs at most
//! once per apply and when something else committed, at the resync interval, never on
//! the path of a change.

use std::process::Command;

use sha2::{Digest, Sha224};

/// The fingerprint of the table in `netns` (or the current namespace); `Err` when the
/// table cannot be listed (it is gone).
pub fn fingerprint(netns: Option<&str>) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    let out = cmd
        .args(["list", "table", "inet", "bulkhead"])
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(Sha224::digest(&out.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
