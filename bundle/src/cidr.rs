//! Address ranges (`10.0.0.0/8`, `fd12:3456::/48`) and the private ranges the egress proxy
//! refuses unless `network.allow_private` lists them.

use std::fmt;
use std::net::IpAddr;

/// An address range: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The first address of the range (host bits zero).
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

/// The private ranges: RFC 1918, carrier-grade NAT (RFC 6598), unique local IPv6 (RFC 4193)
/// and the deprecated IPv6 site-local range.
pub const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fec0::/10",
];

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl Cidr {
    /// Parses `ADDR/PREFIX`, or a single address (a /32 or /128); host bits must be zero.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let t = text.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let a = a.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let (value, width) = bits(addr);
        let prefix = match p {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|v| *v <= width)
                .ok_or_else(|| format!("prefix {p:?} is not a number between 0 and {width}"))?,
        };
        if value & !mask(prefix) != 0 {
            return Err(format!(
                "{t} has bits set after the /{prefix} prefix; write the network address"
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the range (an IPv4 range never contains an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        // IPv4 values sit in the top 32 bits, so one mask serves both families.
        let m = mask(self.prefix);
        (bits(ip).0 & m) == (bits(self.addr).0 & m)
    }

    /// Whether every address of `other` lies in this range.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The parsed [`PRIVATE_RANGES`].
pub fn private_ranges() -> Vec<Cidr> {
    PRIVATE_RANGES
        .iter()
        .filter_map(|r| Cidr::parse(r).ok())
        .collect()
}

/// Parses an `allow_private` entry: a range inside one of the private ranges.
pub fn parse_private(text: &str) -> Result<Cidr, String> {
    let c = Cidr::parse(text)?;
    if private_ranges().iter().any(|p| p.covers(&c)) {
        Ok(c)
    } else {
        Err(format!(
            "{c} is not inside a private range ({})",
            PRIVATE_RANGES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::ffff:10.1.0.1".parse().unwrap()));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6 = Cidr::parse("fd12:3456::/48").unwrap();
        assert!(v6.contains("fd12:3456:0:1::9".parse().unwrap()));
        assert!(!v6.contains("fd12:3457::1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "fc00::/129",
            "host/8",
            "10.0.0.0/x",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Cidr::parse("[fc00::]/7").unwrap().to_string(), "fc00::/7");
    }

    #[test]
    fn private_only() {
        assert!(parse_private("10.20.0.0/16").is_ok());
        assert!(parse_private("100.64.0.0/10").is_ok());
        assert!(parse_private("fd00:1::/32").is_ok());
        for bad in [
            "127.0.0.0/8",
            "169.254.169.254",
            "8.8.8.8",
            "0.0.0.0/0",
            "10.0.0.0/7",
            "::1",
        ] {
            assert!(parse_private(bad).is_err(), "{bad} accepted");
        }
    }
}
