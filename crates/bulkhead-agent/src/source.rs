//! Where the agent's resources come from: a directory of YAML/JSON that it watches.
//!
//! The directory is polled (names, sizes and modification times): simple, needs no
//! inotify, and a change is seen within one poll interval. A load is all-or-nothing: a
//! directory with any invalid document yields the errors and the agent keeps enforcing
//! the last good state. A good load is handed over as the upserts and deletes that turn
//! the last good set into it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bulkhead_api::{LoadErrors, ResourceKey, load_paths};
use bulkhead_calc::Update;

use crate::fingerprint::{Fingerprint, Fingerprints};

/// A watched directory of resources.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    seen: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
    /// The last good load, as digests (the calc graph keeps the resources).
    held: HashMap<ResourceKey, Fingerprint>,
    fingerprints: Fingerprints,
}

impl DirSource {
    /// Watches `dir` (its `*.yaml`, `*.yml` and `*.json` files).
    pub fn new(dir: &Path) -> DirSource {
        DirSource {
            dir: dir.to_path_buf(),
            seen: None,
            held: HashMap::new(),
            fingerprints: Fingerprints::default(),
        }
    }

    /// `None` if nothing changed since the last call; otherwise the changes from the last
    /// good load to the new one (the first time: every resource), or why it is unusable.
    pub fn poll(&mut self) -> Option<Result<Vec<Update>, LoadErrors>> {
        let snapshot = self.snapshot();
        if self.seen.as_ref() == Some(&snapshot) {
            return None;
        }
        self.seen = Some(snapshot);
        Some(load_paths(&[&self.dir]).map(|loaded| {
            let mut next = HashMap::with_capacity(loaded.len());
            let mut upserts = Vec::new();
            for l in loaded {
                let key = l.resource.key();
                let print = self.fingerprints.of(&l.resource);
                if self.held.get(&key) != Some(&print) {
                    upserts.push(Update::Upsert(l.resource));
                }
                next.insert(key, print);
            }
            // Deletes first, as the graph has always taken them.
            let mut updates: Vec<Update> = self
                .held
                .keys()
                .filter(|k| !next.contains_key(*k))
                .map(|k| Update::Delete(k.clone()))
                .collect();
            updates.append(&mut upserts);
            self.held = next;
            updates
        }))
    }

    fn snapshot(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()))
            })
            .collect();
        files.sort();
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gnp(name: &str, order: u32) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec: {{order: {order}, selector: all()}}\n---\n"
        )
    }

    fn names(updates: &[Update]) -> Vec<String> {
        updates
            .iter()
            .map(|u| match u {
                Update::Upsert(r) => format!("upsert {}", r.meta().name),
                Update::Delete(k) => format!("delete {}", k.name),
            })
            .collect()
    }

    #[test]
    fn hands_over_only_what_changed_since_the_last_good_load() {
        let dir = std::env::temp_dir().join(format!("bulkhead-dirsource-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("p.yaml");
        let mut source = DirSource::new(&dir);

        std::fs::write(&file, gnp("a", 1) + &gnp("b", 1) + &gnp("c", 1)).expect("write");
        let mut first = names(&source.poll().expect("a load").expect("valid"));
        first.sort();
        assert_eq!(first, ["upsert a", "upsert b", "upsert c"]);
        assert!(source.poll().is_none(), "nothing changed");

        // One policy edited, one removed, in the same file.
        std::fs::write(&file, gnp("a", 1) + &gnp("b", 22)).expect("write");
        let second = names(&source.poll().expect("a load").expect("valid"));
        assert_eq!(second, ["delete c", "upsert b"]);

        // An invalid document: nothing is handed over, and the edit made meanwhile comes
        // with the fix.
        std::fs::write(dir.join("bad.yaml"), "kind: Nonsense\n").expect("write");
        std::fs::write(&file, gnp("a", 333) + &gnp("b", 22)).expect("write");
        assert!(source.poll().expect("a load").is_err());
        std::fs::remove_file(dir.join("bad.yaml")).expect("remove");
        let third = names(&source.poll().expect("a load").expect("valid"));
        assert_eq!(third, ["upsert a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
