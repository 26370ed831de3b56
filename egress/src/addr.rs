//! The hard deny: names and addresses the proxy never connects to, whatever the rules say.
//!
//! Every address a name resolves to is checked, and so is the IPv4 address hidden inside an
//! IPv6 one (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32`), so that
//! `::ffff:169.254.169.254` is refused like `169.254.169.254`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use omac_bundle::cidr::{self, Cidr};
use serde::Serialize;

/// Why a destination is refused before any rule is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A cloud metadata endpoint (hands out the machine's credentials).
    Metadata,
    /// Loopback: the host's own services.
    Loopback,
    /// Link-local (169.254/16, fe80::/10).
    LinkLocal,
    /// The unspecified address or `0.0.0.0/8` (reaches the host itself).
    Unspecified,
    /// Multicast or broadcast.
    Multicast,
    /// Reserved ranges (240/4, documentation and benchmarking nets are not included).
    Reserved,
    /// One of the host's own interface addresses.
    HostAddress,
    /// A private range (RFC 1918, CGNAT, ULA) that `network.allow_private` does not list.
    Private,
}

impl Class {
    /// Short words for messages (`metadata`, `loopback`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Class::Metadata => "cloud metadata endpoint",
            Class::Loopback => "loopback",
            Class::LinkLocal => "link-local",
            Class::Unspecified => "unspecified address",
            Class::Multicast => "multicast or broadcast",
            Class::Reserved => "reserved address",
            Class::HostAddress => "this host's own address",
            Class::Private => "private address",
        }
    }
}

/// Metadata endpoints by address: AWS/GCP/Azure/OCI, AWS ECS task credentials, Alibaba
/// Cloud, and AWS over IPv6.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)];

/// Metadata endpoints by name.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Loopback names (RFC 6761 reserves `localhost` and everything under it).
const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// The class of a host name that is refused without resolving it.
pub fn class_of_name(host: &str) -> Option<Class> {
    let h = omac_bundle::domain::normalize_host(host);
    if METADATA_NAMES.contains(&h.as_str()) {
        return Some(Class::Metadata);
    }
    if LOOPBACK_NAMES.contains(&h.as_str()) || h.ends_with(".localhost") {
        return Some(Class::Loopback);
    }
    None
}

fn class_of_v4(a: Ipv4Addr) -> Option<Class> {
    let o = a.octets();
    if METADATA_V4.contains(&a) {
        Some(Class::Metadata)
    } else if o[0] == 127 {
        Some(Class::Loopback)
    } else if o[0] == 0 {
        Some(Class::Unspecified)
    } else if o[0] == 169 && o[1] == 254 {
        Some(Class::LinkLocal)
    } else if a.is_multicast() || a.is_broadcast() {
        Some(Class::Multicast)
    } else if o[0] >= 240 {
        Some(Class::Reserved)
    } else if a.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some(Class::Private)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
pub fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || (s[5] == 0 && u128::from(a) > 1)) {
        // IPv4-mapped, or IPv4-compatible (but not :: or ::1 themselves).
        return Some(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        // NAT64: the well-known prefix, and the local-use prefix 64:ff9b:1::/48 (RFC 8215).
        return Some(low);
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address follows the prefix.
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: the client's IPv4 address, inverted, in the last 32 bits.
        return Some(Ipv4Addr::from(!u32::from(low)));
    }
    None
}

fn class_of_v6(a: Ipv6Addr) -> Option<Class> {
    let s = a.segments();
    if METADATA_V6.contains(&a) {
        Some(Class::Metadata)
    } else if a.is_loopback() {
        Some(Class::Loopback)
    } else if a.is_unspecified() {
        Some(Class::Unspecified)
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some(Class::LinkLocal)
    } else if a.is_multicast() {
        Some(Class::Multicast)
    } else if let Some(v4) = embedded_v4(a) {
        class_of_v4(v4)
    } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        Some(Class::Private)
    } else {
        None
    }
}

/// The class of an address by its range alone (own addresses and exemptions aside).
pub fn class_of(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(a) => class_of_v4(a),
        IpAddr::V6(a) => class_of_v6(a),
    }
}

/// The address as the kernel would reach it: IPv4 for the IPv4-mapped form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The checks that need configuration: allowed private ranges and the host's addresses.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// `network.allow_private`.
    pub allow_private: Vec<Cidr>,
    /// Exact test listeners exempted (only through the `test-support` feature).
    pub(crate) exempt: Vec<std::net::SocketAddr>,
}

impl Guard {
    /// A guard for `network.allow_private` (entries that do not parse are ignored: the
    /// profile validation refuses them earlier).
    pub fn new(allow_private: &[String]) -> Guard {
        Guard {
            allow_private: allow_private
                .iter()
                .filter_map(|r| cidr::parse_private(r).ok())
                .collect(),
            exempt: Vec::new(),
        }
    }

    /// Why `ip:port` is refused, or `None` when it may be dialled; `own` lists the host's
    /// interface addresses.
    pub fn check(&self, ip: IpAddr, port: u16, own: &[IpAddr]) -> Option<Class> {
        if self
            .exempt
            .iter()
            .any(|e| canonical(e.ip()) == canonical(ip) && e.port() == port)
        {
            return None;
        }
        let class = class_of(ip);
        if class.is_some() && class != Some(Class::Private) {
            return class;
        }
        let reach = canonical(ip);
        let embedded = match reach {
            IpAddr::V6(a) => embedded_v4(a).map(IpAddr::V4),
            _ => None,
        };
        if own
            .iter()
            .any(|o| canonical(*o) == reach || Some(canonical(*o)) == embedded)
        {
            return Some(Class::HostAddress);
        }
        if class == Some(Class::Private) {
            let target = embedded.unwrap_or(reach);
            if !self.allow_private.iter().any(|c| c.contains(target)) {
                return Some(Class::Private);
            }
        }
        None
    }

