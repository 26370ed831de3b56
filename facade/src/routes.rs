//! The route table: mount -> sidecar state, shared by the facade (reads it per request) and
//! the supervisor (updates states as sidecars start, die and come back).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::Error;

/// Default request-body limit of a route (the Go omac's `facade.max_body_bytes`): 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default idle timeout of a route (the Go omac's `facade.idle_timeout_secs`): 300 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a route stands; the facade answers according to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    /// The sidecar is being started for the first time (503 `starting`).
    Starting,
    /// The sidecar is healthy and listens on `127.0.0.1:port`.
    Ready {
        /// The sidecar's loopback port.
        port: u16,
    },
    /// The sidecar died and is being restarted (503 `restarting`).
    Restarting {
        /// How many restarts this is (1 for the first).
        attempt: u32,
    },
    /// The sidecar is not running and will not come back by itself (503 `sidecar-down`).
    Down {
        /// Why (shown in the answer's body).
        detail: String,
    },
    /// The skill may not run (not approved, invalid): 502 `skill-broken`, as the Go omac.
    Broken {
        /// Why (shown in the answer's body).
        detail: String,
    },
    /// The skill waits for secrets or fields: 409 `pending-credentials`, as the Go omac.
    PendingCredentials {
        /// What is missing (shown in the answer's body).
        detail: String,
    },
}

impl RouteState {
    /// The state's name as shown in the status document (`ready`, `restarting`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            RouteState::Starting => "starting",
            RouteState::Ready { .. } => "ready",
            RouteState::Restarting { .. } => "restarting",
            RouteState::Down { .. } => "down",
            RouteState::Broken { .. } => "broken",
            RouteState::PendingCredentials { .. } => "pending-credentials",
        }
    }
}

/// One route of the facade: `/<mount>/...` goes to the skill's sidecar.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The first path segment (`^[a-z0-9][a-z0-9-]*$`).
    pub mount: String,
    /// The skill's name (for logs and answers).
    pub skill: String,
    /// The skill's directory: its `SKILL.md` is served at the mount root when present.
    pub skill_dir: Option<PathBuf>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: u64,
    /// Longest silence allowed on a forwarded exchange: waiting for the answer's head (504),
    /// between body frames either way (stream cut), on an upgraded connection (closed).
    pub idle_timeout: Duration,
    /// The state the route starts in.
    pub state: RouteState,
}

impl RouteConfig {
    /// A route for `mount` with the default limits, in state `Starting`.
    pub fn new(mount: impl Into<String>, skill: impl Into<String>) -> RouteConfig {
        RouteConfig {
            mount: mount.into(),
            skill: skill.into(),
            skill_dir: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            state: RouteState::Starting,
        }
    }
}

/// A route as the facade holds it.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) mount: Arc<str>,
    pub(crate) skill: String,
    /// `<skill_dir>/SKILL.md`, precomputed.
    pub(crate) skill_md: Option<PathBuf>,
    /// `/<mount>`, the value of `X-Forwarded-Prefix`, precomputed.
    pub(crate) prefix: hyper::header::HeaderValue,
    pub(crate) max_body_bytes: u64,
    pub(crate) idle_timeout: Duration,
    state: RwLock<(RouteState, Option<Target>)>,
}

/// Where a ready route forwards to, with the values every request needs precomputed.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The sidecar's port.
    pub(crate) port: u16,
    /// `127.0.0.1:PORT` for the `Host` header.
    pub(crate) host: hyper::header::HeaderValue,
}

fn target_of(state: &RouteState) -> Option<Target> {
    let RouteState::Ready { port } = state else {
        return None;
    };
    let s = format!("127.0.0.1:{port}");
    Some(Target {
        port: *port,
        host: hyper::header::HeaderValue::try_from(s).ok()?,
    })
}

impl Route {
    /// The current state (a copy).
    pub(crate) fn state(&self) -> RouteState {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The sidecar's port when ready (the fast path's per-request check).
    pub(crate) fn ready_port(&self) -> Option<u16> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .as_ref()
            .map(|t| t.port)
    }

    /// Where to forward when ready.
    pub(crate) fn target(&self) -> Option<Target> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}

/// Checks a mount name: `^[a-z0-9][a-z0-9-]*$`.
pub fn valid_mount(mount: &str) -> bool {
    let b = mount.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// FNV-1a: the route map is looked up once per request with a short mount name, and only
/// omac inserts into it, so a cheap hash is enough.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type RouteMap = HashMap<String, Arc<Route>, std::hash::BuildHasherDefault<Fnv>>;

/// The shared, cheaply cloneable route table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Arc<RwLock<RouteMap>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            routes: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
        }
    }
}

impl RouteTable {
    /// A table holding `routes` (mounts checked, duplicates refused).
    pub fn new(routes: Vec<RouteConfig>) -> Result<RouteTable, Error> {
        let table = RouteTable::default();
        for r in routes {
            table.insert(r)?;
        }
        Ok(table)
    }

