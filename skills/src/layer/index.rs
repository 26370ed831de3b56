//! The list of registry files that have referenced a layer (`<data>/omac/layers/
//! registries.json`), so `omac skills gc` run from one workdir keeps the layers another
//! workdir's registry still uses. A registry is added when a registration writes a layer
//! digest into it, and dropped by `gc` once the file no longer exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, Lock};
use crate::layer::store::Store;

/// `registries.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Format version (1).
    pub version: u32,
    /// Absolute paths of registry files (`.../sidecar.json`), sorted.
    pub registries: BTreeSet<PathBuf>,
}

fn paths(store: &Store) -> (PathBuf, PathBuf) {
    (
        store.root().join("registries.json"),
        store.root().join("registries.json.lock"),
    )
}

/// Reads the index (empty when missing).
pub fn load(store: &Store) -> Result<Index> {
    let (file, _) = paths(store);
    read(&file)
}

fn read(file: &Path) -> Result<Index> {
    match fsutil::read_if_exists(file)? {
        None => Ok(Index {
            version: 1,
            ..Default::default()
        }),
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::invalid(
                file,
                "-",
                format!("is not a valid registry index: {e}"),
                "delete it; omac skills gc then keeps only layers the global registry and this \
                 workdir reference",
            )
        }),
    }
}

/// Under the index lock: reads it, lets `f` change it, writes it back atomically.
pub fn update<T>(store: &Store, f: impl FnOnce(&mut Index) -> T) -> Result<T> {
    let (file, lock) = paths(store);
    fsutil::ensure_dir(store.root(), 0o700)?;
    let _l = Lock::exclusive(&lock)?;
    let mut idx = read(&file)?;
    let before = idx.clone();
    let out = f(&mut idx);
    if idx != before {
        idx.version = 1;
        let bytes = serde_json::to_vec_pretty(&idx).unwrap_or_default();
        fsutil::atomic_write(&file, &bytes, 0o600)?;
    }
    Ok(out)
}

/// Records that `registry` references layers.
pub fn record(store: &Store, registry: &Path) -> Result<()> {
    update(store, |i| {
        i.registries.insert(registry.to_path_buf());
    })
}
