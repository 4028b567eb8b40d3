//! nftables inside a namespace, through the `nft` binary (no GPL library is linked).
//!
//! Every script goes through `ip netns exec NAME nft -f -`: one `nft -f` run is one
//! kernel transaction, so a script is applied entirely or not at all. Debian's `nft` is
//! 1.0.6, older than the kernel: there is no `destroy` command (use [`delete_table`],
//! which works on every version), JSON output differs between versions (it is returned
//! as text, not parsed), and a one-line block needs `;` after every statement and every
//! inner block (`table inet t { chain c { accept; }; }`); write scripts one statement per
//! line and [`check`] them in tests.

use std::fmt;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// An nftables address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip` (IPv4).
    Ip,
    /// `ip6` (IPv6).
    Ip6,
    /// `inet` (IPv4 and IPv6).
    Inet,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`.
    Netdev,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        })
    }
}

/// Applies `script` inside `ns` as one atomic transaction (`nft -f -`). On failure
/// nothing of it is applied and [`Error::Nft`] carries nft's standard error.
pub fn apply(ns: &Netns, script: &str) -> Result<()> {
    run_script(ns, &["-f", "-"], script)
}

/// Checks `script` inside `ns` without applying it (`nft -c -f -`): syntax, and what
/// the kernel would say about the transaction.
pub fn check(ns: &Netns, script: &str) -> Result<()> {
    run_script(ns, &["-c", "-f", "-"], script)
}

/// The table `family name` inside `ns` as nft's JSON (`nft -j list table`), unparsed.
pub fn list_table_json(ns: &Netns, family: Family, table: &str) -> Result<String> {
    list(ns, &["-j", "list", "table", &family.to_string(), table])
}

/// The table `family name` inside `ns` as nft's text.
pub fn list_table(ns: &Netns, family: Family, table: &str) -> Result<String> {
    list(ns, &["list", "table", &family.to_string(), table])
}

/// Deletes the table `family name` inside `ns` if it exists, in one transaction
/// (`add table` then `delete table`: the idiom that works without nft ≥ 1.0.8's
/// `destroy`).
pub fn delete_table(ns: &Netns, family: Family, table: &str) -> Result<()> {
    apply(
        ns,
        &format!("add table {family} {table}\ndelete table {family} {table}\n"),
    )
}

/// The `nft` version line inside `ns` (`nft --version`), e.g. `nftables v1.0.6 (…)`.
pub fn version(ns: &Netns) -> Result<String> {
    list(ns, &["--version"]).map(|s| s.trim().to_owned())
}

fn run_script(ns: &Netns, args: &[&str], script: &str) -> Result<()> {
    let out = ns.exec_with_input("nft", args, script.as_bytes())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft {
            netns: ns.name().to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        })
    }
}

fn list(ns: &Netns, args: &[&str]) -> Result<String> {
    let out = ns.exec("nft", args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Nft {
            netns: ns.name().to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        })
    }
}
