//! One request through the facade, in the order of reference §3.2: token (TCP), path checks,
//! status document, route, route state, SKILL.md at the mount root, upgrade, forward.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{watch, Notify};

use crate::access_log::{AccessLog, Record};
use crate::answers::{json, refusal};
use crate::body::{FacadeBody, LogGuard, RequestStats};
use crate::headers::requested_upgrade;
use crate::paths::{normalize, split_mount};
use crate::raw_upstream::RawPool;
use crate::routes::{Route, RouteState, RouteTable};
use crate::upstream::HyperPool;
use crate::{auth, forward, upgrade};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The Unix socket (peer checked by uid).
    Unix,
    /// Loopback TCP (bearer token required).
    Tcp,
}

impl Transport {
    /// `unix` or `tcp`, as logged.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }
}

/// What every request handler of one worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) routes: RouteTable,
    /// hyper's client connections (the general path).
    pub(crate) pool: HyperPool,
    /// Raw sidecar connections (the fast path).
    pub(crate) raw: RawPool,
    pub(crate) connect_timeout: Duration,
    pub(crate) log: Option<AccessLog>,
    pub(crate) token: Option<String>,
    /// The session's `/sandbox/denied` checker.
    pub(crate) denied: Option<crate::DeniedChecker>,
    pub(crate) version: String,
    /// Flips to true when the facade shuts down (spliced connections close then).
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The worker's own view of the shutdown (no lock shared between workers per request).
    pub(crate) stop: Arc<WorkerStop>,
    /// Serve plain exchanges on the fast path.
    pub(crate) fast: bool,
    /// The client head limits and timeout (the fast path applies them as hyper does).
    pub(crate) header_timeout: Duration,
    pub(crate) max_head: usize,
    pub(crate) max_fields: usize,
}

/// One worker's shutdown signal: a flag, and a notification for connections waiting idle.
#[derive(Debug, Default)]
pub(crate) struct WorkerStop {
    pub(crate) flag: AtomicBool,
    pub(crate) notify: Arc<Notify>,
}

impl WorkerStop {
    /// Raises the flag and wakes the idle connections.
    pub(crate) fn raise(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

/// The bookkeeping of one request: what the access log line needs.
pub(crate) struct Exchange {
    pub(crate) transport: Transport,
    pub(crate) started: std::time::Instant,
    pub(crate) arrived: SystemTime,
    pub(crate) method: Method,
    pub(crate) log: Option<AccessLog>,
}

impl Exchange {
    /// The log record of this request (only built when there is a log).
    fn record(
        &self,
        status: u16,
        mount: Option<&Arc<str>>,
        path: &str,
        reason: Option<&'static str>,
    ) -> Record {
        Record {
            arrived: Some(self.arrived),
            transport: self.transport.name(),
            method: self.method.clone(),
            mount: mount.cloned(),
            path: path.to_string(),
            status,
            reason,
            ..Record::default()
        }
    }

    /// Logs an answer the facade made itself, at once.
    pub(crate) fn log_now(
        &self,
        resp: &Response<FacadeBody>,
        mount: Option<&Arc<str>>,
        path: &str,
        bytes_in: u64,
    ) {
        let Some(log) = &self.log else { return };
        let reason = resp
            .headers()
            .get(crate::answers::REASON)
            .and_then(|v| reason_name(v.as_bytes()));
        let mut rec = self.record(resp.status().as_u16(), mount, path, reason);
        rec.bytes_in = bytes_in;
        rec.bytes_out = hyper::body::Body::size_hint(resp.body())
            .exact()
            .unwrap_or(0);
        rec.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        log.write(&rec);
    }

    /// A guard that logs a streamed answer when its body ends.
    pub(crate) fn guard(
        &self,
        status: u16,
        mount: &Arc<str>,
        path: &str,
        stats: Option<Arc<RequestStats>>,
    ) -> Option<Box<LogGuard>> {
        let log = self.log.clone()?;
        Some(Box::new(LogGuard {
            log,
            record: self.record(status, Some(mount), path, None),
            started: self.started,
            stats,
            finished: false,
        }))
    }
}

/// The reasons the facade gives, as static strings for the log.
fn reason_name(v: &[u8]) -> Option<&'static str> {
    const ALL: [&str; 18] = [
        "missing-path",
        "denied-endpoint-disabled",
        "unauthorized",
        "method-not-allowed",
        "bad-path",
        "dot-segment",
        "bad-escape",
        "unknown-mount",
        "starting",
        "restarting",
        "sidecar-down",
        "skill-broken",
        "pending-credentials",
        "body-too-large",
        "timeout",
        "upstream-error",
        "bad-upgrade",
        "request-idle",
    ];
    ALL.iter().copied().find(|r| r.as_bytes() == v)
}

/// The service function hyper calls for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    transport: Transport,
    mut req: Request<Incoming>,
) -> Result<Response<FacadeBody>, Infallible> {
    let ex = Exchange {
        transport,
        started: std::time::Instant::now(),
        arrived: if shared.log.is_some() {
            SystemTime::now()
        } else {
            SystemTime::UNIX_EPOCH
        },
        method: req.method().clone(),
        log: shared.log.clone(),
    };

    // The token of the TCP listener; never forwarded, on either transport. A token leading
    // the path is removed first, whatever else authorizes the request, so that it never
    // reaches a route, a sidecar or the log.
    let authorized = match (&shared.token, transport) {
        (Some(t), Transport::Tcp) => {
            let in_path = auth::strip_path_token(&mut req, t);
            auth::check_and_strip(req.headers_mut(), t) || in_path
        }
        _ => {
            req.headers_mut().remove(auth::TOKEN_HEADER);
            true
        }
    };
    if !authorized {
        let mut r = refusal(StatusCode::UNAUTHORIZED, "unauthorized");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        ex.log_now(&r, None, "", 0);
        return Ok(r);
    }
    if req.method() == Method::CONNECT {
        let r = refusal(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
        ex.log_now(&r, None, "", 0);
        return Ok(r);
    }

    let path = match normalize(req.uri().path()) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            let r = refusal(StatusCode::BAD_REQUEST, e.reason());
            ex.log_now(&r, None, "", 0);
            return Ok(r);
        }
    };
    if path == crate::denied::PATH {
        let r = crate::denied::answer(shared.denied.as_ref(), req.method(), req.uri().query());
        ex.log_now(&r, None, &path, 0);
        return Ok(r);
    }
    if path == "/" {
        let r = status_document(&shared, req.method());
        ex.log_now(&r, None, "/", 0);
        return Ok(r);
    }
    let (mount, rest) = split_mount(&path);
    let Some(route) = shared.routes.get(mount) else {
        let r = refusal(StatusCode::NOT_FOUND, "unknown-mount");
        ex.log_now(&r, None, &path, 0);
        return Ok(r);
    };
    let target = match route.target() {
        Some(t) => t,
        None => {
            let r = state_answer(&route);
            ex.log_now(&r, Some(&route.mount), rest, 0);
            return Ok(r);
        }
    };

    let upgrade = requested_upgrade(req.headers());
    if upgrade.is_none()
        && (rest.is_empty() || rest == "/")
        && (req.method() == Method::GET || req.method() == Method::HEAD)
    {
        if let Some(r) = skill_md(&route, req.method()).await {
            ex.log_now(&r, Some(&route.mount), rest, 0);
            return Ok(r);
        }
    }
    let resp = match upgrade {
        Some(protocols) => {
            upgrade::proxy(&shared, &ex, &route, &target, rest, req, protocols).await
        }
        None => forward::proxy(&shared, &ex, &route, &target, rest, req).await,
    };
    Ok(resp)
}