    /// Adds a route (a skill registered while the session runs); refuses a taken mount.
    pub fn insert(&self, cfg: RouteConfig) -> Result<(), Error> {
        if !valid_mount(&cfg.mount) {
            return Err(Error::config(
                format!("route {}: mount", cfg.skill),
                format!("{:?} is not a valid mount", cfg.mount),
                "use lowercase letters, digits and '-', starting with a letter or digit",
            ));
        }
        if cfg.max_body_bytes == 0 {
            return Err(Error::config(
                format!("route {}: max_body_bytes", cfg.mount),
                "must be greater than 0",
                "leave it unset for the 10 MiB default",
            ));
        }
        if cfg.idle_timeout.is_zero() {
            return Err(Error::config(
                format!("route {}: idle_timeout", cfg.mount),
                "must be greater than 0",
                "leave it unset for the 300 s default",
            ));
        }
        let prefix = hyper::header::HeaderValue::from_str(&format!("/{}", cfg.mount))
            .map_err(|_| Error::config("mount", "not a header value", "use a valid mount"))?;
        let route = Arc::new(Route {
            skill_md: cfg.skill_dir.as_ref().map(|d| d.join("SKILL.md")),
            mount: Arc::from(cfg.mount.as_str()),
            skill: cfg.skill,
            prefix,
            max_body_bytes: cfg.max_body_bytes,
            idle_timeout: cfg.idle_timeout,
            state: RwLock::new((cfg.state.clone(), target_of(&cfg.state))),
        });
        {
            let mut map = self.routes.write().unwrap_or_else(|p| p.into_inner());
            if map.contains_key(&cfg.mount) {
                return Err(Error::config(
                    format!("route {}: mount", cfg.mount),
                    "two skills use this mount",
                    "give one of them another `sidecar.mount` in its omac.yaml",
                ));
            }
            map.insert(cfg.mount, route);
        }
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Removes a route; true when it existed.
    pub fn remove(&self, mount: &str) -> bool {
        let removed = self
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(mount)
            .is_some();
        if removed {
            self.changes.send_modify(|v| *v += 1);
        }
        removed
    }

    /// Sets a route's state; false when there is no such mount.
    pub fn set_state(&self, mount: &str, state: RouteState) -> bool {
        let Some(route) = self.get(mount) else {
            return false;
        };
        let target = target_of(&state);
        *route.state.write().unwrap_or_else(|p| p.into_inner()) = (state, target);
        self.changes.send_modify(|v| *v += 1);
        true
    }

    /// A route's current state.
    pub fn state(&self, mount: &str) -> Option<RouteState> {
        self.get(mount).map(|r| r.state())
    }

    /// Every mount with its state, sorted by mount.
    pub fn snapshot(&self) -> Vec<(String, RouteState)> {
        let map = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .values()
            .map(|r| (r.mount.to_string(), r.state()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Waits until `mount`'s state satisfies `pred` or `timeout` passes; returns the last state.
    pub async fn wait_for(
        &self,
        mount: &str,
        timeout: Duration,
        pred: impl Fn(&RouteState) -> bool,
    ) -> Option<RouteState> {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.state(mount);
            if state.as_ref().is_some_and(&pred) {
                return state;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.state(mount);
            }
        }
    }

    /// The route for a mount (per request).
    pub(crate) fn get(&self, mount: &str) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(mount)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_checked() {
        assert!(valid_mount("echo"));
        assert!(valid_mount("a-b9"));
        assert!(valid_mount("9a"));
        for bad in ["", "-a", "Echo", "a_b", "a/b", "a.b", ".."] {
            assert!(!valid_mount(bad), "{bad}");
        }
        assert!(RouteTable::new(vec![RouteConfig::new("Bad", "s")]).is_err());
    }

    #[test]
    fn duplicates_refused_and_states_update() {
        let t = RouteTable::new(vec![RouteConfig::new("echo", "echo-rest")]).unwrap();
        assert!(t.insert(RouteConfig::new("echo", "other")).is_err());
        assert_eq!(t.state("echo"), Some(RouteState::Starting));
        assert!(t.set_state("echo", RouteState::Ready { port: 9 }));
        assert_eq!(t.get("echo").unwrap().target().unwrap().host, "127.0.0.1:9");
        assert!(!t.set_state("nope", RouteState::Starting));
        assert!(t.remove("echo"));
        assert!(t.snapshot().is_empty());
    }

    #[tokio::test]
    async fn wait_for_sees_a_later_change() {
        let t = RouteTable::new(vec![RouteConfig::new("echo", "e")]).unwrap();
        let t2 = t.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t2.set_state("echo", RouteState::Ready { port: 1 });
        });
        let s = t
            .wait_for("echo", Duration::from_secs(10), |s| {
                matches!(s, RouteState::Ready { .. })
            })
            .await;
        assert_eq!(s, Some(RouteState::Ready { port: 1 }));
    }
}
