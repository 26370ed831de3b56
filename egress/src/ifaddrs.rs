//! The host's own interface addresses (refused as destinations: they reach host services
//! around the loopback rule), read with getifaddrs(3) and cached for a moment because
//! interfaces come and go (VPNs, Wi-Fi, containers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a reading of the interface list is reused.
const TTL: Duration = Duration::from_secs(2);

/// A cached view of the host's addresses.
#[derive(Debug, Default)]
pub struct OwnAddrs {
    cache: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>>,
}

impl OwnAddrs {
    /// The current addresses (read again when the cached list is older than two seconds).
    pub fn get(&self) -> Arc<Vec<IpAddr>> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, list)) = c.as_ref() {
            if at.elapsed() < TTL {
                return list.clone();
            }
        }
        let list = Arc::new(read());
        *c = Some((Instant::now(), list.clone()));
        list
    }
}

/// Reads every IPv4 and IPv6 address of every interface.
pub fn read() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(
            "cannot list the host's interface addresses: {}",
            std::io::Error::last_os_error()
        );
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: the family is AF_INET, so this is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_among_the_host_addresses() {
        let a = super::read();
        assert!(a.iter().any(|ip| ip.is_loopback()), "{a:?}");
    }
}
