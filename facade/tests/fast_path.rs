//! The fast path, attacked. Two facades run side by side on the same routes: one as shipped
//! (fast path on) and one with every request through hyper (the general path, the facade as
//! it was before the fast path). Hostile requests and odd sidecar answers must be answered
//! alike by both; what reaches the sidecar must be framed without ambiguity; and the fast
//! path's own behaviours (pipelining, stale connections, idle timeouts, shutdown) are
//! checked against a recording fake sidecar.

mod common;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect, Client};
use http_body_util::Full;
use hyper::Request;
use omac_facade::{FacadeConfig, FacadeHandle, RouteConfig, RouteState, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// What the fake sidecar answers to a request (its raw bytes); `None` hangs up.
type Answer = fn(&[u8]) -> Option<Vec<u8>>;

/// A fake sidecar that records every request it receives, raw.
struct Sidecar {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Sidecar {
    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

/// The value of field `name` in a raw head, lowercased names compared.
fn field<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// Reads one request: its head, then a Content-Length or chunked body. Refuses (panics in
/// the recorder, which the tests see as a missing answer) a request framed ambiguously.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut tmp = [0u8; 65536];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let cl = field(&head, "content-length");
    let te = field(&head, "transfer-encoding");
    assert!(
        ambiguity(&head).is_none(),
        "the sidecar got an ambiguous request: {head:?}"
    );
    let total = if !te.is_empty() {
        // Chunked: read to the last chunk (the facade re-frames, no extensions needed).
        loop {
            if let Some(i) = buf[end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                break end + i + 5;
            }
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    } else {
        end + cl.first().map_or(0, |v| v.parse::<usize>().unwrap())
    };
    while buf.len() < total {
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some(buf.drain(..total).collect())
}

/// Why a request's framing is ambiguous (what request smuggling feeds on), if it is.
fn ambiguity(head: &str) -> Option<&'static str> {
    let cl = field(head, "content-length");
    let te = field(head, "transfer-encoding");
    if !cl.is_empty() && !te.is_empty() {
        return Some("Content-Length with Transfer-Encoding");
    }
    if cl.len() > 1 {
        return Some("two Content-Length fields");
    }
    if cl
        .first()
        .is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("a Content-Length that is not digits");
    }
    if te.iter().any(|v| {
        !v.rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("chunked")
    }) {
        return Some("a Transfer-Encoding not ending in chunked");
    }
    if head.contains("\r\n ")
        || head.contains("\r\n\t")
        || head.matches('\n').count() != head.matches("\r\n").count()
    {
        return Some("folded or bare line ends");
    }
    None
}

async fn sidecar(answer: Answer) -> Sidecar {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut s, &mut buf).await {
                    seen.lock().unwrap().push(req.clone());
                    let Some(out) = answer(&req) else { return };
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    let head = String::from_utf8_lossy(&out).to_ascii_lowercase();
                    if head.contains("connection: close") || head.starts_with("http/1.0") {
                        return;
                    }
                }
            });
        }
    });
    Sidecar { port, seen }
}

/// Echoes the raw request as the body.
fn echo(req: &[u8]) -> Option<Vec<u8>> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .into_bytes();
    out.extend_from_slice(req);
    Some(out)
}

/// The fast facade and the general one, on the same routes.
struct Pair {
    _tmp: tempfile::TempDir,
    routes: RouteTable,
    fast: Option<FacadeHandle>,
    general: Option<FacadeHandle>,
    fast_sock: PathBuf,
    general_sock: PathBuf,
    fast_log: PathBuf,
}

