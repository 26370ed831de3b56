//! Test-only hooks a session reads from its environment, so that an end-to-end test can
//! start a real `omac start`/`omac run` whose proxy reaches a test listener on loopback:
//!
//! - `OMAC_TEST_EGRESS_RESOLVE=name=ADDR[,name=ADDR...]`: those names resolve to those
//!   addresses (others through the system resolver);
//! - `OMAC_TEST_EGRESS_EXEMPT=IP:PORT[,IP:PORT...]`: those exact listeners are exempt from
//!   the hard deny (see [`Builder::exempt_for_tests`](crate::Builder)).
//!
//! They take effect only in a build with the `test-support` feature, which the omac
//! package enables for its own tests alone (a dev-dependency); a release build ignores the
//! variables (and says so), and no profile field can reach them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::resolve::{ResolveFuture, Resolver, StaticResolver, SystemResolver};
use crate::Builder;

/// The variable naming test resolutions.
pub const RESOLVE_VAR: &str = "OMAC_TEST_EGRESS_RESOLVE";
/// The variable naming exempt test listeners.
pub const EXEMPT_VAR: &str = "OMAC_TEST_EGRESS_EXEMPT";

/// Whether this build honours the test hooks.
pub const ENABLED: bool = cfg!(feature = "test-support");

/// Static answers first, then the system resolver.
struct Layered {
    table: StaticResolver,
    names: Vec<String>,
}

impl Resolver for Layered {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        let key = omac_bundle::domain::normalize_host(host);
        if self.names.contains(&key) {
            self.table.resolve(host)
        } else {
            SystemResolver.resolve(host)
        }
    }
}

/// Parses `name=ADDR,...`.
fn parse_names(v: &str) -> Result<Vec<(String, IpAddr)>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (n, a) = pair
                .split_once('=')
                .ok_or_else(|| format!("{RESOLVE_VAR}: {pair:?} is not name=ADDR"))?;
            let a: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| format!("{RESOLVE_VAR}: {a:?} is not an IP address"))?;
            Ok((omac_bundle::domain::normalize_host(n.trim()), a))
        })
        .collect()
}

/// Parses `IP:PORT,...`.
fn parse_exempt(v: &str) -> Result<Vec<SocketAddr>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("{EXEMPT_VAR}: {a:?} is not IP:PORT"))
        })
        .collect()
}

impl Builder {
    /// Applies the test hooks named in `env` (see the module). Without the `test-support`
    /// feature the variables are ignored with a warning. Errors name the bad variable.
    pub fn test_hooks_from_env(self, env: &HashMap<String, String>) -> Result<Builder, String> {
        let resolve = env.get(RESOLVE_VAR).filter(|v| !v.is_empty());
        let exempt = env.get(EXEMPT_VAR).filter(|v| !v.is_empty());
        if resolve.is_none() && exempt.is_none() {
            return Ok(self);
        }
        if !ENABLED {
            tracing::warn!(
                "{RESOLVE_VAR} and {EXEMPT_VAR} are ignored: this omac was built without test support"
            );
            return Ok(self);
        }
        let mut b = self;
        if let Some(v) = resolve {
            let pairs = parse_names(v)?;
            let table = StaticResolver::new();
            for (n, a) in &pairs {
                table.answer(n, &[*a]);
            }
            b = b.resolver(Arc::new(Layered {
                table,
                names: pairs.into_iter().map(|(n, _)| n).collect(),
            }));
        }
        if let Some(v) = exempt {
            let addrs = parse_exempt(v)?;
            tracing::warn!("test hook: the egress proxy may reach {addrs:?} on loopback");
            b = exempt_all(b, addrs);
        }
        Ok(b)
    }
}

#[cfg(feature = "test-support")]
fn exempt_all(mut b: Builder, addrs: Vec<SocketAddr>) -> Builder {
    for a in addrs {
        b = b.exempt_for_tests(a);
    }
    b
}

#[cfg(not(feature = "test-support"))]
fn exempt_all(b: Builder, _addrs: Vec<SocketAddr>) -> Builder {
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_by_name() {
        assert_eq!(
            parse_names("A.test=127.0.0.1, b.test=::1").unwrap(),
            vec![
                ("a.test".to_string(), "127.0.0.1".parse().unwrap()),
                ("b.test".to_string(), "::1".parse().unwrap())
            ]
        );
        assert!(parse_names("x").unwrap_err().contains(RESOLVE_VAR));
        assert!(parse_exempt("127.0.0.1").unwrap_err().contains(EXEMPT_VAR));
        assert_eq!(parse_exempt("127.0.0.1:80").unwrap().len(), 1);
    }
}
