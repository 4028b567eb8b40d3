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

use bulkhead_api::{LoadErrors, Resource, ResourceKey, load_paths};
use bulkhead_calc::Update;

/// A watched directory of resources.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    seen: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
    /// The last good load.
    held: HashMap<ResourceKey, Resource>,
}

impl DirSource {
    /// Watches `dir` (its `*.yaml`, `*.yml` and `*.json` files).
    pub fn new(dir: &Path) -> DirSource {
        DirSource {
            dir: dir.to_path_buf(),
            seen: None,
            held: HashMap::new(),
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
            let next: HashMap<ResourceKey, Resource> = loaded
                .into_iter()
                .map(|l| (l.resource.key(), l.resource))
                .collect();
            let mut updates: Vec<Update> = self
                .held
                .keys()
                .filter(|k| !next.contains_key(*k))
                .map(|k| Update::Delete(k.clone()))
                .collect();
            updates.extend(
                next.iter()
                    .filter(|(k, r)| self.held.get(*k) != Some(*r))
                    .map(|(_, r)| Update::Upsert(r.clone())),
            );
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