async fn pair(port: u16, idle: Duration) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let mut route = RouteConfig::new("up", "fake");
    route.state = RouteState::Ready { port };
    route.idle_timeout = idle;
    route.max_body_bytes = 1024 * 1024;
    let routes = RouteTable::new(vec![route]).unwrap();
    let mut socks = Vec::new();
    let mut handles = Vec::new();
    for (name, fast) in [("fast", true), ("general", false)] {
        let dir = tmp.path().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let mut c = FacadeConfig::new(dir.join("bridge.sock"));
        c.fast_path = fast;
        c.header_read_timeout = Duration::from_secs(2);
        c.access_log = Some(dir.join("access.log"));
        socks.push(c.socket.clone());
        handles.push(omac_facade::start(c, routes.clone()).await.unwrap());
    }
    let general = handles.pop();
    let fast = handles.pop();
    Pair {
        fast_log: tmp.path().join("fast/access.log"),
        _tmp: tmp,
        routes,
        fast,
        general,
        general_sock: socks.pop().unwrap(),
        fast_sock: socks.pop().unwrap(),
    }
}

/// A fake sidecar giving `answer`, and the two facades routing `/up` to it with the route
/// idle timeout `idle`.
async fn sidecar_and_pair(answer: Answer, idle: Duration) -> (Sidecar, Pair) {
    let side = sidecar(answer).await;
    let p = pair(side.port, idle).await;
    (side, p)
}

impl Pair {
    /// Shuts both down; the scratch directory lives as long as the returned value.
    async fn stop(mut self) -> tempfile::TempDir {
        for h in [self.fast.take(), self.general.take()]
            .into_iter()
            .flatten()
        {
            h.shutdown().await;
        }
        self._tmp
    }
}

