//! The access log: one JSON line per request (never bodies, never auth headers), written by a
//! dedicated thread so a slow disk never stalls a request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::Method;

use crate::Error;

/// Lines are written out when a worker's buffer passes this size, or by the periodic flush.
const FLUSH_AT: usize = 32 * 1024;
/// How often each worker writes out what it buffered.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One request as logged.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// When the request arrived.
    pub arrived: Option<SystemTime>,
    /// `unix` or `tcp`.
    pub transport: &'static str,
    pub method: Method,
    /// The mount; none for the status document and refused paths.
    pub mount: Option<Arc<str>>,
    /// The path as forwarded (without the query string, which may carry credentials).
    pub path: String,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    /// The `X-Omac-Reason` of a refusal, or why a stream ended early.
    pub reason: Option<&'static str>,
}

impl Record {
    /// Appends the record as one JSON line.
    fn write_json(&self, out: &mut Vec<u8>) {
        Line {
            arrived: self.arrived.unwrap_or(UNIX_EPOCH),
            transport: self.transport,
            method: self.method.as_str().as_bytes(),
            mount: self.mount.as_deref().unwrap_or("").as_bytes(),
            path: self.path.as_bytes(),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_us: (self.duration_ms * 1000.0).round().max(0.0) as u64,
            reason: self.reason,
        }
        .write_json(out);
    }
}

/// One request as logged, borrowing its strings (the fast path logs without allocating).
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// When the request arrived.
    pub arrived: SystemTime,
    /// `unix` or `tcp`.
    pub transport: &'static str,
    /// The method.
    pub method: &'a [u8],
    /// The mount (`""` for none).
    pub mount: &'a [u8],
    /// The path as forwarded, without the query.
    pub path: &'a [u8],
    /// The status sent.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Answer body bytes sent.
    pub bytes_out: u64,
    /// How long the exchange took, in microseconds.
    pub duration_us: u64,
    /// The `X-Omac-Reason` of a refusal, or why a stream ended early.
    pub reason: Option<&'static str>,
}

impl Line<'_> {
    /// Appends the line as JSON (`duration_ms` with three decimals).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"ts\":\"");
        write_ts(self.arrived, out);
        out.extend_from_slice(b"\",\"transport\":\"");
        out.extend_from_slice(self.transport.as_bytes());
        out.extend_from_slice(b"\",\"method\":");
        json_str(self.method, out);
        out.extend_from_slice(b",\"mount\":");
        json_str(self.mount, out);
        out.extend_from_slice(b",\"path\":");
        json_str(self.path, out);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(n.format(self.status).as_bytes());
        out.extend_from_slice(b",\"bytes_in\":");
        out.extend_from_slice(n.format(self.bytes_in).as_bytes());
        out.extend_from_slice(b",\"bytes_out\":");
        out.extend_from_slice(n.format(self.bytes_out).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        out.extend_from_slice(n.format(self.duration_us / 1000).as_bytes());
        let frac = self.duration_us % 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        if let Some(r) = self.reason {
            out.extend_from_slice(b",\"reason\":\"");
            out.extend_from_slice(r.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
    }
}

/// A JSON string; plain ASCII (the usual case) is copied as is.
fn json_str(s: &[u8], out: &mut Vec<u8>) {
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(s));
    }
}

