//! The domain-rule grammar of `allow_domain`/`deny_domain`: an exact host or `*.suffix`,
//! optionally followed by `:PORT`. Matching is case-insensitive and ignores a trailing dot.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One parsed domain rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// `*.suffix`: the suffix itself and every subdomain.
    pub wildcard: bool,
    /// Lower-case host (for IPv6, without brackets).
    pub host: String,
    /// Only this port, when given.
    pub port: Option<u16>,
}

/// Lower-cases a host and drops a trailing dot.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is a syntactically valid DNS name (letters, digits, `-`, `_`; 63-byte labels).
pub fn valid_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Parses a rule, or says what is wrong with it.
pub fn parse_rule(text: &str) -> Result<DomainRule, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty rule".into());
    }
    let (wildcard, rest) = match t.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or("unclosed [ in an IPv6 address")?;
        h.parse::<Ipv6Addr>().map_err(|_| "not an IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ]")?),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            Some(_) => return Err("IPv6 addresses must be written in brackets".into()),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or("port must be between 1 and 65535")?,
        ),
    };
    let host = normalize_host(&host);
    let is_ip = host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok();
    if wildcard && is_ip {
        return Err("a wildcard needs a domain, not an address".into());
    }
    if !is_ip && !valid_dns_name(&host) {
        return Err("not a valid host name".into());
    }
    if host.contains('*') {
        return Err("only a leading \"*.\" wildcard is allowed".into());
    }
    Ok(DomainRule {
        wildcard,
        host,
        port,
    })
}

impl DomainRule {
    /// Whether a connection to `host:port` falls under this rule.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let h = normalize_host(host);
        if self.wildcard {
            h == self.host || h.ends_with(&format!(".{}", self.host))
        } else {
            h == self.host
        }
    }
}

/// Whether `host` is an IPv4 or IPv6 literal (IPv6 with or without brackets).
pub fn is_ip_literal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<Ipv4Addr>().is_ok() || h.parse::<Ipv6Addr>().is_ok()
}

/// The suffix a "this domain and its subdomains" choice covers: the host without its
/// leftmost label when it has three labels or more (`api.github.com` → `github.com`),
/// otherwise the host itself; IP literals are returned unchanged.
pub fn suffix_of(host: &str) -> String {
    let h = normalize_host(host);
    if is_ip_literal(&h) {
        return h;
    }
    match h.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest.to_string(),
        _ => h,
    }
}

/// Checks an upstream proxy URL: `http://[user:pass@]host[:port][/]`.
pub fn parse_proxy_url(text: &str) -> Result<(String, u16), String> {
    let rest = text
        .strip_prefix("http://")
        .ok_or("only http:// proxies are supported")?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err("a proxy URL has no path".into());
    }
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let rule = parse_rule(hostport)?;
    if rule.wildcard {
        return Err("a proxy is one host, not a wildcard".into());
    }
    Ok((rule.host, rule.port.unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let r = parse_rule("*.GitHub.com.").unwrap();
        assert!(r.wildcard && r.host == "github.com" && r.port.is_none());
        assert!(r.matches("github.com", 443));
        assert!(r.matches("api.github.com", 22));
        assert!(!r.matches("evilgithub.com", 443));
        let r = parse_rule("registry.npmjs.org:443").unwrap();
        assert!(r.matches("REGISTRY.npmjs.org", 443));
        assert!(!r.matches("registry.npmjs.org", 80));
        assert_eq!(parse_rule("[::1]:8080").unwrap().host, "::1");
        for bad in [
            "",
            "*.",
            "a..b",
            "host:0",
            "host:70000",
            "*.10.0.0.1",
            "a*.b.com",
            "::1",
            "-a.com",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn suffixes() {
        assert_eq!(suffix_of("API.GitHub.com."), "github.com");
        assert_eq!(suffix_of("github.com"), "github.com");
        assert_eq!(suffix_of("localhost"), "localhost");
        assert_eq!(suffix_of("10.1.2.3"), "10.1.2.3");
        assert_eq!(suffix_of("::1"), "::1");
        assert!(is_ip_literal("[::1]") && is_ip_literal("10.0.0.1") && !is_ip_literal("a.b"));
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(
            parse_proxy_url("http://proxy.corp:3128").unwrap(),
            ("proxy.corp".into(), 3128)
        );
        assert_eq!(
            parse_proxy_url("http://u:p@proxy/").unwrap(),
            ("proxy".into(), 80)
        );
        assert!(parse_proxy_url("socks5://x:1").is_err());
        assert!(parse_proxy_url("http://x:1/path").is_err());
    }
}
