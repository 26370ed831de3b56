//! Plain HTTP forwarding: `/<mount>/REST?Q` -> `http://127.0.0.1:PORT/REST?Q` with
//! `X-Forwarded-Prefix: /<mount>`, the route's body limit (413) and idle timeout (504), and
//! the answer streamed back frame by frame.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};

use crate::answers::{refusal, refusal_closing};
use crate::body::{FacadeBody, RequestBody, RequestStats};
use crate::handler::{Exchange, Shared};
use crate::headers::strip_hop_by_hop;
use crate::routes::{Route, Target};
use crate::upstream::{classify, Failure, Lease};

/// `X-Forwarded-Prefix`.
pub(crate) const FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// The request target for the sidecar: `rest` and the query in origin form (RFC 9112
/// §3.2.1: a client sends an origin server only the path and query; hyper's client writes
/// the URI as given, so an absolute URI here would reach sidecars as `GET http://...`).
pub(crate) fn upstream_uri(rest: &str, query: Option<&str>) -> Option<Uri> {
    let path = if rest.is_empty() { "/" } else { rest };
    let pq = match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
        None => PathAndQuery::try_from(path).ok()?,
    };
    Some(Uri::from(pq))
}

/// Request headers as the sidecar gets them: hop-by-hop gone, `Host` and the prefix set.
pub(crate) fn upstream_headers(headers: &mut HeaderMap, route: &Route, target: &Target) {
    strip_hop_by_hop(headers);
    headers.insert(header::HOST, target.host.clone());
    headers.insert(FORWARDED_PREFIX, route.prefix.clone());
}

/// The answer for a failed exchange with the sidecar.
pub(crate) fn failure_answer(f: Failure) -> Response<FacadeBody> {
    match f {
        Failure::Refused => refusal(StatusCode::SERVICE_UNAVAILABLE, "sidecar-down"),
        Failure::Timeout => refusal(StatusCode::GATEWAY_TIMEOUT, "timeout"),
        Failure::TooLarge => refusal_closing(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
        Failure::ClientIdle => refusal_closing(StatusCode::REQUEST_TIMEOUT, "request-idle"),
        Failure::Other => refusal(StatusCode::BAD_GATEWAY, "upstream-error"),
    }
}

/// Checks a sidecar answer's framing fields before they go on to the client: a chunked
/// answer loses its `Content-Length` (the chunks frame it; hyper's client ignores the length
/// but leaves the field, which would announce a wrong length to the client), and invalid or
/// conflicting lengths are refused even on answers without a body (RFC 9112 §6.3; hyper's
/// client only checks them when it reads a body). False: answer 502.
pub(crate) fn answer_framing(headers: &mut HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
        return true;
    }
    let mut got: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = match std::str::from_utf8(part) {
                Ok(t)
                    if !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    t.parse::<u64>().ok()
                }
                _ => None,
            };
            match (n, got) {
                (None, _) => return false,
                (Some(n), Some(g)) if n != g => return false,
                (Some(n), _) => got = Some(n),
            }
        }
    }
    true
}

/// The declared `Content-Length`, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

/// Sends the request and waits for the answer's head, giving up after the route's idle
/// timeout without progress (the request body still arriving counts as progress).
pub(crate) async fn send(
    shared: &Shared,
    route: &Route,
    target: &Target,
    req: Request<RequestBody>,
    stats: &RequestStats,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let idle = route.idle_timeout;
    let fut = crate::upstream::send(&shared.pool, shared.connect_timeout, target.port, req);
    tokio::pin!(fut);
    let mut seen = stats.bytes.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(idle, fut.as_mut()).await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) => {
                if stats.too_large.load(Ordering::Relaxed) {
                    return Err(Failure::TooLarge);
                }
                return Err(classify(&e));
            }
            Err(_) => {
                let now = stats.bytes.load(Ordering::Relaxed);
                if now == seen {
                    return Err(Failure::Timeout);
                }
                seen = now;
            }
        }
    }
}

/// Forwards a plain (non-upgrade) request.
pub(crate) async fn proxy(
    shared: &Shared,
    ex: &Exchange,
    route: &Route,
    target: &Target,
    rest: &str,
    req: Request<Incoming>,
) -> Response<FacadeBody> {
    // An answer given before the sidecar's: logged with the request bytes forwarded so far.
    let early = |r: Response<FacadeBody>, bytes_in: u64| {
        ex.log_now(&r, Some(&route.mount), rest, bytes_in);
        r
    };
    let (mut parts, body) = req.into_parts();
    if content_length(&parts.headers).is_some_and(|n| n > route.max_body_bytes) {
        let r = refusal_closing(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
        return early(r, 0);
    }
    let Some(uri) = upstream_uri(rest, parts.uri.query()) else {
        return early(refusal(StatusCode::BAD_REQUEST, "bad-path"), 0);
    };
    upstream_headers(&mut parts.headers, route, target);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let stats = Arc::new(RequestStats::default());
    let body = (!body.is_end_stream()).then_some(body);
    let req = Request::from_parts(
        parts,
        RequestBody::new(
            body,
            route.max_body_bytes,
            route.idle_timeout,
            stats.clone(),
        ),
    );
    let (resp, lease) = match send(shared, route, target, req, &stats).await {
        Ok(r) => r,
        Err(f) => return early(failure_answer(f), stats.bytes.load(Ordering::Relaxed)),
    };
    let (mut parts, body) = resp.into_parts();
    if !answer_framing(&mut parts.headers) {
        drop(lease);
        let r = refusal(StatusCode::BAD_GATEWAY, "upstream-error");
        return early(r, stats.bytes.load(Ordering::Relaxed));
    }
    strip_hop_by_hop(&mut parts.headers);
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    if event_stream {
        parts
            .headers
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    parts.version = Version::HTTP_11;
    let guard = ex.guard(parts.status.as_u16(), &route.mount, rest, Some(stats));
    Response::from_parts(
        parts,
        FacadeBody::stream(body, route.idle_timeout, guard, Some(lease)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_framing_fields_are_checked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(answer_framing(&mut h));
        assert!(
            !h.contains_key(header::CONTENT_LENGTH),
            "the chunks frame it"
        );
        for (ok, values) in [
            (true, &["5"][..]),
            (true, &["5, 5", "5"]),
            (false, &["5", "6"]),
            (false, &["5x"]),
            (false, &["-1"]),
            (false, &[""]),
        ] {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_static(v));
            }
            assert_eq!(answer_framing(&mut h), ok, "{values:?}");
        }
    }

    #[test]
    fn builds_origin_form_targets() {
        let u = upstream_uri("/a/b", Some("x=1&y=%20")).unwrap();
        assert_eq!(u.to_string(), "/a/b?x=1&y=%20");
        assert!(
            u.scheme().is_none() && u.authority().is_none(),
            "origin form"
        );
        assert_eq!(upstream_uri("", None).unwrap().to_string(), "/");
        assert_eq!(upstream_uri("/", Some("")).unwrap().to_string(), "/?");
    }
}
