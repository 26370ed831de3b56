//! Chaining through a corporate proxy: `network.upstream_proxy`, else the host's
//! `HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY`, `http_proxy` (a value without a scheme gets
//! `http://`; basic-auth credentials may sit in the URL). `network.no_proxy`, else the
//! host's `NO_PROXY`/`no_proxy`, lists destinations dialled directly.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::resolve::Resolver;

/// Largest response head accepted from an upstream proxy.
const MAX_HEAD: usize = 64 * 1024;

/// A parent proxy and the destinations that bypass it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address of the proxy.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `Basic ...` for `Proxy-Authorization`, from the URL's credentials.
    pub authorization: Option<String>,
    /// `no_proxy` entries, lower case.
    pub no_proxy: Vec<String>,
    /// Where the URL came from (`network.upstream_proxy`, `HTTPS_PROXY`, ...), for messages.
    pub origin: String,
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a proxy URL: `[http://][user:pass@]host[:port][/]`.
pub fn parse_url(text: &str, origin: &str) -> Result<Upstream, Error> {
    let bad = |message: String| Error::Config {
        field: origin.to_string(),
        message,
        fix: "write http://HOST:PORT (credentials as http://USER:PASS@HOST:PORT)".into(),
    };
    let t = text.trim();
    let rest = match t.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(bad(format!(
                "{scheme}:// proxies are not supported, only http://"
            )))
        }
        None => t,
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return Err(bad(format!("{t:?} is not a proxy address")));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in an IPv6 address".into()))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("port {p:?} is not between 1 and 65535")))?,
    };
    let host = omac_bundle::domain::normalize_host(&host);
    if !(omac_bundle::domain::is_ip_literal(&host) || omac_bundle::domain::valid_dns_name(&host)) {
        return Err(bad(format!("{host:?} is not a host name")));
    }
    let authorization = userinfo.map(|u| {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        let creds = format!("{}:{}", percent_decode(user), percent_decode(pass));
        format!("Basic {}", base64(creds.as_bytes()))
    });
    Ok(Upstream {
        host,
        port,
        authorization,
        no_proxy: Vec::new(),
        origin: origin.to_string(),
    })
}

/// The upstream proxy for a policy and the host's environment; `None` to dial directly.
/// A bad profile value is an error; a bad environment value is reported and ignored.
pub fn select(
    upstream_proxy: Option<&str>,
    no_proxy: &[String],
    env: &HashMap<String, String>,
) -> Result<Option<Upstream>, Error> {
    let mut up = match upstream_proxy.filter(|u| !u.trim().is_empty()) {
        Some(u) => parse_url(u, "network.upstream_proxy")?,
        None => {
            let found = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
                .iter()
                .find_map(|k| {
                    env.get(*k)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (*k, v))
                });
            match found {
                None => return Ok(None),
                Some((k, v)) => match parse_url(v, k) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!("ignoring the host's {k}: {e}");
                        return Ok(None);
                    }
                },
            }
        }
    };
    up.no_proxy = if !no_proxy.is_empty() {
        no_proxy
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    } else {
        env.get("NO_PROXY")
            .or_else(|| env.get("no_proxy"))
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Some(up))
}

