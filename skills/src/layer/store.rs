//! The content-addressed layer store: `<data>/omac/layers/sha256/<hex>/` holds the unpacked
//! layer whose digest is `sha256:<hex>`, read-only (files 0444 or 0555, directories 0555).
//! Sidecars run from here, never from the working copy the agent can edit.
//!
//! - Import writes the reproducible tar through a hasher into a temp file, unpacks that very
//!   tar into a temp directory beside the final one, makes it read-only, re-hashes the
//!   unpacked tree, and renames it into place: a layer is there whole and verified, or not at
//!   all. Concurrent imports of one digest are harmless (the second finds it present).
//! - A pin (shared flock on `pins/<hex>.pin`) marks a layer in use; `gc` takes the pin
//!   exclusively, without waiting, before it deletes, so it never removes a layer a running
//!   session or a registration in progress holds.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::fsutil::{self, Lock};
use crate::layer::tarball::{self, HashingWriter};

/// Temp entries older than this are leftovers of a crash and are swept by `gc`.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The layer store under a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

/// A layer brought into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The read-only layer directory.
    pub path: PathBuf,
    /// Whether this call created it (false: it was already there and verified).
    pub created: bool,
    /// Special files of the source left out of the layer.
    pub skipped: Vec<PathBuf>,
}

/// A layer in use: `gc` leaves it alone while this lives.
#[derive(Debug)]
pub struct Pin {
    _lock: Lock,
    /// The pinned digest.
    pub digest: String,
}

/// What `gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Layers removed (or that would be, with `dry_run`), with their sizes in bytes.
    pub removed: Vec<(String, u64)>,
    /// Layers still referenced by a registry.
    pub kept: usize,
    /// Unreferenced layers left because something holds a pin on them.
    pub in_use: Vec<String>,
    /// Leftover temp entries swept.
    pub swept: usize,
}

/// The hex part of a `sha256:<64 hex>` digest, or an error naming it.
pub fn hex_of(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(Error::invalid(
            "-",
            "digest",
            format!("{digest:?} is not a sha256 digest (sha256:<64 lowercase hex>)"),
            "use the digest omac printed or recorded",
        ))
    }
}

impl Store {
    /// The store of the data directory `data` (`~/.local/share/omac`).
    pub fn new(data: &Path) -> Store {
        Store {
            root: data.join("layers"),
        }
    }

