//! `GET /sandbox/denied?path=P`: the agent asks why a path is out of its reach. The session
//! supplies the checker (it knows the bundle); the facade only answers with it.
//!
//! Answers: 200 with `X-Omac-Sandbox: denied` and `{"denied": true, "path", "rule", "note"}`
//! when the sandbox keeps the agent from P; 404 with `{"denied": false, ...}` when it does not;
//! 400 `missing-path` without a `path` or with a relative one; 404
//! `denied-endpoint-disabled` when no checker is wired (a session run with `--no-sandbox`);
//! 405 for a method other than GET and HEAD.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};

use crate::answers::{json, refusal};
use crate::body::FacadeBody;

/// The path of the endpoint.
pub(crate) const PATH: &str = "/sandbox/denied";

/// Whether a path is denied, and the JSON document to answer with.
pub type DeniedAnswer = Option<(bool, serde_json::Value)>;

/// The session's answer for one absolute path: whether it is denied and the JSON document
/// (`denied`, `path`, `rule`, `note`); None for a path the checker cannot judge (relative).
#[derive(Clone)]
pub struct DeniedChecker(pub Arc<dyn Fn(&str) -> DeniedAnswer + Send + Sync>);

impl std::fmt::Debug for DeniedChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeniedChecker")
    }
}

impl DeniedChecker {
    /// A checker calling `f`.
    pub fn new(f: impl Fn(&str) -> DeniedAnswer + Send + Sync + 'static) -> DeniedChecker {
        DeniedChecker(Arc::new(f))
    }
}

/// The answer to a request for [`PATH`] with query `query`.
pub(crate) fn answer(
    checker: Option<&DeniedChecker>,
    method: &Method,
    query: Option<&str>,
) -> hyper::Response<FacadeBody> {
    if method != Method::GET && method != Method::HEAD {
        return refusal(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
    let path = query.and_then(|q| {
        url_decoded_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "path")
            .map(|(_, v)| v)
    });
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return refusal(StatusCode::BAD_REQUEST, "missing-path");
    };
    let Some(checker) = checker else {
        return refusal(StatusCode::NOT_FOUND, "denied-endpoint-disabled");
    };
    match (checker.0)(&path) {
        None => refusal(StatusCode::BAD_REQUEST, "missing-path"),
        Some((true, doc)) => {
            let mut r = json(StatusCode::OK, None, &doc);
            r.headers_mut()
                .insert("x-omac-sandbox", HeaderValue::from_static("denied"));
            r
        }
        Some((false, doc)) => json(StatusCode::NOT_FOUND, None, &doc),
    }
}

/// `a=b&c=d` with `%XX` and `+` decoded; pairs whose value is not UTF-8 are dropped.
fn url_decoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// A query component: `+` is a space, `%XX` a byte; None for a bad escape or non-UTF-8.
fn decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    String::from_utf8(crate::paths::percent_decode(spaced.as_bytes())?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            url_decoded_pairs("x=1&path=%2Fhome%2Fu%2F.ssh+dir&y"),
            vec![
                ("x".into(), "1".into()),
                ("path".into(), "/home/u/.ssh dir".into()),
                ("y".into(), "".into())
            ]
        );
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
    }
}
