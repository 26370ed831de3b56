//! WebSocket and other upgrades: the request goes to the sidecar with its `Upgrade`, the
//! sidecar's 101 is checked (protocol asked for, and `Sec-WebSocket-Accept` for WebSocket),
//! then both connections are spliced until one side closes or the route's idle timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::answers::refusal;
use crate::body::{FacadeBody, RequestBody, RequestStats};
use crate::forward::{answer_framing, failure_answer, send, upstream_headers, upstream_uri};
use crate::handler::{Exchange, Shared};
use crate::headers::{has_token, strip_hop_by_hop};
use crate::routes::{Route, Target};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 §4.2.2).
pub(crate) fn websocket_accept(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The tokens of an `Upgrade` header, lowercased (`websocket`, `h2c`, ...).
fn protocols(v: &HeaderValue) -> Vec<String> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Checks the sidecar's 101 against the request; `Err` says what is wrong.
pub(crate) fn check_switch(
    requested: &HeaderValue,
    ws_key: Option<&HeaderValue>,
    answer: &HeaderMap,
) -> Result<(), &'static str> {
    let asked = protocols(requested);
    let Some(chosen) = answer.get(header::UPGRADE) else {
        return Err("101 without an Upgrade header");
    };
    let chosen = protocols(chosen);
    if chosen.is_empty() || !chosen.iter().all(|c| asked.contains(c)) {
        return Err("101 switching to a protocol the client did not ask for");
    }
    if !has_token(answer, &header::CONNECTION, "upgrade") {
        return Err("101 without Connection: upgrade");
    }
    if chosen.iter().any(|c| c == "websocket") {
        let Some(key) = ws_key else {
            return Err("WebSocket upgrade without Sec-WebSocket-Key");
        };
        let want = websocket_accept(key.as_bytes());
        let got = answer.get("sec-websocket-accept").map(|v| v.as_bytes());
        if got != Some(want.as_bytes()) {
            return Err("wrong Sec-WebSocket-Accept");
        }
    }
    Ok(())
}

