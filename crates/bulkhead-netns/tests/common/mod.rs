//! Helpers shared by the integration tests (each test file is its own process).
#![allow(dead_code)]

use std::process::Command;

/// Whether namespaces can be made here; prints the skip line when not.
pub fn capable() -> bool {
    bulkhead_netns::kernel_tests_can_run(false)
}

/// Names from `ip netns list` (the first word of each line).
pub fn netns_names() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Namespaces whose name starts with `prefix`.
pub fn leftovers(prefix: &str) -> Vec<String> {
    netns_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Whether a process with this id exists (zombies included).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Ids of live (not zombie) processes whose process group is `pgid`. Killed orphans
/// wait as zombies until init reaps them; they are dead and hold nothing.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return members;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let zombie = fields.first() == Some(&"Z");
        if !zombie && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

/// `/proc/<pid>/stat` of each process, for messages.
pub fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the live members of process group `pgid` are all gone within `within`.
/// SIGKILL is delivered at once, but an orphaned grandchild may take a moment to exit.
pub fn group_gone(pgid: u32, within: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if std::time::Instant::now() >= until {
            eprintln!("still alive: {}", describe(&group_members(pgid)));
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
