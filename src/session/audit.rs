//! The audit log: one JSON object per line under the XDG state directory
//! (`~/.local/state/omac/audit.jsonl`, mode 0600), with a run id and a sequence number on
//! every event, and secret values redacted wherever they would appear.
//!
//! Every event is written with a single `write(2)` on a file opened with `O_APPEND`, so
//! lines from concurrent omac processes never interleave.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

/// Where the audit log goes when nothing says otherwise.
pub fn default_path() -> Option<PathBuf> {
    crate::paths::state_dir().map(|d| d.join("audit.jsonl"))
}

/// Text that replaces a secret value in any event.
pub const REDACTED: &str = "[redacted]";

struct Sink {
    file: std::fs::File,
}

/// A handle on the audit log of one run; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sink: Mutex<Sink>,
    run_id: String,
    mode: String,
    seq: AtomicU64,
    secrets: Mutex<Vec<String>>,
}

impl Audit {
    /// An audit log that records nothing (`--no-audit`).
    pub fn disabled() -> Audit {
        Audit { inner: None }
    }

    /// Opens (creating with mode 0600, in a 0700 directory) the log at `path` for a run.
    pub fn open(path: &Path, run_id: &str, mode: &str) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(Audit {
            inner: Some(Arc::new(Inner {
                sink: Mutex::new(Sink { file }),
                run_id: run_id.to_string(),
                mode: mode.to_string(),
                seq: AtomicU64::new(0),
                secrets: Mutex::new(Vec::new()),
            })),
        })
    }

    /// The run id (empty when disabled).
    pub fn run_id(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.run_id.as_str())
    }

    /// Registers a secret value so that it never appears in the log.
    pub fn redact(&self, secret: &str) {
        if let Some(i) = &self.inner {
            if secret.len() >= 3 {
                i.secrets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(secret.to_string());
            }
        }
    }

    /// Records event `kind` with `fields` (an object). Write failures are reported once on
    /// stderr and otherwise ignored: the audit log never stops a session.
    pub fn emit(&self, kind: &str, fields: Value) {
        let Some(i) = &self.inner else { return };
        let seq = i.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(timestamp_now()));
        obj.insert("run_id".into(), json!(i.run_id));
        obj.insert("seq".into(), json!(seq));
        obj.insert("type".into(), json!(kind));
        obj.insert("mode".into(), json!(i.mode));
        obj.insert("pid".into(), json!(std::process::id()));
        if let Value::Object(f) = fields {
            for (k, v) in f {
                obj.entry(k).or_insert(v);
            }
        }
        let secrets = i.secrets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let value = redact(Value::Object(obj), &secrets);
        let mut line = value.to_string();
        line.push('\n');
        let mut sink = i.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sink.file.write_all(line.as_bytes()) {
            tracing::warn!("audit log write failed: {e}");
        }
    }
}

fn redact(v: Value, secrets: &[String]) -> Value {
    match v {
        Value::String(s) => {
            let mut out = s;
            for secret in secrets {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), REDACTED);
                }
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| redact(x, secrets)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, x)| (k, redact(x, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// A new random run id: 16 hex digits from the kernel's random pool.
pub fn new_run_id() -> String {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        buf = (t ^ u64::from(std::process::id())).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current UTC time as RFC 3339 with milliseconds (`2026-11-23T20:40:01.123Z`).
pub fn timestamp_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_timestamp(d.as_secs() as i64, d.subsec_millis())
}

fn format_timestamp(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_795_470_001, 123),
            "2026-11-23T21:40:01.123Z"
        );
        assert_eq!(format_timestamp(951_782_400, 5), "2000-02-29T00:00:00.005Z");
    }

    #[test]
    fn events_have_envelope_sequence_and_redaction() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/omac/audit.jsonl");
        let a = Audit::open(&path, "abc", "start").unwrap();
        a.redact("s3cr3t-value");
        a.emit(
            "session.start",
            json!({"argv": ["x", "--key=s3cr3t-value"]}),
        );
        let b = a.clone();
        std::thread::spawn(move || b.emit("process.exit", json!({"code": 0})))
            .join()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cr3t-value"));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["seq"], 2);
        assert_eq!(lines[0]["run_id"], "abc");
        assert_eq!(lines[0]["argv"][1], "--key=[redacted]");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
    }

    #[test]
    fn disabled_log_writes_nothing() {
        let a = Audit::disabled();
        a.emit("session.start", json!({}));
        assert_eq!(a.run_id(), "");
    }
}
