//! The reproducible tar of a skill directory, whose sha256 is the skill's layer digest.
//!
//! The tar is a function of the tree's content only:
//! - entries sorted by their name's bytes (directories named `dir/`, so a directory comes
//!   before what it holds);
//! - mtime 0, uid 0, gid 0, empty user and group names;
//! - modes fixed from the executable bit: directories 0755, files 0755 if any `x` bit is set
//!   else 0644, symlinks 0777 (setuid, setgid and sticky bits are dropped);
//! - symlinks recorded as symlinks with their target, never followed (a symlinked skill root
//!   is followed: it is the skill);
//! - the build and cache folders and editor files of reference §5.3 left out at any depth;
//! - sockets, FIFOs and devices left out (and reported);
//! - ustar headers, GNU long-name records for names over 100 bytes, two zero blocks at the end.
//!
//! So copies with other mtimes, owners or umasks hash the same, and any change of content, of
//! an executable bit, of a symlink or of a name hashes differently.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::exclude;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the skill root, `/`-separated, as bytes.
    pub rel: Vec<u8>,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of entries a layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Whether any executable bit is set.
        exec: bool,
        /// Its size when scanned.
        size: u64,
    },
    /// A symbolic link and its target, as written.
    Symlink(PathBuf),
}

impl Entry {
    /// The name in the tar: the relative path, with a trailing `/` for directories.
    pub fn tar_name(&self) -> Vec<u8> {
        let mut n = self.rel.clone();
        if self.kind == Kind::Dir {
            n.push(b'/');
        }
        n
    }

    /// The mode recorded for it.
    pub fn mode(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o755,
            Kind::File { exec: true, .. } => 0o755,
            Kind::File { exec: false, .. } => 0o644,
            Kind::Symlink(_) => 0o777,
        }
    }
}

/// A scanned skill directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The root that was scanned (symlinks of the root itself resolved).
    pub root: PathBuf,
    /// The entries, in tar order.
    pub entries: Vec<Entry>,
    /// Special files (sockets, FIFOs, devices) left out.
    pub skipped: Vec<PathBuf>,
}

/// Lists `dir` in tar order, without following symlinks inside it.
pub fn scan(dir: &Path) -> Result<Scan> {
    let root = std::fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
    let meta = std::fs::metadata(&root).map_err(|e| Error::io("reading", &root, e))?;
    if !meta.is_dir() {
        return Err(Error::NotFound {
            what: format!("{} is not a directory", root.display()),
            fix: "point omac at the skill's directory".into(),
        });
    }
    let mut out = Scan {
        root: root.clone(),
        ..Default::default()
    };
    walk(&root, &[], &mut out)?;
    out.entries.sort_by_key(|e| e.tar_name());
    Ok(out)
}

fn walk(dir: &Path, rel: &[u8], out: &mut Scan) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("listing", dir, e))?;
        let name = ent.file_name();
        let path = ent.path();
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if exclude::is_excluded_dir(name.as_bytes()) {
                continue;
            }
            out.entries.push(Entry {
                rel: child.clone(),
                kind: Kind::Dir,
            });
            walk(&path, &child, out)?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| Error::io("reading the link", &path, e))?;
            out.entries.push(Entry {
                rel: child,
                kind: Kind::Symlink(target),
            });
        } else if ft.is_file() {
            if exclude::is_excluded_file(name.as_bytes()) {
                continue;
            }
            out.entries.push(Entry {
                rel: child,
                kind: Kind::File {
                    exec: meta.permissions().mode() & 0o111 != 0,
                    size: meta.len(),
                },
            });
        } else {
            out.skipped.push(path);
        }
    }
    Ok(())
}

/// Writes the reproducible tar of a scanned directory to `w`. A file that changes size while
/// it is read is an error (the tar would not describe one state of the tree).
pub fn write_tar<W: Write>(scan: &Scan, w: W) -> Result<W> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let io_err = |e: io::Error| Error::io("writing the layer of", &scan.root, e);
    for e in &scan.entries {
        let name = std::ffi::OsStr::from_bytes(&e.tar_name()).to_os_string();
        let name = Path::new(&name);
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(e.mode());
        match &e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, name, io::empty()).map_err(io_err)?;
            }
            Kind::File { size, .. } => {
                let path = scan.root.join(std::ffi::OsStr::from_bytes(&e.rel));
                let f = File::open(&path).map_err(|err| Error::io("reading", &path, err))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                let mut r = Exact {
                    inner: f,
                    left: *size,
                    path: &path,
                };
                b.append_data(&mut h, name, &mut r).map_err(io_err)?;
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).map_err(io_err)?;
            }
        }
    }
    b.into_inner().map_err(io_err)
}

/// Reads exactly `left` bytes, failing if the file is shorter or longer.
struct Exact<'a> {
    inner: File,
    left: u64,
    path: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::other(format!(
                    "{} grew while omac read it; try again when it is not being written",
                    self.path.display()
                )));
            }
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while omac read it; try again when it is not being written",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes everything written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// `sha256:<hex>` of what was written, its length, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The layer digest (`sha256:<hex>`) of a scanned directory.
pub fn digest_of(scan: &Scan) -> Result<String> {
    let w = write_tar(scan, HashingWriter::new(io::sink()))?;
    Ok(w.finish().0)
}

/// The layer digest (`sha256:<hex>`) of a skill directory.
pub fn digest(dir: &Path) -> Result<String> {
    digest_of(&scan(dir)?)
}