    /// `<data>/layers`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn pins(&self) -> PathBuf {
        self.root.join("pins")
    }

    fn ensure(&self) -> Result<()> {
        fsutil::ensure_dir(&self.blobs(), 0o700)?;
        fsutil::ensure_dir(&self.pins(), 0o700)
    }

    /// Where the layer `digest` lives (whether or not it is there).
    pub fn path_of(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs().join(hex_of(digest)?))
    }

    /// The layer directory if the store has it.
    pub fn locate(&self, digest: &str) -> Result<Option<PathBuf>> {
        let p = self.path_of(digest)?;
        Ok(std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
            .then_some(p))
    }

    /// Holds the layer against `gc` until the pin is dropped (the layer need not exist yet).
    pub fn pin(&self, digest: &str) -> Result<Pin> {
        let hex = hex_of(digest)?;
        self.ensure()?;
        Ok(Pin {
            _lock: Lock::shared(&self.pins().join(format!("{hex}.pin")))?,
            digest: digest.to_string(),
        })
    }

    /// Re-hashes the stored layer and checks it still matches its name.
    pub fn verify(&self, digest: &str) -> Result<PathBuf> {
        let Some(p) = self.locate(digest)? else {
            return Err(Error::NotFound {
                what: format!(
                    "layer {digest} is not in the store ({})",
                    self.blobs().display()
                ),
                fix: "register the skill again (`omac register <skill>`)".into(),
            });
        };
        let actual = tarball::digest(&p)?;
        if actual != digest {
            return Err(Error::Corrupt { path: p, actual });
        }
        Ok(p)
    }

    /// Imports the skill directory `dir` as a layer (see the module doc). If the layer is
    /// already present it is verified, and replaced if it was damaged. When `expected` is
    /// given, a directory that does not hash to it is refused.
    pub fn import_dir(&self, dir: &Path, expected: Option<&str>) -> Result<Imported> {
        self.ensure()?;
        let scan = tarball::scan(dir)?;
        let tar_path = self
            .blobs()
            .join(format!(".tmp-{}.tar", fsutil::unique_suffix()));
        let result = self.import_scan(&scan, &tar_path, expected);
        let _ = std::fs::remove_file(&tar_path);
        result
    }

    fn import_scan(
        &self,
        scan: &tarball::Scan,
        tar_path: &Path,
        expected: Option<&str>,
    ) -> Result<Imported> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tar_path)
            .map_err(|e| Error::io("creating", tar_path, e))?;
        let w = tarball::write_tar(scan, HashingWriter::new(BufWriter::new(file)))?;
        let (digest, _len, buf) = w.finish();
        let mut file = buf
            .into_inner()
            .map_err(|e| Error::io("writing", tar_path, e.into_error()))?;
        if let Some(want) = expected {
            if want != digest {
                return Err(Error::Changed {
                    skill: scan
                        .root
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    dir: scan.root.clone(),
                    registered: want.to_string(),
                    current: digest,
                });
            }
        }
        let path = self.path_of(&digest)?;
        if path.is_dir() {
            match self.verify(&digest) {
                Ok(p) => {
                    return Ok(Imported {
                        digest,
                        path: p,
                        created: false,
                        skipped: scan.skipped.clone(),
                    })
                }
                Err(Error::Corrupt { .. }) => {
                    tracing::warn!(layer = %path.display(), "stored layer was damaged; replacing it");
                    self.remove_layer(&path)?;
                }
                Err(e) => return Err(e),
            }
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("reading", tar_path, e))?;
        let staging = self
            .blobs()
            .join(format!(".tmp-{}", fsutil::unique_suffix()));
        let unpacked = unpack(&mut file, &staging).and_then(|()| {
            let actual = tarball::digest(&staging)?;
            if actual != digest {
                return Err(Error::Corrupt {
                    path: staging.clone(),
                    actual,
                });
            }
            Ok(())
        });
        if let Err(e) = unpacked {
            let _ = remove_tree(&staging);
            return Err(e);
        }
        match std::fs::rename(&staging, &path) {
            Ok(()) => {}
            // Someone else imported it meanwhile: theirs is as good as ours.
            Err(e) if path.is_dir() => {
                tracing::debug!(error = %e, "layer appeared concurrently");
                let _ = remove_tree(&staging);
                return Ok(Imported {
                    path: self.verify(&digest)?,
                    digest,
                    created: false,
                    skipped: scan.skipped.clone(),
                });
            }
            Err(e) => {
                let _ = remove_tree(&staging);
                return Err(Error::io("moving the layer into", &path, e));
            }
        }
        if let Ok(d) = File::open(self.blobs()) {
            let _ = d.sync_all();
        }
        Ok(Imported {
            digest,
            path,
            created: true,
            skipped: scan.skipped.clone(),
        })
    }

    /// Every layer digest in the store.
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.blobs();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("listing", &dir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if hex_of(&digest).is_ok() {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every layer not in `referenced` and not pinned, and sweeps temp leftovers older
    /// than an hour. With `dry_run`, only reports. Runs under the store's gc lock.
    pub fn gc(&self, referenced: &BTreeSet<String>, dry_run: bool) -> Result<GcReport> {
        self.ensure()?;
        let _gc = Lock::exclusive(&self.root.join("gc.lock"))?;
        let mut report = GcReport::default();
        for digest in self.list()? {
            if referenced.contains(&digest) {
                report.kept += 1;
                continue;
            }
            let hex = hex_of(&digest)?.to_string();
            let pin_path = self.pins().join(format!("{hex}.pin"));
            let Some(pin) = Lock::try_exclusive(&pin_path)? else {
                report.in_use.push(digest);
                continue;
            };
            let path = self.path_of(&digest)?;
            let size = tree_size(&path);
            if !dry_run {
                self.remove_layer(&path)?;
                // Unlink the pin while holding it: a waiting pinner re-opens the new inode.
                let _ = std::fs::remove_file(&pin_path);
            }
            drop(pin);
            report.removed.push((digest, size));
        }
        if !dry_run {
            report.swept = self.sweep()?;
        }
        Ok(report)
    }

    fn sweep(&self) -> Result<usize> {
        let dir = self.blobs();
        let mut n = 0;
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.as_bytes();
            if !(name.starts_with(b".tmp-") || name.starts_with(b".gc-")) {
                continue;
            }
            let old = ent
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old || name.starts_with(b".gc-") {
                remove_tree(&ent.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Moves a layer aside (same parent, so a read-only directory may move) and deletes it.
    fn remove_layer(&self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self
            .blobs()
            .join(format!(".gc-{name}-{}", fsutil::unique_suffix()));
        std::fs::rename(path, &aside).map_err(|e| Error::io("removing the layer", path, e))?;
        remove_tree(&aside)
    }
}

/// Unpacks a layer tar into `dest` (which must not exist) and makes it read-only. The tar is
/// treated as untrusted: only directories, regular files and symlinks, only relative paths
/// without `..`, and never through a symlink it created.
pub fn unpack(r: &mut impl std::io::Read, dest: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(|e| Error::io("creating", dest, e))?;
    let mut archive = tar::Archive::new(r);
    let mut dirs: Vec<PathBuf> = vec![dest.to_path_buf()];
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    let bad = |what: String| {
        Error::invalid(
            dest,
            "-",
            format!("the layer is malformed: {what}"),
            "register the skill again; report this if it persists",
        )
    };
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading the layer for", dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the layer for", dest, e))?;
        let rel = entry
            .path()
            .map_err(|e| Error::io("reading the layer for", dest, e))?
            .into_owned();
        if rel.as_os_str().is_empty()
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(bad(format!("entry {:?} is not a plain relative path", rel)));
        }
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !made.contains(parent) {
                return Err(bad(format!("entry {:?} comes before its directory", rel)));
            }
        }
        let target = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&target)
                    .map_err(|e| Error::io("creating", &target, e))?;
                made.insert(rel.clone());
                dirs.push(target);
            }
            tar::EntryType::Regular => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| Error::io("creating", &target, e))?;
                std::io::copy(&mut entry, &mut f).map_err(|e| Error::io("writing", &target, e))?;
                let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
                f.set_permissions(std::fs::Permissions::from_mode(ro))
                    .map_err(|e| Error::io("setting the mode of", &target, e))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| Error::io("reading the layer for", dest, e))?
                    .ok_or_else(|| bad(format!("symlink {:?} has no target", rel)))?
                    .into_owned();
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| Error::io("creating the link", &target, e))?;
            }
            other => {
                return Err(bad(format!(
                    "entry {:?} has unsupported type {:?}",
                    rel, other
                )))
            }
        }
    }
    // Directories last, deepest first, so their contents could still be written.
    for d in dirs.iter().rev() {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555))
            .map_err(|e| Error::io("setting the mode of", d, e))?;
    }
    Ok(())
}

/// Deletes a tree whose directories may be read-only (never following symlinks).
pub fn remove_tree(path: &Path) -> Result<()> {
    fn writable(p: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        writable(&e.path());
                    }
                }
            }
        }
    }
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    writable(path);
    let r = if std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    r.map_err(|e| Error::io("removing", path, e))
}

fn tree_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}
