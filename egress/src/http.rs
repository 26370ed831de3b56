//! The HTTP/1.1 side: `CONNECT host:port` tunnels (TLS untouched) and absolute-URI
//! forwarding of `http://` requests, hop-by-hop and `Proxy-*` headers removed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixStream;

use crate::open::{open, OpenError};
use crate::policy::{Policy, Route};
use crate::verdict::{Denial, Rule};

type Body = BoxBody<Bytes, hyper::Error>;

/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header(r: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// The answer to a refused request: 403 (400 for an invalid target) with
/// `X-Omac-Sandbox: denied`, the rule in `X-Omac-Rule`, the explanation in the body.
pub fn denied(d: &Denial) -> Response<Body> {
    let status = match d.rule {
        Rule::InvalidTarget(_) | Rule::Unsupported(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let mut r = text(status, d.body());
    header(&mut r, "x-omac-sandbox", "denied");
    header(&mut r, "x-omac-rule", d.rule.name());
    r
}

fn failed(e: &OpenError) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = text(status, format!("omac sandbox: {}\n", e.message));
    if e.upstream {
        header(&mut r, "x-omac-sandbox", "upstream-error");
    }
    r
}

fn bad_request(msg: &str) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("omac sandbox: {msg}\n"))
}

/// Serves one client connection (after the first byte said it is not SOCKS).
pub async fn serve(policy: Arc<Policy>, stream: UnixStream) {
    let svc = service_fn(move |req| {
        let p = policy.clone();
        async move { Ok::<_, Infallible>(handle(p, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("client connection: {e}");
    }
}

async fn handle(policy: Arc<Policy>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(policy, req).await;
    }
    if req.uri().scheme().is_some() {
        return forward(policy, req).await;
    }
    bad_request(
        "this is omac's egress proxy: send proxy requests (GET http://host/path, or CONNECT host:port)",
    )
}

fn host_of(uri: &Uri) -> Option<String> {
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

async fn connect(policy: Arc<Policy>, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (Some(host), Some(port)) = (
        host_of(req.uri()),
        req.uri().authority().and_then(|a| a.port_u16()),
    ) else {
        return bad_request("CONNECT needs HOST:PORT");
    };
    let route = match policy.check(&host, port, "http-connect").await {
        Ok(r) => r,
        Err(d) => return denied(&d),
    };
    let (server, early) = match open(&policy, &route, &host, port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("{}", e.message);
            return failed(&e);
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("CONNECT {host}:{port}: the client left before the tunnel: {e}");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<UnixStream>>() {
            Ok(parts) => {
                let client = parts.io.into_inner();
                match crate::tunnel::relay(client, server, &parts.read_buf, &early).await {
                    Ok((up, down)) => {
                        tracing::debug!("tunnel {host}:{port} closed: {up} bytes up, {down} down")
                    }
                    Err(e) => tracing::debug!("tunnel {host}:{port}: {e}"),
                }
            }
            Err(_) => {
                tracing::error!("CONNECT {host}:{port}: unexpected connection type after upgrade")
            }
        }
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    )
}

/// Removes hop-by-hop headers, those `Connection` names, and (for requests) `Proxy-*`.
fn strip(headers: &mut HeaderMap, request: bool) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for n in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(n.as_str());
    }
    if request {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for k in proxy {
            headers.remove(k);
        }
    }
}

async fn forward(policy: Arc<Policy>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let uri = req.uri().clone();
    let Some(host) = host_of(&uri) else {
        return bad_request("the request URI has no host");
    };
    if uri.scheme_str() != Some("http") {
        // Audited like any refusal: the request names a destination.
        let scheme = uri.scheme_str().unwrap_or("?");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 0 });
        return denied(&policy.refuse_unsupported(
            &host,
            port,
            "http-forward",
            &format!("forwarding a {scheme}:// request"),
        ));
    }
    let port = uri.port_u16().unwrap_or(80);
    let route = match policy.check(&host, port, "http-forward").await {
        Ok(r) => r,
        Err(d) => return denied(&d),
    };
    let (mut parts, body) = req.into_parts();
    strip(&mut parts.headers, true);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority.clone(), |(_, h)| h.to_string());
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(HOST, v);
    }
    parts.version = hyper::Version::HTTP_11;
    let stream = match &route {
        Route::Direct(addrs) => {
            parts.uri = uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
            crate::dial::connect_any(addrs)
                .await
                .map_err(|e| OpenError {
                    message: format!("cannot connect to {authority}: {e}"),
                    upstream: false,
                    kind: Some(e.kind()),
                    status: None,
                })
        }
        Route::Upstream(up) => {
            if let Some(a) = up
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                parts.headers.insert(hyper::header::PROXY_AUTHORIZATION, a);
            }
            up.connect(policy.resolver()).await.map_err(|e| OpenError {
                message: format!(
                    "cannot reach the upstream proxy {}:{} (from {}): {e}",
                    up.host, up.port, up.origin
                ),
                upstream: true,
                kind: Some(e.kind()),
                status: None,
            })
        }
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("{}", e.message);
            return failed(&e);
        }
    };
    let upstream = matches!(route, Route::Upstream(_));
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(stream))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            return failed(&OpenError {
                message: format!("{authority}: {e}"),
                upstream,
                kind: None,
                status: None,
            })
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("forwarded connection: {e}");
        }
    });
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip(&mut parts.headers, false);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => failed(&OpenError {
            message: format!("{authority} did not answer: {e}"),
            upstream,
            kind: None,
            status: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_proxy_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "5"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("proxy-foo", "x"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let mut resp = h.clone();
        strip(&mut h, true);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        strip(&mut resp, false);
        assert!(resp.contains_key("proxy-foo") && !resp.contains_key("x-secret"));
    }
}
