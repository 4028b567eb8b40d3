//! Reading the table back: a fingerprint of what the kernel holds, taken right after each
//! apply and compared periodically. Any difference means something outside Bulkhead
//! changed the table (or flushed the ruleset): a tamper event.
//!
//! The fingerprint hashes `nft list table inet bulkhead` (rules and set elements), which
//! costs time proportional to the table; it runs every resync interval, never per change.

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
