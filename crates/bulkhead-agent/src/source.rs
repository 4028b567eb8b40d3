//! Where the agent's resources come from: a directory of YAML/JSON that it watches.
//!
//! The directory is polled (names, sizes and modification times): simple, needs no
//! inotify, and a change is seen within one poll interval. A load is all-or-nothing: a
//! directory with any invalid document yields the errors and the agent keeps enforcing
//! the last good state.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bulkhead_api::{LoadErrors, Resource, load_paths};

/// A watched directory of resources.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    seen: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
}

impl DirSource {
    /// Watches `dir` (its `*.yaml`, `*.yml` and `*.json` files).
    pub fn new(dir: &Path) -> DirSource {
        DirSource {
            dir: dir.to_path_buf(),
            seen: None,
        }
    }

    /// `None` if nothing changed since the last call; otherwise the new load.
    pub fn poll(&mut self) -> Option<Result<Vec<Resource>, LoadErrors>> {
        let snapshot = self.snapshot();
        if self.seen.as_ref() == Some(&snapshot) {
            return None;
        }
        self.seen = Some(snapshot);
        Some(load_paths(&[&self.dir]).map(|l| l.into_iter().map(|l| l.resource).collect()))
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
