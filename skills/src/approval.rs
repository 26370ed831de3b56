//! Whether a registered skill may run as it is now, and the layer it runs from.
//!
//! A registration approves one layer digest. Before a session uses a skill it checks that
//! the directory still hashes to that digest; a changed skill is refused until it is
//! registered again, or run once with `--accept-skill-changes` (loudly). Entries the Go omac
//! wrote carry only its `bundle_hash`: they are checked with that hash, and their layer is
//! imported on first use.

use std::path::{Path, PathBuf};

use crate::bundle_hash::bundle_hash;
use crate::error::{Error, Result};
use crate::layer::{tarball, Pin, Store};
use crate::registry::Entry;

/// How a skill directory compares with its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// It hashes to the approved layer digest.
    Unchanged {
        /// The approved digest.
        digest: String,
    },
    /// It no longer hashes to what was approved.
    Changed {
        /// What the registry approved (a layer digest, or the Go bundle hash).
        registered: String,
        /// What the directory hashes to now (same kind).
        current: String,
        /// The directory's layer digest now.
        current_layer: String,
    },
}

/// Compares the skill directory `dir` with its registration.
pub fn check(entry: &Entry, dir: &Path) -> Result<Drift> {
    let current_layer = tarball::digest(dir)?;
    match &entry.layer_digest {
        Some(d) if *d == current_layer => Ok(Drift::Unchanged { digest: d.clone() }),
        Some(d) => Ok(Drift::Changed {
            registered: d.clone(),
            current: current_layer.clone(),
            current_layer,
        }),
        None => {
            let current = bundle_hash(dir)?;
            if current == entry.bundle_hash {
                Ok(Drift::Unchanged {
                    digest: current_layer,
                })
            } else {
                Ok(Drift::Changed {
                    registered: entry.bundle_hash.clone(),
                    current,
                    current_layer,
                })
            }
        }
    }
}

/// The layer a session runs a skill from.
#[derive(Debug)]
pub struct Runnable {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The read-only layer directory (the sidecar's cwd).
    pub path: PathBuf,
    /// True when the skill changed and `accept_changes` let it through: say so loudly.
    pub accepted_change: bool,
    /// Holds the layer against `omac skills gc` while the session runs.
    pub pin: Pin,
}

/// Checks the registered skill `entry` (directory `dir`) and returns the pinned store layer
/// to run it from, importing it if the store lacks it. A changed skill is
/// [`Error::Changed`] unless `accept_changes`, in which case its current content is imported
/// and used.
pub fn runnable(
    store: &Store,
    entry: &Entry,
    dir: &Path,
    accept_changes: bool,
) -> Result<Runnable> {
    let (digest, accepted_change) = match check(entry, dir)? {
        Drift::Unchanged { digest } => (digest, false),
        Drift::Changed {
            registered,
            current,
            current_layer,
        } => {
            if !accept_changes {
                return Err(Error::Changed {
                    skill: entry.name.clone(),
                    dir: dir.to_path_buf(),
                    registered,
                    current,
                });
            }
            tracing::warn!(
                skill = %entry.name,
                approved = %registered,
                now = %current,
                "running a skill that changed since it was registered (--accept-skill-changes)"
            );
            (current_layer, true)
        }
    };
    let pin = store.pin(&digest)?;
    let path = match store.locate(&digest)? {
        Some(p) => p,
        None => store.import_dir(dir, Some(&digest))?.path,
    };
    Ok(Runnable {
        digest,
        path,
        accepted_change,
        pin,
    })
}
