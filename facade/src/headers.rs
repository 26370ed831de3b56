//! Hop-by-hop headers (RFC 9110 §7.6.1): the fixed list plus every name the `Connection`
//! header lists are dropped before a message crosses the facade.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that only concern one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::EXPECT,
];

/// `Keep-Alive` and the legacy `Proxy-Connection`, not in `http`'s constants.
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

/// True when a comma-separated header (e.g. `Connection`) holds `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn is_hop_by_hop(n: &HeaderName) -> bool {
    HOP_BY_HOP.contains(n) || n == KEEP_ALIVE || n == PROXY_CONNECTION
}

/// Removes the hop-by-hop headers, the ones `Connection` names first.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present instead of ten lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            // Framing and routing headers are never taken away, whatever a client lists.
            .filter(|n| *n != header::CONTENT_LENGTH && *n != header::HOST)
            .collect();
        for n in listed {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
}

/// The `Upgrade` header of a request asking for one (`Connection: upgrade` and `Upgrade: x`).
pub(crate) fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .filter(|v| !v.is_empty())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop , Upgrade"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sidecar"),
        );
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
        assert!(h.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn connection_cannot_remove_framing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("content-length, host"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::HOST, HeaderValue::from_static("x"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::CONTENT_LENGTH));
        assert!(h.contains_key(header::HOST));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested_upgrade(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested_upgrade(&h).unwrap(), "websocket");
    }
}
