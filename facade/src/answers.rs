//! The answers the facade gives itself: refusals with `X-Omac-Reason`, JSON documents.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::body::FacadeBody;

/// The header that says why the facade (not the sidecar) answered.
pub(crate) const REASON: HeaderName = HeaderName::from_static("x-omac-reason");

/// A plain-text refusal `omac: <reason>` with `X-Omac-Reason: <reason>`.
pub(crate) fn refusal(status: StatusCode, reason: &'static str) -> Response<FacadeBody> {
    let mut r = Response::new(FacadeBody::full(format!("omac: {reason}\n")));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(REASON, HeaderValue::from_static(reason));
    r
}

/// A refusal after which the connection is closed (the request body was not read).
pub(crate) fn refusal_closing(status: StatusCode, reason: &'static str) -> Response<FacadeBody> {
    let mut r = refusal(status, reason);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A JSON document, with `X-Omac-Reason` when the facade refuses.
pub(crate) fn json(
    status: StatusCode,
    reason: Option<&'static str>,
    value: &serde_json::Value,
) -> Response<FacadeBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(FacadeBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(reason) = reason {
        h.insert(REASON, HeaderValue::from_static(reason));
    }
    r
}
