//! The per-session bearer token of the loopback TCP listener: generated from the kernel's
//! random source, compared in constant time, and never forwarded to a sidecar.

use hyper::header::{self, HeaderMap, HeaderName};

/// The header the Go omac (after PR #297) uses for the same token; accepted as well.
pub(crate) const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-omac-facade-token");

/// A fresh 256-bit token, hex encoded.
pub fn generate_token() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the comparison from being turned into an early exit.
    std::hint::black_box(diff) == 0
}

/// Checks the request's token (`Authorization: Bearer T` or `X-Omac-Facade-Token: T`) and
/// removes the header that carried it, so the sidecar never sees it.
pub(crate) fn check_and_strip(headers: &mut HeaderMap, token: &str) -> bool {
    if let Some(v) = headers.get(&TOKEN_HEADER) {
        if constant_time_eq(v.as_bytes(), token.as_bytes()) {
            headers.remove(&TOKEN_HEADER);
            return true;
        }
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let b = v.as_bytes();
        if b.len() > 7
            && b[..7].eq_ignore_ascii_case(b"bearer ")
            && constant_time_eq(&b[7..], token.as_bytes())
        {
            headers.remove(header::AUTHORIZATION);
            return true;
        }
    }
    false
}

/// Removes the token when it is the first segment of the request's path (`/TOKEN/rest` ->
/// `/rest`, `/TOKEN` -> `/`), keeping the query; true when it was there.
pub(crate) fn strip_path_token<B>(req: &mut hyper::Request<B>, token: &str) -> bool {
    let uri = req.uri();
    let path = uri.path();
    let Some(after) = path.strip_prefix('/') else {
        return false;
    };
    let (first, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    if !constant_time_eq(first.as_bytes(), token.as_bytes()) {
        return false;
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let pq = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    match hyper::http::uri::PathAndQuery::try_from(pq) {
        Ok(p) => parts.path_and_query = Some(p),
        Err(_) => return false,
    }
    match hyper::Uri::from_parts(parts) {
        Ok(u) => {
            *req.uri_mut() = u;
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn tokens_are_random_and_long() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn path_tokens_are_stripped_with_the_query_kept() {
        let mut r = hyper::Request::get("/tok123/echo/status?a=1")
            .body(())
            .unwrap();
        assert!(strip_path_token(&mut r, "tok123"));
        assert_eq!(r.uri().path(), "/echo/status");
        assert_eq!(r.uri().query(), Some("a=1"));
        let mut r = hyper::Request::get("/tok123").body(()).unwrap();
        assert!(strip_path_token(&mut r, "tok123"));
        assert_eq!(r.uri().path(), "/");
        for p in ["/tok12/echo", "/tok1234/echo", "/echo/tok123", "/"] {
            let mut r = hyper::Request::get(p).body(()).unwrap();
            assert!(!strip_path_token(&mut r, "tok123"), "{p}");
            assert_eq!(r.uri().path(), p);
        }
    }

    #[test]
    fn compares_and_strips() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert!(!check_and_strip(&mut h, "other"));
        assert!(
            h.contains_key(header::AUTHORIZATION),
            "a sidecar's own Authorization stays"
        );
        assert!(check_and_strip(&mut h, "tok"));
        assert!(!h.contains_key(header::AUTHORIZATION));
        h.insert(TOKEN_HEADER, HeaderValue::from_static("tok"));
        assert!(check_and_strip(&mut h, "tok"));
        assert!(h.is_empty());
        assert!(!check_and_strip(&mut h, "tok"));
    }
}
