//! The bytes the fast path writes: the request head for the sidecar, the answer head for the
//! client (the same fields the general path sends), and the facade's own refusals (the same
//! bytes hyper writes for them).

use hyper::StatusCode;

use super::plan::Plan;
use crate::head_scan::{known, Known};
use crate::request_head::Head;
use crate::response_head::{self, name_is, Answer, Framing};
use crate::{http_date, request_head};

/// Appends the request for the sidecar: the request line with the forwarded path and the
/// query, the client's fields but the dropped ones, `host` and `x-forwarded-prefix`, then
/// the body.
pub(crate) fn request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &Head,
    fields: &[request_head::Field],
    plan: &Plan,
) {
    out.extend_from_slice(&buf[head.method.0..head.method.1]);
    out.push(b' ');
    let rest = plan.rest(buf);
    if rest.is_empty() {
        out.push(b'/');
    } else {
        out.extend_from_slice(rest.as_bytes());
    }
    if let Some((a, b)) = plan.query {
        out.push(b'?');
        out.extend_from_slice(&buf[a..b]);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Runs of forwarded lines are copied as they came (they were checked byte by byte).
    let mut run: Option<(usize, usize)> = None;
    for (i, f) in fields.iter().enumerate() {
        if plan.skip & (1 << i) != 0 {
            if let Some((a, b)) = run.take() {
                out.extend_from_slice(&buf[a..b]);
            }
        } else {
            run = match run {
                Some((a, b)) if b == f.name.0 => Some((a, f.end)),
                Some((a, b)) => {
                    out.extend_from_slice(&buf[a..b]);
                    Some((f.name.0, f.end))
                }
                None => Some((f.name.0, f.end)),
            };
        }
    }
    if let Some((a, b)) = run {
        out.extend_from_slice(&buf[a..b]);
    }
    out.extend_from_slice(b"host: 127.0.0.1:");
    out.extend_from_slice(itoa::Buffer::new().format(plan.port).as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-prefix: ");
    out.extend_from_slice(plan.route.prefix.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&buf[head.len..head.len + plan.body_len]);
}

fn field(out: &mut Vec<u8>, buf: &[u8], name: (usize, usize), value: (usize, usize)) {
    out.extend_from_slice(&buf[name.0..name.1]);
    out.extend_from_slice(b": ");
    out.extend_from_slice(&buf[value.0..value.1]);
    out.extend_from_slice(b"\r\n");
}

/// True for a `text/event-stream` content type.
fn is_event_stream(v: &[u8]) -> bool {
    let v = v.trim_ascii_start();
    v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
}

/// Appends the answer head for the client: status line and reason as the sidecar sent
/// them, its fields without the hop-by-hop ones (RFC 9110 §7.6.1, and those its
/// `Connection` lists), the framing (`content-length`, or `transfer-encoding: chunked` for a
/// body of unknown length), `x-accel-buffering: no` for an event stream, `connection: close`
/// when the connection ends after it, and `date` when the sidecar sent none.
pub(crate) fn answer_head(
    out: &mut Vec<u8>,
    ub: &[u8],
    a: &Answer,
    fields: &[response_head::Field],
    head_request: bool,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(a.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(&ub[a.reason.0..a.reason.1]);
    out.extend_from_slice(b"\r\n");
    let name = |f: &response_head::Field| &ub[f.name.0..f.name.1];
    let value = |f: &response_head::Field| &ub[f.value.0..f.value.1];
    let mut kinds = [Known::Other; response_head::MAX_FIELDS];
    let mut event_stream = false;
    let mut lists = false;
    for (k, f) in kinds.iter_mut().zip(fields) {
        *k = known(name(f));
        match k {
            Known::ContentType => event_stream |= is_event_stream(value(f)),
            Known::Connection => {
                lists |= value(f).split(|&b| b == b',').any(|t| {
                    let t = t.trim_ascii();
                    !t.is_empty() && !name_is(t, b"keep-alive") && !name_is(t, b"close")
                })
            }
            _ => {}
        }
    }
    let listed = |n: &[u8]| {
        fields.iter().any(|f| {
            known(name(f)) == Known::Connection
                && value(f)
                    .split(|&b| b == b',')
                    .any(|t| name_is(t.trim_ascii(), n))
        })
    };
    let mut date = false;
    let mut run: Option<(usize, usize)> = None;
    for (f, k) in fields.iter().zip(kinds) {
        let pass = match k {
            Known::Connection
            | Known::Te
            | Known::Trailer
            | Known::TransferEncoding
            | Known::Upgrade
            | Known::ProxyAuthorization
            | Known::ProxyAuthenticate
            | Known::Expect
            | Known::KeepAlive
            | Known::ProxyConnection => false,
            // Written below from the framing.
            Known::ContentLength => false,
            Known::XAccelBuffering if event_stream => false,
            Known::Host => true,
            _ => !(lists && listed(name(f))),
        };
        date |= pass && k == Known::Date;
        match (pass, run) {
            (true, Some((a, b))) if f.end != 0 && b == f.name.0 => run = Some((a, f.end)),
            (true, _) => {
                if let Some((a, b)) = run.take() {
                    out.extend_from_slice(&ub[a..b]);
                }
                if f.end != 0 {
                    run = Some((f.name.0, f.end));
                } else {
                    field(out, ub, f.name, f.value);
                }
            }
            (false, _) => {
                if let Some((a, b)) = run.take() {
                    out.extend_from_slice(&ub[a..b]);
                }
            }
        }
    }
    if let Some((a, b)) = run {
        out.extend_from_slice(&ub[a..b]);
    }
    match a.framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked | Framing::Close => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Framing::Empty => {
            // An answer to HEAD keeps the length the sidecar announced; 204 and 304 to other
            // methods carry none (as hyper writes them).
            if let (Some(n), true) = (a.declared, head_request) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if event_stream {
        out.extend_from_slice(b"x-accel-buffering: no\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !date {
        out.extend_from_slice(b"date: ");
        http_date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the facade's refusal `status` with `X-Omac-Reason: reason`, as hyper writes the
/// general path's [`crate::answers::refusal`]; `close` adds `connection: close`. Returns
/// the body's length.
pub(crate) fn refusal(out: &mut Vec<u8>, status: StatusCode, reason: &str, close: bool) -> u64 {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\nx-omac-reason: ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let len = "omac: \n".len() + reason.len();
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    http_date::extend(out);
    out.extend_from_slice(b"\r\n\r\nomac: ");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    len as u64
}
