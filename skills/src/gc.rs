//! `omac skills gc`: which layers the registries still reference, then the store's sweep.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::discover::Scope;
use crate::env::Env;
use crate::error::Result;
use crate::layer::{index, GcReport, Store};
use crate::registry::{self, Registry};

/// What gc looked at and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The store's report.
    pub report: GcReport,
    /// Registry files read (the index's, the global one and this workdir's).
    pub registries: Vec<PathBuf>,
    /// Registry files dropped from the index because they no longer exist.
    pub forgotten: Vec<PathBuf>,
}

/// Removes the layers that no known registry references. The known registries are the
/// index's (every registry a registration ever wrote a layer into), the global one and this
/// workdir's. A registry that cannot be read stops gc (what it references is unknown).
pub fn gc(env: &Env, store: &Store, dry_run: bool) -> Result<Outcome> {
    let indexed: BTreeSet<PathBuf> = index::load(store)?.registries;
    let mut paths = indexed.clone();
    for scope in [Scope::Workdir, Scope::Global] {
        if let Some(f) = registry::files(env, scope) {
            paths.insert(f.registry);
        }
    }
    let mut referenced = BTreeSet::new();
    let mut read = Vec::new();
    let mut missing = Vec::new();
    for p in &paths {
        if !p.exists() {
            if indexed.contains(p) {
                missing.push(p.clone());
            }
            continue;
        }
        let reg = Registry::load(p)?;
        referenced.extend(reg.registered.into_iter().filter_map(|e| e.layer_digest));
        read.push(p.clone());
    }
    let report = store.gc(&referenced, dry_run)?;
    if !dry_run && !missing.is_empty() {
        index::update(store, |i| {
            for m in &missing {
                i.registries.remove(m);
            }
        })?;
    }
    Ok(Outcome {
        report,
        registries: read,
        forgotten: missing,
    })
}
