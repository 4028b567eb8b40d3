//! Durability of the embedded store: a writer process is killed with SIGKILL at a random
//! moment; every write it acknowledged must be there after reopening, and the file must be
//! clean.
//!
//! The writer is this test binary run again with `BULKHEAD_STORE_WRITER_DIR` set (test
//! `writer_child`, which does nothing otherwise). It prints `ack <revision> <key>` after each
//! put returned, on stdout, which the parent reads through a pipe.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bulkhead_store::{EmbeddedOptions, EmbeddedStore, Expect, Store};

const DIR_ENV: &str = "BULKHEAD_STORE_WRITER_DIR";
const ROUND_ENV: &str = "BULKHEAD_STORE_WRITER_ROUND";

/// The value written under a key: derived from the key, a few KiB so that commits span pages.
fn value_for(key: &str) -> Vec<u8> {
    key.as_bytes()
        .iter()
        .cycle()
        .take(3000 + key.len() * 13)
        .copied()
        .collect()
}

/// The child: writes until killed.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return; // not the child: nothing to do
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(
            &dir,
            EmbeddedOptions {
                retention: 100_000,
                ..EmbeddedOptions::default()
            },
        )
        .unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0u64.. {
            let key = format!("/dur/{round}/{i:06}");
            let rev = store
                .put(&key, value_for(&key), Expect::Absent)
                .await
                .unwrap();
            writeln!(out, "ack {rev} {key}").unwrap();
            out.flush().unwrap();
            // Overwrites and deletes too, so that the kill can land in any kind of write.
            if i % 5 == 4 {
                let hot = format!("/dur/hot/{round}");
                let rev = store.put(&hot, value_for(&key), Expect::Any).await.unwrap();
                writeln!(out, "ack {rev} {hot} {key}").unwrap();
            }
            if i % 7 == 6 {
                let old = format!("/dur/{round}/{:06}", i - 3);
                let rev = store.delete(&old, Expect::Any).await.unwrap().unwrap();
                writeln!(out, "del {rev} {old}").unwrap();
            }
            out.flush().unwrap();
        }
    });
}

#[derive(Debug)]
enum Ack {
    /// key → value written (derived from the second key)
    Put {
        rev: u64,
        key: String,
        value_of: String,
    },
    Delete {
        rev: u64,
        key: String,
    },
}

fn parse(line: &str) -> Option<Ack> {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["ack", rev, key] => Some(Ack::Put {
            rev: rev.parse().ok()?,
            key: key.to_string(),
            value_of: key.to_string(),
        }),
        ["ack", rev, key, of] => Some(Ack::Put {
            rev: rev.parse().ok()?,
            key: key.to_string(),
            value_of: of.to_string(),
        }),
        ["del", rev, key] => Some(Ack::Delete {
            rev: rev.parse().ok()?,
            key: key.to_string(),
        }),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let random = RandomState::new();
    let mut total = 0;
    let mut last_rev = 0;
    for round in 0..4u32 {
        let mut child = Command::new(&exe)
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = parse(&line) {
                    acks.push(ack);
                    let _ = tx.send(());
                }
            }
            acks
        });
        // Wait for the first acknowledgement, then kill at a random moment within 0.5 s.
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the writer acknowledges a write");
        let delay = Duration::from_millis(random.hash_one(round) % 500);
        tokio::time::sleep(delay).await;
        child.kill().unwrap(); // SIGKILL, by PID
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(!acks.is_empty());

        // The file is clean (redb's check, and the store's invariants).
        let report = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || EmbeddedStore::check(dir)
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            report.clean,
            "round {round}: redb had to repair: {report:?}"
        );

        // Every acknowledged write is there.
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let now = store.current_revision().await.unwrap();
        let max_ack = acks
            .iter()
            .map(|a| match a {
                Ack::Put { rev, .. } | Ack::Delete { rev, .. } => *rev,
            })
            .max()
            .unwrap();
        assert!(
            now >= max_ack,
            "round {round}: revision {now} < acknowledged {max_ack}"
        );
        let deleted: std::collections::HashSet<&str> = acks
            .iter()
            .filter_map(|a| match a {
                Ack::Delete { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        // The writer deletes key i - 3 right after acknowledging key i (i % 7 == 6): if it was
        // killed after that delete committed but before printing it, the key is rightly gone.
        let last_index = acks
            .iter()
            .filter_map(|a| match a {
                Ack::Put { key, .. } => key
                    .strip_prefix(&format!("/dur/{round}/"))?
                    .parse::<u64>()
                    .ok(),
                Ack::Delete { .. } => None,
            })
            .max()
            .unwrap();
        let unacknowledged_delete =
            (last_index % 7 == 6).then(|| format!("/dur/{round}/{:06}", last_index - 3));
        for ack in &acks {
            match ack {
                Ack::Put { key, .. } if unacknowledged_delete.as_deref() == Some(key.as_str()) => {
                    if let Some(kv) = store.get(key).await.unwrap() {
                        assert_eq!(kv.value, value_for(key), "{key}");
                    }
                }
                Ack::Put { rev, key, value_of }
                    if !deleted.contains(key.as_str()) && !key.contains("hot") =>
                {
                    let kv = store
                        .get(key)
                        .await
                        .unwrap()
                        .unwrap_or_else(|| panic!("round {round}: lost {key}@{rev}"));
                    assert_eq!(kv.mod_revision, *rev, "{key}");
                    assert_eq!(kv.value, value_for(value_of), "{key}");
                }
                Ack::Put { rev, key, .. } => {
                    // Overwritten or deleted later (maybe by an unacknowledged write).
                    if let Some(kv) = store.get(key).await.unwrap() {
                        assert!(kv.mod_revision >= *rev);
                    }
                }
                Ack::Delete { key, .. } => assert_eq!(store.get(key).await.unwrap(), None, "{key}"),
            }
        }
        // The history replays every acknowledged write of the round, in order.
        let mut stream = store
            .watch(&format!("/dur/{round}/"), last_rev)
            .await
            .unwrap();
        let mut events = Vec::new();
        while events.last().is_none_or(|&r| r < now) {
            use futures_util::StreamExt;
            match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                Ok(Some(Ok(event))) => events.push(event.revision()),
                Ok(other) => panic!("{other:?}"),
                Err(_) => break, // the last writes were to the hot key
            }
        }
        for ack in &acks {
            if let Ack::Put { rev, key, .. } | Ack::Delete { rev, key } = ack
                && key.starts_with(&format!("/dur/{round}/"))
            {
                assert!(
                    events.binary_search(rev).is_ok(),
                    "round {round}: {key}@{rev} missing from the history"
                );
            }
        }
        total += acks.len();
        last_rev = now;
        eprintln!(
            "round {round}: killed after {delay:?}, {} acknowledged writes, revision {now}",
            acks.len()
        );
        drop((stream, store));
    }
    assert!(total > 0);
}