/// `/`: the version, the mounts and their states.
fn status_document(shared: &Shared, method: &Method) -> Response<FacadeBody> {
    if method != Method::GET && method != Method::HEAD {
        return refusal(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
    let snap = shared.routes.snapshot();
    let skills: Vec<&str> = snap.iter().map(|(m, _)| m.as_str()).collect();
    let states: serde_json::Map<String, serde_json::Value> = snap
        .iter()
        .map(|(m, s)| (m.clone(), serde_json::Value::from(s.name())))
        .collect();
    json(
        StatusCode::OK,
        None,
        &serde_json::json!({ "version": shared.version, "skills": skills, "states": states }),
    )
}

/// The answer for a route that is not ready.
fn state_answer(route: &Route) -> Response<FacadeBody> {
    match route.state() {
        RouteState::Ready { .. } | RouteState::Starting => {
            refusal(StatusCode::SERVICE_UNAVAILABLE, "starting")
        }
        RouteState::Restarting { .. } => refusal(StatusCode::SERVICE_UNAVAILABLE, "restarting"),
        RouteState::Down { .. } => refusal(StatusCode::SERVICE_UNAVAILABLE, "sidecar-down"),
        RouteState::Broken { detail } => json(
            StatusCode::BAD_GATEWAY,
            Some("skill-broken"),
            &serde_json::json!({"error": "skill-broken", "skill": route.skill, "detail": detail}),
        ),
        RouteState::PendingCredentials { detail } => json(
            StatusCode::CONFLICT,
            Some("pending-credentials"),
            &serde_json::json!({"error": "pending-credentials", "skill": route.skill, "detail": detail}),
        ),
    }
}

/// `SKILL.md` at the mount root, when the skill has one.
async fn skill_md(route: &Route, method: &Method) -> Option<Response<FacadeBody>> {
    let path = route.skill_md.as_ref()?;
    let text = tokio::fs::read(path).await.ok()?;
    let len = text.len();
    let body = if method == Method::HEAD {
        FacadeBody::empty()
    } else {
        FacadeBody::full(text)
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    h.insert("x-omac-discovery", HeaderValue::from_static("skill-md"));
    if method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Some(r)
}
