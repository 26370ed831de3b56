//! The facade and the sidecar supervisor.
//!
//! The facade is an HTTP/1.1 reverse proxy on a Unix socket (and, when asked, on loopback TCP
//! with a bearer token) that routes `/<mount>/...` to skill sidecars on `127.0.0.1`. The
//! supervisor starts those sidecars (environment built from scratch, secrets in memory only),
//! probes their health, restarts them with backoff when they die, and makes sure none outlives
//! omac. Both share a [`RouteTable`]: the supervisor sets the states, the facade answers by them.
//!
//! ```no_run
//! # async fn demo(specs: Vec<omac_facade::SidecarSpec>) -> Result<(), omac_facade::Error> {
//! use omac_facade::*;
//! let routes = RouteTable::new(vec![RouteConfig::new("echo", "echo-rest")])?;
//! let sup = Supervisor::new(SupervisorConfig::new("/run/omac/logs"), routes.clone());
//! sup.start(specs).await?;                       // waits for every health probe
//! let facade = start(FacadeConfig::new("/run/omac/bridge.sock"), routes).await?;
//! // ... run the agent ...
//! facade.shutdown().await;
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod access_log;
mod answers;
mod auth;
mod body;
mod chunked;
mod config;
mod deadline;
mod denied;
mod error;
mod fast;
mod forward;
mod handler;
mod head_scan;
mod headers;
mod http_date;
mod inbuf;
pub mod keeper;
mod listen;
mod paths;
mod pool;
mod prefixed;
mod raw_upstream;
mod request_head;
mod response_head;
mod routes;
mod secret;
mod server;
pub mod standalone;
mod supervisor;
mod upgrade;
mod upstream;

pub use access_log::{RequestEvent, RequestObserver};
pub use auth::generate_token;
pub use config::{FacadeConfig, TcpConfig};
pub use denied::DeniedChecker;
pub use error::Error;
pub use routes::{
    valid_mount, RouteConfig, RouteState, RouteTable, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
};
pub use secret::Secret;
pub use server::{bind, start, Bound, FacadeHandle};
pub use supervisor::{
    HealthSpec, RestartPolicy, SidecarEvent, SidecarSpec, SidecarStatus, Supervisor,
    SupervisorConfig, DEFAULT_BASE_ENV_PASSTHROUGH,
};