impl Upstream {
    /// Whether `host:port` goes through this proxy (false when `no_proxy` lists it).
    pub fn applies(&self, host: &str, port: u16) -> bool {
        let h = omac_bundle::domain::normalize_host(host);
        let ip: Option<IpAddr> = h.parse().ok();
        !self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            if entry.contains('/') {
                return match (omac_bundle::cidr::Cidr::parse(entry), ip) {
                    (Ok(c), Some(ip)) => c.contains(ip),
                    _ => false,
                };
            }
            let (e, eport) = match entry.rsplit_once(':') {
                Some((e, p)) if !e.contains(':') => (e, p.parse::<u16>().ok()),
                _ => (entry.as_str(), None),
            };
            if eport.is_some_and(|p| p != port) {
                return false;
            }
            let e = e.trim_start_matches("*.").trim_start_matches('.');
            let e = e.trim_start_matches('[').trim_end_matches(']');
            h == e || (ip.is_none() && h.ends_with(e) && h[..h.len() - e.len()].ends_with('.'))
        })
    }

    /// `host:port` as an authority (IPv6 in brackets).
    pub fn authority(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Connects to the proxy itself (its address is configuration, not a destination, so
    /// the hard deny does not apply to it).
    pub async fn connect(&self, resolver: &dyn Resolver) -> io::Result<TcpStream> {
        let ips: Vec<IpAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => resolver.resolve(&self.host).await?,
        };
        let addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        crate::dial::connect_any(&addrs).await
    }

    /// Opens a tunnel to `host:port` through the proxy; returns the stream and any bytes
    /// that arrived after the proxy's answer (a server that speaks first, as sshd does).
    pub async fn tunnel(
        &self,
        resolver: &dyn Resolver,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, Vec<u8>), UpstreamError> {
        let mut s = self
            .connect(resolver)
            .await
            .map_err(UpstreamError::Connect)?;
        let auth = Upstream::authority(host, port);
        let mut req = format!("CONNECT {auth} HTTP/1.1\r\nHost: {auth}\r\n");
        if let Some(a) = &self.authorization {
            req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(UpstreamError::Connect)?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let end = loop {
            let n = s.read(&mut chunk).await.map_err(UpstreamError::Connect)?;
            if n == 0 {
                return Err(UpstreamError::Protocol(
                    "closed the connection before answering CONNECT".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(UpstreamError::Protocol("sent an oversized answer".into()));
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status_line = head.lines().next().unwrap_or("").to_string();
        let code = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| UpstreamError::Protocol(format!("answered {status_line:?}")))?;
        if !(200..300).contains(&code) {
            return Err(UpstreamError::Status(code, status_line));
        }
        Ok((s, buf[end..].to_vec()))
    }
}

/// How a tunnel through the upstream proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The proxy could not be reached or the connection broke.
    #[error("cannot reach it: {0}")]
    Connect(io::Error),
    /// The proxy answered something that is not HTTP.
    #[error("it {0}")]
    Protocol(String),
    /// The proxy refused (its status code and status line).
    #[error("it answered {1:?}")]
    Status(u16, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn urls() {
        let u = parse_url("http://user:p%40ss@Proxy.Corp:3128/", "x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("proxy.corp", 3128));
        assert_eq!(u.authorization.as_deref(), Some("Basic dXNlcjpwQHNz"));
        let u = parse_url("proxy.corp:8080", "x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authorization),
            ("proxy.corp", 8080, None)
        );
        let u = parse_url("[::1]:3128", "x").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(parse_url("http://p", "x").unwrap().port, 80);
        for bad in [
            "https://p:1",
            "socks5://p:1",
            "http://p:0",
            "http://p:1/path",
            "http://",
        ] {
            assert!(parse_url(bad, "x").is_err(), "{bad}");
        }
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn selection_order_and_no_proxy() {
        assert_eq!(select(None, &[], &env(&[])).unwrap(), None);
        let e = env(&[
            ("http_proxy", "http://low:1"),
            ("HTTPS_PROXY", "corp:3128"),
            (
                "no_proxy",
                "internal.corp, .example.org,10.0.0.0/8,host.x:22",
            ),
        ]);
        let u = select(None, &[], &e).unwrap().unwrap();
        assert_eq!(
            (u.host.as_str(), u.origin.as_str()),
            ("corp", "HTTPS_PROXY")
        );
        assert!(!u.applies("internal.corp", 443));
        assert!(!u.applies("git.internal.corp", 443));
        assert!(u.applies("notinternal.corp", 443));
        assert!(!u.applies("a.example.org", 443));
        assert!(!u.applies("10.1.2.3", 443));
        assert!(u.applies("11.1.2.3", 443));
        assert!(!u.applies("host.x", 22));
        assert!(u.applies("host.x", 443));
        let u = select(Some("http://profile:9"), &["only.this".into()], &e)
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.host.as_str(), u.origin.as_str()),
            ("profile", "network.upstream_proxy")
        );
        assert!(!u.applies("only.this", 1) && u.applies("internal.corp", 1));
        assert!(select(Some("https://x:1"), &[], &e).is_err());
        // A bad environment value is ignored, not fatal.
        assert_eq!(
            select(None, &[], &env(&[("HTTPS_PROXY", "socks5://x:1")])).unwrap(),
            None
        );
        let star = select(None, &[], &env(&[("HTTP_PROXY", "p:1"), ("NO_PROXY", "*")]))
            .unwrap()
            .unwrap();
        assert!(!star.applies("anything.com", 443));
    }
}
