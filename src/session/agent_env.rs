//! The variables omac gives the agent (reference §1.4): where the facade is
//! (`OMAC_SOCKET`, `OMAC_BASE`, `OMAC_<MOUNT>_BASE`), which skills are active, the harness,
//! omac's version, the tool-cache redirects and the briefing.
//!
//! With a network namespace (blocked and filtered modes) everything is fixed: init bridges
//! `127.0.0.1:29170` to the facade socket, so the values go into `config.json`. Without one
//! (open mode, env-only enforcement, `--no-sandbox`) the agent reaches the facade's TCP
//! listener on the host's loopback, whose port and token change per run: `OMAC_BASE` then
//! carries the token as its first path segment (the facade removes it), so that plain
//! `curl "$OMAC_BASE"echo/status` works while other local users get 401. Those values are
//! supplied at run time (the bundle passes `OMAC_*` through).

use std::net::SocketAddr;
use std::path::Path;

use omac_bundle::generate::{FACADE_PORT, FACADE_SOCKET};

/// `OMAC_<MOUNT>_BASE` for a mount: letters upper-cased, anything else `_`.
pub fn mount_var(mount: &str) -> String {
    let m: String = mount
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("OMAC_{m}_BASE")
}

/// `OMAC_<MOUNT>_SOCKET_BASE` for a mount (`http+unix://` URL of the socket).
pub fn mount_socket_var(mount: &str) -> String {
    let base = mount_var(mount);
    format!("{}_SOCKET_BASE", base.trim_end_matches("_BASE"))
}

/// What the fixed variables depend on.
pub struct Fixed<'a> {
    /// Whether init bridges the facade to loopback inside (own network namespace).
    pub bridged: bool,
    /// The active mounts, sorted.
    pub mounts: &'a [String],
    /// The harness's canonical name.
    pub harness: Option<&'a omac_bundle::harness::Harness>,
    /// Tool-cache variables.
    pub cache: &'a [(String, String)],
    /// The briefing, for harnesses that read it from the environment.
    pub briefing: Option<&'a str>,
}

/// The variables that go into `config.json`.
pub fn fixed(f: &Fixed) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, val: String| v.push((k.to_string(), val));
    set("OMAC_SOCKET", FACADE_SOCKET.to_string());
    let escaped = FACADE_SOCKET.replace('/', "%2F");
    if f.bridged {
        let base = format!("http://127.0.0.1:{FACADE_PORT}/");
        set("OMAC_HOST", "127.0.0.1".into());
        set("OMAC_PORT", FACADE_PORT.to_string());
        for m in f.mounts {
            set(&mount_var(m), format!("{base}{m}"));
        }
        set("OMAC_BASE", base);
    }
    for m in f.mounts {
        set(&mount_socket_var(m), format!("http+unix://{escaped}/{m}"));
    }
    set("OMAC_SKILLS", f.mounts.join(","));
    set("OMAC_VERSION", env!("CARGO_PKG_VERSION").to_string());
    if let Some(h) = f.harness {
        set("OMAC_HARNESS", h.name.to_string());
        set(
            "OMAC_HARNESS_SKILLS_DIR",
            format!(".{}/skills", h.skills_base),
        );
    }
    for (k, val) in f.cache {
        set(k, val.clone());
    }
    if let Some(b) = f.briefing {
        set(crate::session::briefing::ENV_VAR, b.to_string());
    }
    v.sort();
    v
}

/// The host environment handed to the runtime (its passthrough rules decide what reaches
/// the agent): this process's variables without `OMAC_*` (omac's own settings, among them
/// `OMAC_SECRET_*`) and without `withheld` (variables a sidecar's secret came from), plus,
/// without a bridge, the facade's loopback address with the session token, and with
/// `--no-sandbox`, the host path of the facade socket.
pub fn host_env(
    withheld: &[String],
    tcp: Option<&(SocketAddr, String)>,
    routes: &omac_facade::RouteTable,
    host_socket: Option<&Path>,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("OMAC_") && !withheld.contains(k))
        .collect();
    if let Some((addr, token)) = tcp {
        let base = format!("http://{addr}/{token}/");
        v.push(("OMAC_HOST".into(), addr.ip().to_string()));
        v.push(("OMAC_PORT".into(), addr.port().to_string()));
        for (m, _) in routes.snapshot() {
            v.push((mount_var(&m), format!("{base}{m}")));
        }
        v.push(("OMAC_BASE".into(), base));
    }
    if let Some(s) = host_socket {
        v.push(("OMAC_SOCKET".into(), s.display().to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_names_follow_the_go_rule() {
        assert_eq!(mount_var("himalaya-email"), "OMAC_HIMALAYA_EMAIL_BASE");
        assert_eq!(mount_var("a-b_c"), "OMAC_A_B_C_BASE");
        assert_eq!(mount_socket_var("echo"), "OMAC_ECHO_SOCKET_BASE");
    }

    #[test]
    fn bridged_sessions_have_fixed_urls() {
        let mounts = vec!["echo".to_string()];
        let v = fixed(&Fixed {
            bridged: true,
            mounts: &mounts,
            harness: omac_bundle::harness::find("claude"),
            cache: &[],
            briefing: None,
        });
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        assert_eq!(get("OMAC_BASE"), Some("http://127.0.0.1:29170/"));
        assert_eq!(get("OMAC_ECHO_BASE"), Some("http://127.0.0.1:29170/echo"));
        assert_eq!(get("OMAC_SOCKET"), Some("/run/omac/facade.sock"));
        assert_eq!(get("OMAC_SKILLS"), Some("echo"));
        assert_eq!(get("OMAC_HARNESS"), Some("claude-code"));
        let open = fixed(&Fixed {
            bridged: false,
            mounts: &mounts,
            harness: None,
            cache: &[],
            briefing: None,
        });
        assert!(
            !open.iter().any(|(k, _)| k == "OMAC_BASE"),
            "run-time values"
        );
    }
}