thread_local! {
    /// `YYYY-MM-DDTHH:MM:SS` of the last second formatted on this thread.
    static TS: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// Appends `t` as RFC 3339 UTC with milliseconds, without the quotes.
fn write_ts(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (cached, mut text) = TS.with(|c| c.get());
    if cached != secs {
        let s = Rfc3339(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
        text.copy_from_slice(&s.as_bytes()[..19]);
        TS.with(|c| c.set((secs, text)));
    }
    out.extend_from_slice(&text);
    let ms = d.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// Size at which the access log is rotated (`facade.log` -> `facade.log.1` ...).
pub(crate) const ROTATE_AT: u64 = 16 * 1024 * 1024;
/// How many rotated files are kept.
pub(crate) const KEEP: u32 = 3;

/// The access log file the workers share: appended to under a lock (one write per flushed
/// buffer, not per request) and rotated by size, so a long-lived workdir's log stays bounded.
#[derive(Debug)]
pub(crate) struct LogSink {
    path: std::path::PathBuf,
    state: Mutex<(File, u64)>,
    max_bytes: u64,
    keep: u32,
}

impl LogSink {
    /// Appends `bytes`, then rotates when the file has reached the limit.
    fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0.write_all(bytes)?;
        st.1 += bytes.len() as u64;
        if st.1 >= self.max_bytes {
            self.rotate()?;
            *st = (open_file(&self.path)?, 0);
        }
        Ok(())
    }

    /// `path.(keep-1)` -> `path.keep` ... `path` -> `path.1`; the oldest is dropped.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            std::path::PathBuf::from(p)
        };
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
        if self.keep == 0 {
            return gone(std::fs::remove_file(&self.path));
        }
        for n in (1..self.keep).rev() {
            gone(std::fs::rename(numbered(n), numbered(n + 1)))?;
        }
        gone(std::fs::rename(&self.path, numbered(1)))
    }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Opens (appends to) the access log, mode 0600, rotated at [`ROTATE_AT`] keeping [`KEEP`]
/// old files; the workers share it.
pub(crate) fn open(path: &Path) -> Result<Arc<LogSink>, Error> {
    open_rotating(path, ROTATE_AT, KEEP)
}

/// [`open`] with the rotation size and count given.
pub(crate) fn open_rotating(path: &Path, max_bytes: u64, keep: u32) -> Result<Arc<LogSink>, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("creating the access log directory", dir, e))?;
    }
    let file = open_file(path).map_err(|e| Error::io("opening the access log", path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Arc::new(LogSink {
        path: path.to_path_buf(),
        state: Mutex::new((file, size)),
        max_bytes: max_bytes.max(1),
        keep,
    }))
}

/// One request as the facade's observer sees it (the audit log's `facade.request`): the
/// same facts as the access log line, never bodies, headers or the query string.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent<'a> {
    /// `unix` or `tcp`.
    pub transport: &'static str,
    /// The request method.
    pub method: &'a str,
    /// The mount; empty for the status document and refused paths.
    pub mount: &'a str,
    /// The path as forwarded (without the query string).
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Answer body bytes sent.
    pub bytes_out: u64,
    /// Time from arrival to the end of the answer.
    pub duration_ms: f64,
    /// The `X-Omac-Reason` of a refusal, or why a stream ended early.
    pub reason: Option<&'static str>,
}

/// Receives every request the facade answers (called on the facade's threads: keep it short).
#[derive(Clone)]
pub struct RequestObserver(pub Arc<dyn Fn(&RequestEvent<'_>) + Send + Sync>);

impl std::fmt::Debug for RequestObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestObserver")
    }
}

impl RequestObserver {
    /// An observer calling `f`.
    pub fn new(f: impl Fn(&RequestEvent<'_>) + Send + Sync + 'static) -> RequestObserver {
        RequestObserver(Arc::new(f))
    }
}

/// One worker's access log: lines gather in a buffer written out in one `write` when it
/// fills or every [`FLUSH_EVERY`], so a request costs no system call and no thread switch.
/// The file is opened `O_APPEND`: the workers' writes never interleave inside a line.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    inner: Arc<WorkerLog>,
}

#[derive(Debug)]
struct WorkerLog {
    file: Option<Arc<LogSink>>,
    observer: Option<RequestObserver>,
    buf: Mutex<Vec<u8>>,
}

impl AccessLog {
    /// A worker's log on the shared file.
    #[cfg(test)]
    pub(crate) fn new(file: Arc<LogSink>) -> AccessLog {
        AccessLog::with(Some(file), None)
    }

    /// A worker's log on the shared file (if any), reporting to `observer` (if any).
    pub(crate) fn with(file: Option<Arc<LogSink>>, observer: Option<RequestObserver>) -> AccessLog {
        AccessLog {
            inner: Arc::new(WorkerLog {
                file,
                observer,
                buf: Mutex::new(Vec::with_capacity(FLUSH_AT + 1024)),
            }),
        }
    }