/// Forwards an upgrade request and, on a valid 101, splices the two connections.
pub(crate) async fn proxy(
    shared: &Shared,
    ex: &Exchange,
    route: &Route,
    target: &Target,
    rest: &str,
    mut req: Request<Incoming>,
    requested: HeaderValue,
) -> Response<FacadeBody> {
    let client_side: OnUpgrade = hyper::upgrade::on(&mut req);
    let ws_key = req.headers().get("sec-websocket-key").cloned();
    let (mut parts, body) = req.into_parts();
    let Some(uri) = upstream_uri(rest, parts.uri.query()) else {
        let r = refusal(StatusCode::BAD_REQUEST, "bad-path");
        ex.log_now(&r, Some(&route.mount), rest, 0);
        return r;
    };
    upstream_headers(&mut parts.headers, route, target);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, requested.clone());
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let stats = Arc::new(RequestStats::default());
    let body = (!hyper::body::Body::is_end_stream(&body)).then_some(body);
    let up = Request::from_parts(
        parts,
        RequestBody::new(
            body,
            route.max_body_bytes,
            route.idle_timeout,
            stats.clone(),
        ),
    );
    let (mut resp, lease) = match send(shared, route, target, up, &stats).await {
        Ok(r) => r,
        Err(f) => {
            let r = failure_answer(f);
            ex.log_now(&r, Some(&route.mount), rest, 0);
            return r;
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The sidecar declined the upgrade: its answer goes back as any other.
        let (mut parts, body) = resp.into_parts();
        if !answer_framing(&mut parts.headers) {
            drop(lease);
            let r = refusal(StatusCode::BAD_GATEWAY, "upstream-error");
            ex.log_now(&r, Some(&route.mount), rest, 0);
            return r;
        }
        strip_hop_by_hop(&mut parts.headers);
        let guard = ex.guard(parts.status.as_u16(), &route.mount, rest, Some(stats));
        return Response::from_parts(
            parts,
            FacadeBody::stream(body, route.idle_timeout, guard, Some(lease)),
        );
    }
    // The connection becomes the tunnel: it never returns to the pool.
    drop(lease);
    if let Err(why) = check_switch(&requested, ws_key.as_ref(), resp.headers()) {
        tracing::warn!(mount = %route.mount, "refusing the sidecar's upgrade: {why}");
        let r = refusal(StatusCode::BAD_GATEWAY, "bad-upgrade");
        ex.log_now(&r, Some(&route.mount), rest, 0);
        return r;
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    let chosen = resp.headers().get(header::UPGRADE).cloned();
    let mut headers = std::mem::take(resp.headers_mut());
    strip_hop_by_hop(&mut headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(c) = chosen {
        headers.insert(header::UPGRADE, c);
    }
    let mut answer = Response::new(FacadeBody::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = headers;

    let guard = ex.guard(101, &route.mount, rest, None);
    let idle = route.idle_timeout;
    let mut shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let (c, u) = tokio::join!(client_side, upstream_side);
        let (Ok(c), Ok(u)) = (c, u) else {
            tracing::debug!("an upgraded connection went away before the splice started");
            return;
        };
        let counters = Arc::new(Counters::default());
        let base = tokio::time::Instant::now();
        let mut client = Tracked::new(TokioIo::new(c), counters.clone(), 0, base);
        let mut upstream = Tracked::new(TokioIo::new(u), counters.clone(), 1, base);
        let copy = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            64 * 1024,
            64 * 1024,
        );
        tokio::pin!(copy);
        let mut end: Option<&'static str> = None;
        loop {
            let last = counters.last_ms.load(Ordering::Relaxed);
            let deadline = base + std::time::Duration::from_millis(last) + idle;
            tokio::select! {
                r = &mut copy => {
                    if r.is_err() { end = Some("upstream-error"); }
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if counters.last_ms.load(Ordering::Relaxed) == last {
                        end = Some("idle-timeout");
                        break;
                    }
                }
                _ = crate::server::stopped(&mut shutdown) => { end = Some("shutdown"); break; }
            }
        }
        if let Some(mut g) = guard {
            g.record.bytes_in = counters.bytes[0].load(Ordering::Relaxed);
            g.record.bytes_out = counters.bytes[1].load(Ordering::Relaxed);
            g.record.reason = end;
            g.finished = true;
        }
    });
    answer
}

/// Bytes read from each side and the time of the last progress (ms after the splice began).
#[derive(Debug, Default)]
struct Counters {
    bytes: [AtomicU64; 2],
    last_ms: AtomicU64,
}

/// A spliced connection that counts what it reads.
struct Tracked<T> {
    io: T,
    counters: Arc<Counters>,
    side: usize,
    base: tokio::time::Instant,
}

impl<T> Tracked<T> {
    fn new(io: T, counters: Arc<Counters>, side: usize, base: tokio::time::Instant) -> Self {
        Tracked {
            io,
            counters,
            side,
            base,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.counters.bytes[self.side].fetch_add(n as u64, Ordering::Relaxed);
            let ms = self.base.elapsed().as_millis() as u64;
            self.counters.last_ms.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc6455_example() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn checks_the_switch() {
        let asked = HeaderValue::from_static("websocket");
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let mut ok = HeaderMap::new();
        ok.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        ok.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        ok.insert(
            "sec-websocket-accept",
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(check_switch(&asked, Some(&key), &ok).is_ok());
        let mut bad = ok.clone();
        bad.insert("sec-websocket-accept", HeaderValue::from_static("nope"));
        assert!(check_switch(&asked, Some(&key), &bad).is_err());
        let mut other = ok.clone();
        other.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(check_switch(&asked, Some(&key), &other).is_err());
        let mut no_conn = ok.clone();
        no_conn.remove(header::CONNECTION);
        assert!(check_switch(&asked, Some(&key), &no_conn).is_err());
        assert!(check_switch(&asked, None, &ok).is_err());
    }
}
