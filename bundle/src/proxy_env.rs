//! The proxy environment of a filtered session: the variables that send HTTP(S), SOCKS,
//! package managers, Node, the JVM and `git` over SSH to omac's egress proxy, which init
//! bridges to `127.0.0.1:EGRESS_PORT` inside the sandbox. Everything here is fixed (the port
//! never changes), so it belongs in `config.json`.
//!
//! `GIT_PROXY_COMMAND` (the `git://` protocol) is deliberately not set: git runs it as
//! `CMD HOST PORT`, one executable without arguments, and `git://` is unauthenticated and
//! rare; use `https://` or `ssh://`.

use crate::ext::NetworkPolicy;
use crate::generate::EGRESS_PORT;

/// Where the omac binary is visible inside the sandbox (ssh's `ProxyCommand` runs it).
pub const OMAC_BIN: &str = "/run/omac/bin/omac";

/// Destinations never sent to the proxy: the sandbox's own loopback.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The variables for `network`, sorted by name; empty unless the mode is `filtered` with
/// kernel enforcement (the only case where the loopback bridge exists).
pub fn vars(network: &NetworkPolicy) -> Vec<(String, String)> {
    if network.mode != "filtered" || network.enforcement != "kernel" {
        return Vec::new();
    }
    let http = format!("http://127.0.0.1:{EGRESS_PORT}");
    let socks = format!("socks5h://127.0.0.1:{EGRESS_PORT}");
    let mut v: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, val: &str| v.push((k.to_string(), val.to_string()));
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        set(k, &http);
    }
    for k in ["ALL_PROXY", "all_proxy"] {
        set(k, &socks);
    }
    for k in ["NO_PROXY", "no_proxy", "npm_config_noproxy"] {
        set(k, NO_PROXY);
    }
    for k in [
        "npm_config_proxy",
        "npm_config_https_proxy",
        "YARN_HTTP_PROXY",
        "YARN_HTTPS_PROXY",
        "PIP_PROXY",
    ] {
        set(k, &http);
    }
    set("NODE_USE_ENV_PROXY", "1");
    set(
        "GIT_SSH_COMMAND",
        &format!("ssh -o ProxyCommand=\"{OMAC_BIN} connect %h %p\""),
    );
    if network.proxy_injection.iter().any(|i| i == "jvm") {
        set(
            "JAVA_TOOL_OPTIONS",
            &format!(
                "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={EGRESS_PORT} \
                 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={EGRESS_PORT} \
                 -Dhttp.nonProxyHosts=localhost|127.*|[::1]"
            ),
        );
    }
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext::Prompt;

    fn policy(mode: &str, enforcement: &str, injection: &[&str]) -> NetworkPolicy {
        NetworkPolicy {
            mode: mode.into(),
            enforcement: enforcement.into(),
            allow_domains: vec![],
            deny_domains: vec![],
            listen_ports: vec![],
            allow_tcp_connect: vec![],
            open_ports: vec![],
            publish_ports: vec![],
            prompt: Prompt {
                enabled: false,
                timeout_secs: 60,
                on_unavailable: "deny".into(),
            },
            upstream_proxy: None,
            no_proxy: vec![],
            proxy_injection: injection.iter().map(|s| s.to_string()).collect(),
            allow_private: vec![],
        }
    }

    fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str())
    }

    #[test]
    fn filtered_kernel_gets_every_variable() {
        let v = vars(&policy("filtered", "kernel", &[]));
        assert_eq!(get(&v, "HTTPS_PROXY"), Some("http://127.0.0.1:29171"));
        assert_eq!(get(&v, "http_proxy"), Some("http://127.0.0.1:29171"));
        assert_eq!(get(&v, "all_proxy"), Some("socks5h://127.0.0.1:29171"));
        assert_eq!(get(&v, "NO_PROXY"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get(&v, "PIP_PROXY"), Some("http://127.0.0.1:29171"));
        assert_eq!(get(&v, "NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(
            get(&v, "GIT_SSH_COMMAND"),
            Some("ssh -o ProxyCommand=\"/run/omac/bin/omac connect %h %p\"")
        );
        assert_eq!(get(&v, "JAVA_TOOL_OPTIONS"), None);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(v, sorted, "deterministic order");
    }

    #[test]
    fn jvm_only_when_asked() {
        let v = vars(&policy("filtered", "kernel", &["jvm"]));
        let j = get(&v, "JAVA_TOOL_OPTIONS").unwrap();
        assert!(j.contains("-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=29171"));
        assert!(j.contains("-Dhttp.nonProxyHosts=localhost|127.*|[::1]"));
    }

    #[test]
    fn other_modes_get_nothing() {
        assert!(vars(&policy("open", "kernel", &["jvm"])).is_empty());
        assert!(vars(&policy("blocked", "kernel", &[])).is_empty());
        assert!(vars(&policy("filtered", "env-only", &[])).is_empty());
    }
}
