//! Helpers shared by the CLI's kernel tests.

use std::process::Command;

/// Deletes those of `names` that still exist: what a test left behind when it failed
/// before its own cleanup (on success it deleted them, and `ip` would complain).
pub fn delete_leftover_netns(names: &[String]) {
    for ns in names {
        if std::path::Path::new("/run/netns").join(ns).exists() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
