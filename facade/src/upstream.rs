//! The keep-alive connection pool towards the sidecars (TCP_NODELAY on every socket: a
//! sidecar's answer must never wait for a delayed ACK) and the classification of its errors.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyError, RequestBody};

/// The pooled HTTP/1.1 client used for every forwarded request.
pub(crate) type UpstreamClient = Client<HttpConnector, RequestBody>;

/// A client with TCP_NODELAY, a dial timeout and a pool large enough for 1024 idle sockets
/// per sidecar.
pub(crate) fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .build(http)
}

/// What went wrong on the way to a sidecar, as the facade answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing listens on the port: 503 `sidecar-down`.
    Refused,
    /// Dial or answer timed out: 504 `timeout`.
    Timeout,
    /// The client's body went past the route's limit: 413 `body-too-large`.
    TooLarge,
    /// The client stopped sending its body: 408 `request-idle`.
    ClientIdle,
    /// Anything else: 502 `upstream-error`.
    Other,
}

/// Finds the cause of a client error in its source chain.
pub(crate) fn classify(err: &(dyn std::error::Error + 'static)) -> Failure {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<BodyError>() {
            return match b {
                BodyError::TooLarge(_) => Failure::TooLarge,
                BodyError::Idle(_) => Failure::ClientIdle,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Failure::Refused,
                std::io::ErrorKind::TimedOut => return Failure::Timeout,
                _ => {}
            }
        }
        cur = e.source();
    }
    Failure::Other
}