/// Writes `bytes` on a new connection and reads the final answer: past interim (1xx)
/// heads, to the end of its body (Content-Length or chunked), or until the facade closes
/// the connection or stays silent for 3 s.
async fn answer(sock: &std::path::Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        if final_answer_complete(&out) {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    // Only the final answer.
    let mut rest = text.as_str();
    while rest.starts_with("HTTP/1.1 1") {
        match rest.find("\r\n\r\n") {
            Some(i) => rest = &rest[i + 4..],
            None => break,
        }
    }
    rest.to_string()
}

/// Opens a connection to `sock` and writes `bytes` on it.
async fn send_raw(sock: &std::path::Path, bytes: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(sock).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads from `s` until the facade closes it, which must happen `within`; the bytes as text.
async fn read_until_closed(s: &mut UnixStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .expect("the connection closed in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A POST of `body` to `uri`, as a client sends it.
fn post(uri: &str, body: &str) -> Request<Full<bytes::Bytes>> {
    Request::post(uri)
        .header("host", "x")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap()
}

fn final_answer_complete(out: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let Some(end) = out[at..].windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&out[at..at + end]).to_ascii_lowercase();
        let body = &out[at + end + 4..];
        if head.starts_with("http/1.1 1") {
            at += end + 4;
            continue;
        }
        if head.contains("transfer-encoding: chunked") {
            return body.windows(5).any(|w| w == b"0\r\n\r\n");
        }
        let len = field(&head, "content-length")
            .first()
            .and_then(|v| v.parse::<usize>().ok());
        return matches!(len, Some(n) if body.len() >= n);
    }
}

/// The status code of a raw answer ("" for none).
fn code(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

/// An answer's fields as (lowercase name, value), sorted, without `date`.
fn answer_fields(answer: &str) -> Vec<(String, String)> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    let mut v: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| n != "date")
        .collect();
    v.sort();
    v
}

/// A request as the sidecar saw it: request line, sorted (lowercase name, value) fields,
/// body.
fn as_seen(req: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&req[..end]);
    let line = head.split("\r\n").next().unwrap().to_string();
    let mut fields: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    fields.sort();
    let mut body = req[end..].to_vec();
    if fields.iter().any(|(n, _)| n == "transfer-encoding") {
        body = dechunk(&body);
        fields.retain(|(n, _)| n != "transfer-encoding" && n != "content-length");
    }
    (line, fields, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i])
                .unwrap()
                .split(';')
                .next()
                .unwrap(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ambiguity_probe_notices_smuggling_shapes() {
    // Control for the recorder's checks: the shapes it refuses are the ones smuggling uses.
    for (head, why) in [
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "with",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "two",
        ),
        ("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", "digits"),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "ending",
        ),
        ("POST / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "folded"),
        ("POST / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", "bare"),
    ] {
        let got = ambiguity(head).unwrap_or("");
        assert!(got.contains(why), "{head:?}: {got:?}");
    }
    assert_eq!(
        ambiguity("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_same_answer_on_both_paths() {
    let (side, p) = sidecar_and_pair(echo, Duration::from_secs(30)).await;
    let big = format!(
        "GET /up/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(140_000)
    );
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET /up/a HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let smuggle = "POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /up/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain GET (control)", b"GET /up/a?x=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".to_vec()),
        ("POST with a body (control)", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("two equal Content-Length", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("two different Content-Length", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec()),
        ("Content-Length list", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc".to_vec()),
        ("Content-Length with a sign", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc".to_vec()),
        ("negative Content-Length", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc".to_vec()),
        ("hex Content-Length", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc".to_vec()),
        ("huge Content-Length", b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nabc".to_vec()),
        ("Content-Length and chunked", smuggle.as_bytes().to_vec()),
        ("chunked", b"POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("chunked, identity", b"POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("identity coding", b"POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("two Transfer-Encoding", b"POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("chunked with a bad size", b"POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("bare CR", b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\rX-B: b\r\n\r\n".to_vec()),
        ("bare LF line", b"GET /up/a HTTP/1.1\r\nHost: x\nX-B: b\r\n\r\n".to_vec()),
        ("bare LF everywhere", b"GET /up/a HTTP/1.1\nHost: x\n\n".to_vec()),
        ("obs-fold with a space", b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec()),
        ("obs-fold with a tab", b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n".to_vec()),
        ("space before the colon", b"GET /up/a HTTP/1.1\r\nHost : x\r\n\r\n".to_vec()),
        ("tab before the colon", b"GET /up/a HTTP/1.1\r\nHost\t: x\r\n\r\n".to_vec()),
        ("empty field name", b"GET /up/a HTTP/1.1\r\n: x\r\n\r\n".to_vec()),
        ("bad field name", b"GET /up/a HTTP/1.1\r\nX(y): 1\r\n\r\n".to_vec()),
        ("NUL in a value", b"GET /up/a HTTP/1.1\r\nX-A: a\x00b\r\n\r\n".to_vec()),
        ("DEL in a value", b"GET /up/a HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n".to_vec()),
        ("non-ASCII value", "GET /up/a HTTP/1.1\r\nX-A: caf\u{e9}\r\n\r\n".as_bytes().to_vec()),
        ("tab in a value", b"GET /up/a HTTP/1.1\r\nX-A: a\tb\r\n\r\n".to_vec()),
        ("no colon", b"GET /up/a HTTP/1.1\r\nNoColon\r\n\r\n".to_vec()),
        ("HTTP/1.0", b"GET /up/a HTTP/1.0\r\nHost: x\r\n\r\n".to_vec()),
        ("HTTP/1.2", b"GET /up/a HTTP/1.2\r\nHost: x\r\n\r\n".to_vec()),
        ("lowercase version", b"GET /up/a http/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("lowercase method", b"get /up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("extension method", b"PURGE /up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("two spaces", b"GET  /up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("tab separator", b"GET\t/up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("trailing word", b"GET /up/a HTTP/1.1 x\r\nHost: x\r\n\r\n".to_vec()),
        ("absolute form", b"GET http://omac/up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("relative path", b"GET up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("fragment", b"GET /up/a#frag HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("angle brackets", b"GET /up/a?x=<b> HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("raw UTF-8 path", "GET /up/caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes().to_vec()),
        ("dot segment", b"GET /up/../x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("encoded dot segment", b"GET /up/%2e%2E/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad escape", b"GET /up/%zz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("encoded CRLF", b"GET /up/a%0d%0aX:1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("collapsed slashes", b"GET //up//a//b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("leading empty line", b"\r\nGET /up/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("unknown mount", b"GET /nope/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("status document", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("mount root", b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("Expect", b"POST /up/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("hop-by-hop fields", b"GET /up/a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nTrailer: X\r\nProxy-Authorization: a\r\nProxy-Connection: k\r\nUpgrade: websocket\r\nX-End: 2\r\n\r\n".to_vec()),
        ("Connection names framing", b"POST /up/a HTTP/1.1\r\nHost: x\r\nConnection: content-length, host\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("spoofed prefix and token", b"GET /up/a HTTP/1.1\r\nHost: evil\r\nX-Forwarded-Prefix: /evil\r\nX-Omac-Facade-Token: t\r\nX-Omac-Facade-Token: u\r\n\r\n".to_vec()),
        ("Connection: close", b"GET /up/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("huge field", big.into_bytes()),
        ("too many fields", many.into_bytes()),
        ("CONNECT", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n".to_vec()),
        ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec()),
    ];
    for (name, bytes) in &cases {
        let before = side.seen().len();
        let fast = answer(&p.fast_sock, bytes).await;
        let mid = side.seen().len();
        let general = answer(&p.general_sock, bytes).await;
        let after = side.seen().len();
        assert_eq!(
            (code(&fast), fields_of(&fast, "x-omac-reason")),
            (code(&general), fields_of(&general, "x-omac-reason")),
            "{name}: fast {:?} / general {:?}",
            fast.lines().next(),
            general.lines().next()
        );
        assert_eq!(
            mid - before,
            after - mid,
            "{name}: the sidecar saw a different number of requests"
        );
        if code(&fast) == "200" && mid > before {
            let seen = side.seen();
            let (f, g) = (as_seen(&seen[before]), as_seen(&seen[mid]));
            assert_eq!(f, g, "{name}: the sidecar saw different requests");
            assert_eq!(
                answer_fields(&fast),
                answer_fields(&general),
                "{name}: different answer fields"
            );
        }
    }
    // A head just over the 64 KiB limit: the fast path refuses it as documented (431).
    // (hyper alone checks its limit only between reads, so it may take such a head when
    // it arrives in one piece: the general path's answer depends on read sizes.)
    let over = format!(
        "GET /up/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(66_000)
    );
    assert_eq!(code(&answer(&p.fast_sock, over.as_bytes()).await), "431");
    let under = format!(
        "GET /up/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(60_000)
    );
    assert_eq!(
        code(&answer(&p.fast_sock, under.as_bytes()).await),
        "200",
        "control"
    );
    // Whatever was sent, the sidecar never got a request framed two ways.
    for r in side.seen() {
        let end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&r[..end]);
        assert_eq!(ambiguity(&head), None, "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("x-omac-facade-token"),
            "{head}"
        );
    }
    p.stop().await;
}

/// All values of field `name` in a raw answer, joined.
fn fields_of(answer: &str, name: &str) -> String {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    field(head, name).join(",")
}

/// Odd but legal (or not) sidecar answers, chosen by the request path.
fn odd(req: &[u8]) -> Option<Vec<u8>> {
    let head = String::from_utf8_lossy(req);
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let a: &[u8] = match path.as_str() {
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        "/http10" => b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!",
        "/interim" => b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/nocontent" => b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        "/notmodified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "/hop" => b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok",
        "/reason" => b"HTTP/1.1 299 Quite Fine\r\nContent-Length: 0\r\n\r\n",
        "/noreason" => b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        "/sse" => b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nX-Accel-Buffering: yes\r\nContent-Length: 12\r\n\r\ndata: one\n\n\n",
        "/twolengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
        "/lengthlist" => b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        "/badlength" => b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
        "/lengthandchunked" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "/fold" => b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        "/barelf" => b"HTTP/1.1 200 OK\nX-A: a\nContent-Length: 2\n\nok",
        "/badchunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        "/short" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
        "/nodate" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/withdate" => b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nok",
        "/status999" => b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
        "/status099" => b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        "/garbage" => b"NOT HTTP AT ALL\r\n\r\n",
        "/hangup" => return None,
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    if head.starts_with("HEAD ") {
        // No body after the final head (a sidecar that sends one breaks its connection).
        let last = a.windows(7).rposition(|w| w == b"HTTP/1.").unwrap_or(0);
        let end = a[last..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| last + i + 4)
            .or_else(|| {
                a[last..]
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| last + i + 2)
            })
            .unwrap_or(a.len());
        return Some(a[..end].to_vec());
    }
    Some(a.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sidecar_answers_reach_the_client_alike_on_both_paths() {
    let (_side, p) = sidecar_and_pair(odd, Duration::from_secs(30)).await;
    for path in [
        "/chunked",
        "/close",
        "/http10",
        "/interim",
        "/nocontent",
        "/notmodified",
        "/hop",
        "/reason",
        "/noreason",
        "/sse",
        "/twolengths",
        "/lengthlist",
        "/badlength",
        "/lengthandchunked",
        "/fold",
        "/barelf",
        "/badchunk",
        "/short",
        "/nodate",
        "/withdate",
        "/status999",
        "/status099",
        "/garbage",
        "/hangup",
    ] {
        for method in ["GET", "HEAD"] {
            let mut got = Vec::new();
            for sock in [&p.fast_sock, &p.general_sock] {
                let mut c = Client::connect(sock).await;
                let req = Request::builder()
                    .method(method)
                    .uri(format!("/up{path}"))
                    .header("host", "omac")
                    .body(Full::new(bytes::Bytes::new()))
                    .unwrap();
                let r = match c.send(req).await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let mut h: Vec<(String, String)> = r
                            .headers()
                            .iter()
                            .filter(|(n, _)| *n != "date" || path == "/withdate")
                            .map(|(n, v)| {
                                let mut v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                                if n == "content-length" {
                                    // A list of equal lengths is sent on as one value by the
                                    // fast path (RFC 9110 §8.6), as it came by hyper.
                                    let mut parts: Vec<&str> =
                                        v.split(',').map(str::trim).collect();
                                    parts.dedup();
                                    v = parts.join(",");
                                }
                                (n.to_string(), v)
                            })
                            .collect();
                        h.sort();
                        let body = http_body_util::BodyExt::collect(r.into_body())
                            .await
                            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                            .map_err(|_| "cut".to_string());
                        Ok((status, h, body))
                    }
                    Err(_) => Err("no answer"),
                };
                got.push(r);
            }
            assert_eq!(
                got[0], got[1],
                "{method} {path}: fast (left) and general (right) differ"
            );
        }
    }
    // A few spelled out, so the comparison above cannot pass by both being wrong.
    let mut c = Client::connect(&p.fast_sock).await;
    let (st, h, body) = c.get("/up/chunked").await;
    assert_eq!((st, body.as_ref()), (200, &b"hello world"[..]));
    assert!(h.get("trailer").is_none() && h.get("x-t").is_none());
    let (_, h, body) = c.get("/up/hop").await;
    assert_eq!(body.as_ref(), b"ok");
    for gone in ["x-private", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(h.get(gone).is_none(), "{gone} passed");
    }
    assert_eq!(h["x-public"], "yes");
    let (_, h, _) = c.get("/up/sse").await;
    assert_eq!(h["x-accel-buffering"], "no");
    let (_, h, _) = c.get("/up/withdate").await;
    assert_eq!(h["date"], "Sun, 06 Nov 1994 08:49:37 GMT");
    let (_, h, _) = c.get("/up/nodate").await;
    assert!(h.contains_key("date"));
    let (st, h, _) = c.get("/up/twolengths").await;
    assert_eq!(
        (st, h["x-omac-reason"].to_str().unwrap()),
        (502, "upstream-error")
    );
    let (st, _, body) = c.get("/up/close").await;
    assert_eq!((st, body.as_ref()), (200, &b"until the end"[..]));
    let (st, _, _) = c.get("/up/interim").await;
    assert_eq!(st, 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facades_own_answers_are_the_same_bytes_on_both_paths() {
    // Nothing listens on a port: 503; a sidecar that hangs up: 502; one too slow: 504.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hang = sidecar(|_| None).await;
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_port = slow.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = slow.accept().await {
            held.push(s); // never answers
        }
    });
    let p = pair(dead, Duration::from_millis(500)).await;
    for (port, want) in [(dead, "503"), (hang.port, "502"), (slow_port, "504")] {
        p.routes.set_state("up", RouteState::Ready { port });
        for req in [
            &b"GET /up/a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /up/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            let fast = answer(&p.fast_sock, req).await;
            let general = answer(&p.general_sock, req).await;
            assert_eq!(code(&fast), want, "{fast}");
            let strip = |s: &str| {
                s.split("\r\n")
                    .filter(|l| !l.starts_with("date: "))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            };
            assert_eq!(strip(&fast), strip(&general));
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_side, p) = sidecar_and_pair(echo, Duration::from_secs(30)).await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(
            format!("POST /up/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{i}").as_bytes(),
        );
    }
    // And one the fast path leaves to hyper, mid-pipeline, then a plain one again.
    all.extend_from_slice(
        b"POST /up/5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n5\r\n0\r\n\r\n",
    );
    all.extend_from_slice(b"GET /up/6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut s = send_raw(&p.fast_sock, &all).await;
    let text = read_until_closed(&mut s, Duration::from_secs(20)).await;
    let order: Vec<usize> = (0..7)
        .map(|i| text.find(&format!(" /{i} HTTP/1.1")).expect("answer"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 7);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_pieces_or_too_slow() {
    let (_side, p) = sidecar_and_pair(echo, Duration::from_millis(600)).await;
    // The head first, the body in three writes: forwarded whole.
    let head = b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n";
    let mut s = send_raw(&p.fast_sock, head).await;
    for part in [&b"abc"[..], b"def", b"ghi"] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(part).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("abcdefghi") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // A client that stops half-way gets 408 and the connection closes, on both paths.
    for sock in [&p.fast_sock, &p.general_sock] {
        let cut = b"POST /up/b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
        let mut s = send_raw(sock, cut).await;
        let text = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("x-omac-reason: request-idle"), "{text}");
    }
    // A large body is forwarded whole too (by the general path), on both.
    let big = "z".repeat(200_000);
    for sock in [&p.fast_sock, &p.general_sock] {
        let mut c = Client::connect(sock).await;
        let (st, _, body) = collect(c.send(post("/up/big", &big)).await.unwrap()).await;
        assert_eq!(st, 200);
        assert!(body.ends_with(big.as_bytes()));
    }
    p.stop().await;
}

/// A fake sidecar that answers the first request of each connection and then behaves as
/// `then` says: `false` closes the connection after a short while (keep-alive in words
/// only), `true` reads the second request and hangs up without answering.
async fn one_per_connection(
    hang_on_second: bool,
) -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (acc, seen2) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(req) = read_request(&mut s, &mut buf).await {
                    seen.lock().unwrap().push(req.clone());
                    let _ = s.write_all(&echo(&req).unwrap()).await;
                }
                if hang_on_second {
                    if let Some(req) = read_request(&mut s, &mut buf).await {
                        seen.lock().unwrap().push(req);
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    (port, accepted, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sidecar_connections_and_non_idempotent_requests() {
    // Every pooled connection is closed by the sidecar before it is reused: each request,
    // POSTs included, goes out on a new one (the stale one is noticed before sending).
    let (port, accepted, _) = one_per_connection(false).await;
    let p = pair(port, Duration::from_secs(30)).await;
    let mut c = Client::connect(&p.fast_sock).await;
    for i in 0..4 {
        let req = post(&format!("/up/{i}"), "post");
        let (st, _, body) = collect(c.send(req).await.unwrap()).await;
        assert_eq!(st, 200, "request {i}");
        assert!(body.ends_with(b"post"));
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 4,
        "a new connection each time"
    );

    // A sidecar that takes the second request of a connection and hangs up: a GET is sent
    // again on a new connection (it is safe to repeat), a POST is not (it may have had
    // effects): 502, and the sidecar got it exactly once.
    for (method, want, times) in [("GET", 200, 2), ("POST", 502, 1)] {
        let (port, _, seen) = one_per_connection(true).await;
        p.routes.set_state("up", RouteState::Ready { port });
        let mut c = Client::connect(&p.fast_sock).await;
        assert_eq!(c.get("/up/warm").await.0, 200, "a pooled connection now");
        let req = Request::builder()
            .method(method)
            .uri("/up/once")
            .header("host", "x")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let (st, _, _) = collect(c.send(req).await.unwrap()).await;
        assert_eq!(st, want, "{method}");
        let n = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(format!("{method} /once").as_bytes()))
            .count();
        assert_eq!(n, times, "{method} reached the sidecar {n} times");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_shutdown_end_fast_connections() {
    let (_side, p) = sidecar_and_pair(echo, Duration::from_secs(30)).await;
    // Connection: close is answered with connection: close, then the connection ends.
    let closing = b"GET /up/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut s = send_raw(&p.fast_sock, closing).await;
    let text = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // An idle keep-alive connection is closed when the facade shuts down.
    let mut s = send_raw(&p.fast_sock, b"GET /up/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let Pair {
        fast,
        general,
        _tmp,
        ..
    } = p;
    let stopping = tokio::spawn(async move {
        fast.unwrap().shutdown().await;
        general.unwrap().shutdown().await;
    });
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the idle connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    stopping.await.unwrap();
    drop(_tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_logs_every_exchange() {
    let (_side, p) = sidecar_and_pair(odd, Duration::from_secs(30)).await;
    let mut c = Client::connect(&p.fast_sock).await;
    c.get("/up/chunked").await;
    c.get("/up/twolengths").await;
    let req = post("/up/withdate?secret=q", "12345");
    collect(c.send(req).await.unwrap()).await;
    let log = p.fast_log.clone();
    let _keep = p.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["path"], "/chunked");
    assert_eq!(lines[0]["bytes_out"], 11);
    assert_eq!(lines[0]["mount"], "up");
    assert!(lines[0].get("reason").is_none());
    assert_eq!(lines[1]["status"], 502);
    assert_eq!(lines[1]["reason"], "upstream-error");
    assert_eq!(lines[2]["method"], "POST");
    assert_eq!(lines[2]["bytes_in"], 5);
    assert!(!text.contains("secret=q"), "the query stays out of the log");
    assert!(lines[2]["ts"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_fast_and_general_exchanges_without_a_log_file() {
    let side = sidecar(odd).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut route = RouteConfig::new("up", "fake");
    route.state = RouteState::Ready { port: side.port };
    let routes = RouteTable::new(vec![route]).unwrap();
    for fast in [true, false] {
        let dir = tmp.path().join(format!("fast-{fast}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let seen: Arc<Mutex<Vec<(String, String, u16)>>> = Arc::default();
        let sink = seen.clone();
        let mut c = FacadeConfig::new(dir.join("bridge.sock"));
        c.fast_path = fast;
        c.observer = Some(omac_facade::RequestObserver::new(move |e| {
            sink.lock()
                .unwrap()
                .push((e.method.to_string(), e.path.to_string(), e.status));
        }));
        let h = omac_facade::start(c, routes.clone()).await.unwrap();
        let mut client = Client::connect(&dir.join("bridge.sock")).await;
        client.get("/up/chunked").await;
        client.get("/up/twolengths").await;
        h.shutdown().await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("GET".into(), "/chunked".into(), 200),
                ("GET".into(), "/twolengths".into(), 502)
            ],
            "fast path {fast}"
        );
        assert!(!dir.join("access.log").exists());
    }
}