    /// The smallest `allow_private` entry that would admit `ip` (for the fix in a refusal).
    pub fn suggestion(ip: IpAddr) -> String {
        let reach = match canonical(ip) {
            IpAddr::V6(a) => embedded_v4(a).map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        match reach {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        for (a, c) in [
            ("169.254.169.254", Class::Metadata),
            ("169.254.170.2", Class::Metadata),
            ("100.100.100.200", Class::Metadata),
            ("fd00:ec2::254", Class::Metadata),
            ("::ffff:169.254.169.254", Class::Metadata),
            ("64:ff9b::a9fe:a9fe", Class::Metadata),
            ("2002:a9fe:a9fe::1", Class::Metadata),
            ("127.0.0.1", Class::Loopback),
            ("127.255.0.9", Class::Loopback),
            ("::1", Class::Loopback),
            ("::ffff:127.0.0.1", Class::Loopback),
            ("::127.0.0.1", Class::Loopback),
            ("64:ff9b::7f00:1", Class::Loopback),
            ("64:ff9b:1::7f00:1", Class::Loopback),
            ("2002:7f00:1::", Class::Loopback),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Class::Loopback),
            ("0.0.0.0", Class::Unspecified),
            ("0.1.2.3", Class::Unspecified),
            ("::", Class::Unspecified),
            ("169.254.1.1", Class::LinkLocal),
            ("fe80::1", Class::LinkLocal),
            ("febf::1", Class::LinkLocal),
            ("224.0.0.1", Class::Multicast),
            ("255.255.255.255", Class::Multicast),
            ("ff02::1", Class::Multicast),
            ("240.0.0.1", Class::Reserved),
            ("10.0.0.1", Class::Private),
            ("172.16.5.4", Class::Private),
            ("172.31.255.255", Class::Private),
            ("192.168.1.1", Class::Private),
            ("100.64.0.1", Class::Private),
            ("100.127.255.254", Class::Private),
            ("fc00::1", Class::Private),
            ("fd12:3456::1", Class::Private),
            ("::ffff:10.1.2.3", Class::Private),
            ("64:ff9b::a00:1", Class::Private),
        ] {
            assert_eq!(class_of(ip(a)), Some(c), "{a}");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class_of(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            class_of_name("Metadata.Google.Internal."),
            Some(Class::Metadata)
        );
        assert_eq!(
            class_of_name("metadata.azure.internal"),
            Some(Class::Metadata)
        );
        assert_eq!(class_of_name("localhost"), Some(Class::Loopback));
        assert_eq!(class_of_name("app.localhost"), Some(Class::Loopback));
        assert_eq!(class_of_name("localhost.example.com"), None);
        assert_eq!(class_of_name("github.com"), None);
    }

    #[test]
    fn private_is_allowed_only_where_listed_and_own_addresses_never() {
        let g = Guard::new(&["10.20.0.0/16".into(), "fd12::/16".into()]);
        assert_eq!(g.check(ip("10.20.1.1"), 443, &[]), None);
        assert_eq!(g.check(ip("::ffff:10.20.1.1"), 443, &[]), None);
        assert_eq!(g.check(ip("10.21.1.1"), 443, &[]), Some(Class::Private));
        assert_eq!(g.check(ip("fd12::5"), 443, &[]), None);
        assert_eq!(g.check(ip("fd13::5"), 443, &[]), Some(Class::Private));
        assert_eq!(g.check(ip("192.168.0.1"), 443, &[]), Some(Class::Private));
        let own = [ip("10.20.0.7"), ip("203.0.113.9")];
        assert_eq!(g.check(ip("10.20.0.7"), 80, &own), Some(Class::HostAddress));
        assert_eq!(
            g.check(ip("203.0.113.9"), 80, &own),
            Some(Class::HostAddress)
        );
        assert_eq!(
            g.check(ip("::ffff:203.0.113.9"), 80, &own),
            Some(Class::HostAddress)
        );
        assert_eq!(
            g.check(ip("64:ff9b::cb00:7109"), 80, &own),
            Some(Class::HostAddress)
        );
        assert_eq!(g.check(ip("203.0.113.10"), 80, &own), None);
        // Hard classes stay refused whatever allow_private says.
        let wide = Guard::new(&["100.64.0.0/10".into(), "fd00::/8".into()]);
        assert_eq!(
            wide.check(ip("100.100.100.200"), 80, &[]),
            Some(Class::Metadata)
        );
        assert_eq!(
            wide.check(ip("fd00:ec2::254"), 80, &[]),
            Some(Class::Metadata)
        );
        assert_eq!(Guard::suggestion(ip("::ffff:10.0.0.5")), "10.0.0.5/32");
    }

    #[test]
    fn exemptions_are_exact() {
        let mut g = Guard::new(&[]);
        g.exempt.push("127.0.0.2:4000".parse().unwrap());
        assert_eq!(g.check(ip("127.0.0.2"), 4000, &[]), None);
        assert_eq!(g.check(ip("::ffff:127.0.0.2"), 4000, &[]), None);
        assert_eq!(g.check(ip("127.0.0.2"), 4001, &[]), Some(Class::Loopback));
        assert_eq!(g.check(ip("127.0.0.3"), 4000, &[]), Some(Class::Loopback));
    }
}