    /// Adds a record (written out when the buffer is full or at the next flush).
    pub(crate) fn write(&self, rec: &Record) {
        if let Some(o) = &self.inner.observer {
            (o.0)(&RequestEvent {
                transport: rec.transport,
                method: rec.method.as_str(),
                mount: rec.mount.as_deref().unwrap_or(""),
                path: &rec.path,
                status: rec.status,
                bytes_in: rec.bytes_in,
                bytes_out: rec.bytes_out,
                duration_ms: rec.duration_ms,
                reason: rec.reason,
            });
        }
        if self.inner.file.is_none() {
            return;
        }
        let mut buf = self.inner.buf.lock().unwrap_or_else(|p| p.into_inner());
        rec.write_json(&mut buf);
        if buf.len() >= FLUSH_AT {
            self.write_out(&mut buf);
        }
    }

    /// Adds a line (written out when the buffer is full or at the next flush).
    pub(crate) fn write_line(&self, line: &Line<'_>) {
        if let Some(o) = &self.inner.observer {
            (o.0)(&RequestEvent {
                transport: line.transport,
                method: std::str::from_utf8(line.method).unwrap_or("?"),
                mount: std::str::from_utf8(line.mount).unwrap_or(""),
                path: &String::from_utf8_lossy(line.path),
                status: line.status,
                bytes_in: line.bytes_in,
                bytes_out: line.bytes_out,
                duration_ms: line.duration_us as f64 / 1000.0,
                reason: line.reason,
            });
        }
        if self.inner.file.is_none() {
            return;
        }
        let mut buf = self.inner.buf.lock().unwrap_or_else(|p| p.into_inner());
        line.write_json(&mut buf);
        if buf.len() >= FLUSH_AT {
            self.write_out(&mut buf);
        }
    }

    /// Writes out what is buffered.
    pub(crate) fn flush(&self) {
        let mut buf = self.inner.buf.lock().unwrap_or_else(|p| p.into_inner());
        if !buf.is_empty() {
            self.write_out(&mut buf);
        }
    }

    fn write_out(&self, buf: &mut Vec<u8>) {
        if let Some(sink) = &self.inner.file {
            if let Err(e) = sink.append(buf) {
                tracing::warn!("writing the access log: {e}");
            }
        }
        buf.clear();
    }
}

/// Displays a `SystemTime` as RFC 3339 UTC with milliseconds.
pub(crate) struct Rfc3339(pub SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs() as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, dd) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

/// `SystemTime` as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T20:22:01.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
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
        let log = AccessLog::new(open(&p).unwrap());
        log.write(&Record {
            arrived: Some(SystemTime::now()),
            transport: "unix",
            method: Method::GET,
            mount: Some(Arc::from("echo")),
            path: "/st\"atus".into(),
            status: 200,
            bytes_out: 5,
            duration_ms: 0.5,
            ..Record::default()
        });
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "",
            "buffered until the flush"
        );
        log.write(&Record {
            reason: Some("unknown-mount"),
            status: 404,
            ..Record::default()
        });
        log.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["mount"], "echo");
        assert_eq!(lines[0]["path"], "/st\"atus");
        assert_eq!(lines[0]["status"], 200);
        assert!(lines[0].get("reason").is_none());
        assert_eq!(lines[1]["reason"], "unknown-mount");
        assert_eq!(lines[1]["ts"], "1970-01-01T00:00:00.000Z");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("facade.log");
        std::fs::write(&p, "x".repeat(900)).unwrap();
        // 1000 bytes at most, two old files kept; the existing 900 bytes count.
        let log = AccessLog::new(open_rotating(&p, 1000, 2).unwrap());
        let line = |n: u16| Record {
            status: n,
            ..Record::default()
        };
        log.write(&line(201));
        log.flush();
        // The first flush crossed the limit: the file was rotated after it.
        let one = std::fs::read_to_string(dir.path().join("facade.log.1")).unwrap();
        assert!(one.starts_with("xxx") && one.contains("201"), "{one}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        for round in 0..3u16 {
            for _ in 0..12 {
                log.write(&line(300 + round));
            }
            log.flush();
        }
        let names: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, ["facade.log", "facade.log.1", "facade.log.2"]);
        // The newest rotated file holds the last full round; nothing older than two.
        let one = std::fs::read_to_string(dir.path().join("facade.log.1")).unwrap();
        assert!(one.contains("302"), "{one}");
        for f in ["facade.log.1", "facade.log.2"] {
            let t = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(!t.contains("201"), "{f} still holds the oldest lines");
        }
    }
}
