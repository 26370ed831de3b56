//! Which requests the fast path forwards, and how: a plain forward to a ready route, with
//! a body of known length it can hold whole. Everything else (the status document, SKILL.md,
//! refusals, upgrades, `Expect`, chunked or large bodies, a missing TCP token...) is left to
//! the general path, which answers as it always has.

use std::sync::Arc;

use crate::auth::constant_time_eq;
use crate::handler::{Shared, Transport};
use crate::head_scan::{digits, known, Known};
use crate::paths::{normalize, split_mount};
use crate::request_head::{Field, Head};
use crate::response_head::name_is;
use crate::routes::Route;

/// Largest request body the fast path reads whole before forwarding.
pub(crate) const BODY_MAX: u64 = 64 * 1024;
/// Most header fields the fast path handles (one bit each in [`Plan::skip`]).
pub(crate) const MAX_FIELDS: usize = 128;
/// Most names a `Connection` header may list for the fast path.
const MAX_LISTED: usize = 8;

/// Where the path forwarded to the sidecar is.
#[derive(Debug)]
pub(crate) enum Rest {
    /// In the request buffer (offsets from the head's start).
    At(usize, usize),
    /// Rebuilt (repeated slashes collapsed).
    Owned(String),
}

/// A request the fast path forwards.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The route.
    pub route: Arc<Route>,
    /// The sidecar's port.
    pub port: u16,
    /// HEAD: the answer has no body.
    pub head_request: bool,
    /// Safe to send again when a reused connection fails before any answer (RFC 9110
    /// §9.2.2).
    pub idempotent: bool,
    /// The path forwarded (the part after the mount; `""` for the mount itself).
    pub rest: Rest,
    /// The query (offsets), without the `?`.
    pub query: Option<(usize, usize)>,
    /// The body's length.
    pub body_len: usize,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
    /// Fields not forwarded (bit i: field i).
    pub skip: u128,
}

impl Plan {
    /// The forwarded path, `""` for the mount itself.
    pub(crate) fn rest<'a>(&'a self, head: &'a [u8]) -> &'a str {
        match &self.rest {
            Rest::At(a, b) => std::str::from_utf8(&head[*a..*b]).unwrap_or(""),
            Rest::Owned(s) => s,
        }
    }
}

/// The plan for the request whose head is at the start of `buf`, or None when the general
/// path must serve it.
pub(crate) fn plan(
    buf: &[u8],
    head: &Head,
    fields: &[Field],
    shared: &Shared,
    transport: Transport,
) -> Option<Plan> {
    if fields.len() > MAX_FIELDS {
        return None;
    }
    let method = &buf[head.method.0..head.method.1];
    if method == b"CONNECT" {
        return None;
    }
    let target = &buf[head.target.0..head.target.1];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some((head.target.0 + i + 1, head.target.1))),
        None => (target, None),
    };
    let path = std::str::from_utf8(path).ok()?;
    let normalized = normalize(path).ok()?;
    if normalized == "/" || normalized == crate::denied::PATH {
        return None;
    }
    let (mount, rest) = split_mount(&normalized);
    let route = shared.routes.get(mount)?;
    let port = route.ready_port()?;
    let get_or_head = method == b"GET" || method == b"HEAD";
    if (rest.is_empty() || rest == "/") && get_or_head && route.skill_md.is_some() {
        return None;
    }

    let value = |f: &Field| &buf[f.value.0..f.value.1];
    let mut skip = 0u128;
    let mut close = false;
    let mut connection_upgrade = false;
    let mut upgrade = false;
    let mut length: Option<u64> = None;
    let mut listed: [(usize, usize); MAX_LISTED] = [(0, 0); MAX_LISTED];
    let mut n_listed = 0;
    let (mut token_field, mut auth_field) = (None, None);
    for (i, f) in fields.iter().enumerate() {
        let v = value(f);
        match known(&buf[f.name.0..f.name.1]) {
            Known::Other | Known::ContentType | Known::Date | Known::XAccelBuffering => {}
            Known::Host
            | Known::XForwardedPrefix
            | Known::Te
            | Known::Trailer
            | Known::KeepAlive
            | Known::ProxyConnection
            | Known::ProxyAuthorization
            | Known::ProxyAuthenticate => skip |= 1 << i,
            Known::Connection => {
                skip |= 1 << i;
                let mut at = f.value.0;
                for t in v.split(|&b| b == b',') {
                    let start = at + (t.len() - t.trim_ascii_start().len());
                    let tt = t.trim_ascii();
                    at += t.len() + 1;
                    if tt.is_empty() || name_is(tt, b"keep-alive") {
                        continue;
                    }
                    if name_is(tt, b"close") {
                        close = true;
                    } else if name_is(tt, b"upgrade") {
                        connection_upgrade = true;
                    } else {
                        if n_listed == MAX_LISTED {
                            return None;
                        }
                        listed[n_listed] = (start, start + tt.len());
                        n_listed += 1;
                    }
                }
            }
            Known::Upgrade => {
                skip |= 1 << i;
                upgrade |= !v.is_empty();
            }
            Known::TransferEncoding | Known::Expect => return None,
            Known::ContentLength => {
                if length.is_some() {
                    return None;
                }
                length = Some(digits(v)?);
            }
            Known::XOmacFacadeToken => match transport {
                Transport::Unix => skip |= 1 << i,
                Transport::Tcp if token_field.is_some() => return None,
                Transport::Tcp => token_field = Some(i),
            },
            Known::Authorization => {
                if transport == Transport::Tcp {
                    if auth_field.is_some() {
                        return None;
                    }
                    auth_field = Some(i);
                }
            }
        }
    }
    if connection_upgrade && upgrade {
        return None;
    }
    if transport == Transport::Tcp {
        // The token as the general path checks it: `X-Omac-Facade-Token` first, then
        // `Authorization: Bearer`; only the header that carried it is dropped.
        let token = shared.token.as_deref()?.as_bytes();
        let by_header = token_field.filter(|&i| constant_time_eq(value(&fields[i]), token));
        let by_bearer = auth_field.filter(|&i| {
            let v = value(&fields[i]);
            v.len() > 7
                && v[..7].eq_ignore_ascii_case(b"bearer ")
                && constant_time_eq(&v[7..], token)
        });
        match by_header.or(by_bearer) {
            Some(i) => skip |= 1 << i,
            None => return None,
        }
    }
    for &(a, b) in &listed[..n_listed] {
        let t = &buf[a..b];
        // Framing and routing fields are never taken away, whatever a client lists.
        if name_is(t, b"content-length") || name_is(t, b"host") {
            continue;
        }
        for (j, f) in fields.iter().enumerate() {
            if name_is(&buf[f.name.0..f.name.1], t) {
                skip |= 1 << j;
            }
        }
    }
    let body_len = length.unwrap_or(0);
    if body_len > route.max_body_bytes || body_len > BODY_MAX {
        return None;
    }
    let rest = match &normalized {
        std::borrow::Cow::Borrowed(_) => {
            let a = head.target.0 + 1 + mount.len();
            Rest::At(a, a + rest.len())
        }
        std::borrow::Cow::Owned(_) => Rest::Owned(rest.to_string()),
    };
    Some(Plan {
        port,
        head_request: method == b"HEAD",
        idempotent: matches!(
            method,
            b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
        ),
        rest,
        query,
        body_len: body_len as usize,
        close,
        skip,
        route,
    })
}
