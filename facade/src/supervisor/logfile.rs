//! Per-sidecar log files: the sidecar's stdout and stderr, pumped by omac into
//! `<skill>.log`, rotated by size to `<skill>.log.1` ... `.N`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// A log file that rotates when it would grow past `max_bytes`, keeping `keep` old files.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl RotatingLog {
    /// Opens (appends to) `path`.
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<RotatingLog> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: Some(file),
            size,
        })
    }

    /// The log's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(self.numbered(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                std::fs::rename(self.numbered(n), self.numbered(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, self.numbered(1)).or_else(ignore_missing)?;
        }
        self.file = Some(open(&self.path)?);
        self.size = 0;
        Ok(())
    }

    /// Appends `buf`, rotating first when it would pass the size limit.
    pub(crate) fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let f = match &mut self.file {
            Some(f) => f,
            None => {
                self.file = Some(open(&self.path)?);
                self.file
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("log file"))?
            }
        };
        f.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// A log shared by the pumps of one sidecar.
pub(crate) type SharedLog = Arc<Mutex<RotatingLog>>;

/// Writes a line of omac's own into the log.
pub(crate) fn note(log: &SharedLog, line: &str) {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = l.write(format!("{line}\n").as_bytes()) {
        tracing::warn!("writing {}: {e}", l.path().display());
    }
}

/// Copies a pipe into the log until it closes.
pub(crate) fn pump<R: AsyncRead + Unpin + Send + 'static>(mut r: R, log: SharedLog) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = l.write(&buf[..n]) {
                        tracing::warn!("writing {}: {e}", l.path().display());
                    }
                }
            }
        }
    });
}

/// The last `lines` lines of a log (at most 8 KiB of it), for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(8192);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        let mut log = RotatingLog::open(&p, 10, 2).unwrap();
        for i in 0..5 {
            log.write(format!("line-{i}\n").as_bytes()).unwrap();
        }
        // Each 7-byte line fills a file: s.log holds the last, .1 and .2 the two before.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "line-4\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s.log.1")).unwrap(),
            "line-3\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s.log.2")).unwrap(),
            "line-2\n"
        );
        assert!(!dir.path().join("s.log.3").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(tail(&p, 5), "line-4");
    }

    #[test]
    fn a_reopened_log_continues_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        RotatingLog::open(&p, 100, 1)
            .unwrap()
            .write(&[b'x'; 90])
            .unwrap();
        let mut again = RotatingLog::open(&p, 100, 1).unwrap();
        again.write(&[b'y'; 20]).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 20);
        assert_eq!(
            std::fs::metadata(dir.path().join("s.log.1")).unwrap().len(),
            90
        );
    }
}
