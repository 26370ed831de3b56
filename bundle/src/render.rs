//! Writing bundles: canonical JSON (sorted keys, two-space indent, final newline), the
//! digest annotation that ties `config.json` to `omac.json`, and atomic file writes.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ext::ANNOTATION;
use crate::generate::Bundle;
use crate::Error;

/// The two files of a bundle, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `config.json`.
    pub config: Vec<u8>,
    /// `omac.json`.
    pub ext: Vec<u8>,
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `value` as canonical JSON: keys sorted at every level, two-space indent, final newline.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let v = sorted(serde_json::to_value(value).expect("bundle types always serialize"));
    let mut out = serde_json::to_vec_pretty(&v).expect("a JSON value always serializes");
    out.push(b'\n');
    out
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Renders both files, recording the digest of `omac.json` in `config.json`.
pub fn render(bundle: &Bundle) -> Rendered {
    let ext = canonical_json(&bundle.ext);
    let mut config = bundle.config.clone();
    config
        .annotations
        .insert(ANNOTATION.to_string(), digest(&ext));
    Rendered {
        config: canonical_json(&config),
        ext,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a reader sees the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_atomic_with(path, bytes, mode, true)
}

/// [`write_atomic`]; `sync`: flush the file to disk before the rename (what survives a
/// crash), pointless for scratch files that die with the process that wrote them.
fn write_atomic_with(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically unless the file already holds exactly them (a bundle
/// made again from the same inputs): then nothing is written, synced or renamed.
fn write_if_changed(path: &Path, bytes: &[u8], sync: bool) -> Result<bool, Error> {
    match std::fs::read(path) {
        Ok(old) if old == bytes => Ok(false),
        _ => write_atomic_with(path, bytes, 0o644, sync).map(|_| true),
    }
}

/// Writes the bundle into `dir` (created if needed): `omac.json`, `config.json`, `rootfs/`.
/// Files that already hold the same bytes are left alone.
pub fn write(dir: &Path, rendered: &Rendered) -> Result<(), Error> {
    write_files(dir, rendered, true)
}

/// [`write`] without flushing the files to disk: for a bundle that lives only as long as
/// the session that made it (`omac start` writes its own into the session's runtime
/// directory, removed when it ends). Each file is still replaced atomically. Two fsyncs
/// cost `omac start` 1 to 4 ms on an ext4 `/tmp`, more when the disk is busy.
pub fn write_scratch(dir: &Path, rendered: &Rendered) -> Result<(), Error> {
    write_files(dir, rendered, false)
}

fn write_files(dir: &Path, rendered: &Rendered, sync: bool) -> Result<(), Error> {
    std::fs::create_dir_all(dir.join("rootfs")).map_err(|e| Error::io(dir, e))?;
    // omac.json first: a reader that sees the new config.json finds its matching extension.
    write_if_changed(&dir.join("omac.json"), &rendered.ext, sync)?;
    write_if_changed(&dir.join("config.json"), &rendered.config, sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_not_rewritten_and_a_changed_one_is() {
        for sync in [true, false] {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("f.json");
            assert!(write_if_changed(&p, b"{}\n", sync).unwrap());
            let inode =
                |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
            let first = inode(&p);
            assert!(!write_if_changed(&p, b"{}\n", sync).unwrap());
            assert_eq!(inode(&p), first, "an identical file was replaced");
            assert!(write_if_changed(&p, b"[]\n", sync).unwrap());
            assert_eq!(std::fs::read(&p).unwrap(), b"[]\n");
            let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "a temporary file was left behind");
        }
    }

    #[test]
    fn a_scratch_bundle_holds_the_same_files() {
        let r = Rendered {
            config: b"{\"c\": 1}\n".to_vec(),
            ext: b"{\"e\": 2}\n".to_vec(),
        };
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        write(&a, &r).unwrap();
        write_scratch(&b, &r).unwrap();
        for f in ["config.json", "omac.json"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap()
            );
        }
        assert!(b.join("rootfs").is_dir());
    }

    #[test]
    fn canonical_json_sorts_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        let s = String::from_utf8(canonical_json(&v)).unwrap();
        assert_eq!(
            s,
            "{\n  \"a\": {\n    \"c\": null,\n    \"d\": [\n      {\n        \"y\": 2,\n        \"z\": 1\n      }\n    ]\n  },\n  \"b\": 1\n}\n"
        );
    }
}
