//! The local cache: the last table the agent applied, so that after a restart it restores
//! the rules before anything else — a restart never opens a gap.

use std::io::Write;
use std::path::{Path, PathBuf};

use bulkhead_dataplane::Table;

/// File name of the cached table in the state directory.
const FILE: &str = "table.json";

/// Reads the cached table; `Ok(None)` when there is none yet.
pub fn load(state_dir: &Path) -> Result<Option<Table>, String> {
    let path = state_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: unreadable cache: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the table atomically (temporary file, fsync, rename).
pub fn save(state_dir: &Path, table: &Table) -> Result<(), String> {
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let path = state_dir.join(FILE);
    let tmp: PathBuf = state_dir.join(format!("{FILE}.tmp"));
    let bytes = serde_json::to_vec(table).map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}
