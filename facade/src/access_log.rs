//! The access log: one JSON line per request (never bodies, never auth headers), written by a
//! dedicated thread so a slow disk never stalls a request.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Error;

/// One request as logged.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Record {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// `unix` or `tcp`.
    pub transport: &'static str,
    pub method: String,
    /// The mount, or "" for the status document and refused paths.
    pub mount: String,
    /// The path as forwarded (without the query string, which may carry credentials).
    pub path: String,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    /// The `X-Omac-Reason` of a refusal, or why a stream ended early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The sending side of the log (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    tx: SyncSender<Record>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens (appends to) `path`, mode 0600, and starts the writer thread.
    pub(crate) fn open(path: &Path) -> Result<AccessLog, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("creating the access log directory", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("opening the access log", path, e))?;
        let (tx, rx) = mpsc::sync_channel(8192);
        std::thread::Builder::new()
            .name("omac-access-log".into())
            .spawn(move || write_loop(rx, BufWriter::with_capacity(64 * 1024, file)))
            .map_err(|e| Error::io("starting the access log writer", path, e))?;
        Ok(AccessLog {
            tx,
            dropped: Arc::default(),
        })
    }

    /// Queues a record; when the writer is behind by 8192 lines the record is dropped (and
    /// counted) rather than slowing the request.
    pub(crate) fn write(&self, rec: Record) {
        match self.tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("access log writer is behind; dropping lines");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_loop(rx: Receiver<Record>, mut out: BufWriter<std::fs::File>) {
    while let Ok(rec) = rx.recv() {
        let mut next = Some(rec);
        while let Some(r) = next.take() {
            if serde_json::to_writer(&mut out, &r).is_ok() {
                let _ = out.write_all(b"\n");
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::warn!("writing the access log: {e}");
        }
    }
    let _ = out.flush();
}

/// `SystemTime` as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T20:22:01.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logs/facade.log");
        let log = AccessLog::open(&p).unwrap();
        log.write(Record {
            ts: rfc3339(SystemTime::now()),
            transport: "unix",
            method: "GET".into(),
            mount: "echo".into(),
            path: "/status".into(),
            status: 200,
            bytes_in: 0,
            bytes_out: 5,
            duration_ms: 0.5,
            reason: None,
        });
        drop(log);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["mount"], "echo");
                assert_eq!(v["status"], 200);
                assert!(v.get("reason").is_none());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no line written");
            std::thread::sleep(Duration::from_millis(10));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
