//! The client address of a request: the TCP peer, unless the peer is a
//! trusted proxy (`--trusted-proxies`), in which case the last untrusted
//! address of `X-Forwarded-For`. The limiter, the body gate and the request
//! log all use it.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName};

/// `X-Forwarded-For`.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `::1/128`); a
/// bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether the network holds `addr` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("\"{s}\" is not an IP network in CIDR notation (e.g. 10.0.0.0/8, 192.168.1.10, fd00::/8)")
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// The proxies whose `X-Forwarded-For` is believed (default: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// The proxies in these networks.
    pub fn new(networks: Vec<Cidr>) -> Self {
        TrustedProxies(networks)
    }

    /// Whether `addr` is one of the trusted proxies.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(addr))
    }

    /// The client address of a request from `peer`: the peer itself unless it
    /// is trusted; then `X-Forwarded-For` is walked from the right, skipping
    /// trusted addresses, and the first untrusted one is the client. An entry
    /// that is not an address stops the walk at the last trusted hop (which
    /// is then the client: garbage is never believed); when every entry is
    /// trusted, the leftmost is the client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Several headers read as one list, in order.
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            for entry in value.as_bytes().rsplit(|b| *b == b',') {
                let Some(addr) = parse_entry(entry) else {
                    return client;
                };
                client = addr;
                if !self.trusts(addr) {
                    return addr;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:80`, `[::1]:80`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let addr = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(canonical(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        let one: Cidr = "192.168.1.10".parse().unwrap();
        assert!(one.contains(ip("192.168.1.10")));
        assert!(!one.contains(ip("192.168.1.11")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert_eq!(one.to_string(), "192.168.1.10/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "1.2.3.4/8/9",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("CIDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            t.client(ip("192.0.2.1"), &xff(&["1.1.1.1"])),
            ip("192.0.2.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.0.0.1"), &xff(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_last_untrusted_hop() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("127.0.0.1");
        assert_eq!(t.client(peer, &xff(&["1.1.1.1"])), ip("1.1.1.1"));
        assert_eq!(
            t.client(peer, &xff(&["6.6.6.6, 2.2.2.2, 10.0.0.5"])),
            ip("2.2.2.2"),
            "a spoofed left part is never reached"
        );
        assert_eq!(
            t.client(peer, &xff(&["6.6.6.6", "2.2.2.2:4711,10.0.0.5"])),
            ip("2.2.2.2")
        );
        assert_eq!(
            t.client(peer, &xff(&["[2001:db8::7]:80"])),
            ip("2001:db8::7")
        );
        assert_eq!(t.client(peer, &xff(&[])), peer, "no header: the peer");
        assert_eq!(
            t.client(peer, &xff(&["10.0.0.9, 10.0.0.5"])),
            ip("10.0.0.9"),
            "all trusted: the leftmost"
        );
        assert_eq!(
            t.client(peer, &xff(&["1.1.1.1, garbage, 10.0.0.5"])),
            ip("10.0.0.5"),
            "garbage stops the walk at the last trusted hop"
        );
        assert_eq!(t.client(peer, &xff(&["unknown"])), peer);
    }
}
