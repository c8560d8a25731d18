//! The SSRF guard of metadata document fetches: which addresses a fetch may reach, and
//! the HTTP client's only DNS resolver, which refuses names that resolve anywhere else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of destination an IP address is, for the SSRF guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable unicast: always allowed.
    Public,
    /// Loopback (127/8, ::1): allowed only with the test switch.
    Loopback,
    /// Private or local networks (RFC 1918, link-local, CGNAT 100.64/10, ULA fc00::/7,
    /// site-local, NAT64 local-use): allowed only with the test switch.
    Internal,
    /// Never a valid destination: unspecified, multicast, broadcast, documentation,
    /// benchmarking, reserved and protocol-assignment ranges.
    Forbidden,
}

/// Classifies an address; IPv6 forms that embed an IPv4 address (mapped, compatible,
/// NAT64 64:ff9b::/96, 6to4) are classified by the embedded address.
pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Forbidden, // "this network", unspecified
        (127, _, _) => AddressClass::Loopback, // 127/8
        (10, _, _) => AddressClass::Internal, // RFC 1918
        (172, 16..=31, _) => AddressClass::Internal,
        (192, 168, _) => AddressClass::Internal,
        (100, 64..=127, _) => AddressClass::Internal, // CGNAT 100.64/10
        (169, 254, _) => AddressClass::Internal,      // link-local (cloud metadata!)
        (192, 0, 0) => AddressClass::Forbidden,       // IETF protocol assignments
        (192, 0, 2) => AddressClass::Forbidden,       // TEST-NET-1
        (198, 51, 100) => AddressClass::Forbidden,    // TEST-NET-2
        (203, 0, 113) => AddressClass::Forbidden,     // TEST-NET-3
        (192, 88, 99) => AddressClass::Forbidden,     // 6to4 relay anycast (deprecated)
        (198, 18..=19, _) => AddressClass::Forbidden, // benchmarking 198.18/15
        (224..=255, _, _) => AddressClass::Forbidden, // multicast, reserved, broadcast
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return AddressClass::Forbidden;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible).
    if seg[0..5] == [0, 0, 0, 0, 0] && (seg[5] == 0xffff || seg[5] == 0) {
        return classify_v4(embedded_v4(seg[6], seg[7]));
    }
    // 64:ff9b::/96 NAT64 well-known prefix: the gateway connects to the embedded address.
    if seg[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(seg[6], seg[7]));
    }
    // 64:ff9b:1::/48 local-use NAT64.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return AddressClass::Internal;
    }
    // 2002::/16 6to4: the embedded IPv4 address is segments 1 and 2.
    if seg[0] == 0x2002 {
        return match classify_v4(embedded_v4(seg[1], seg[2])) {
            AddressClass::Public => AddressClass::Public,
            _ => AddressClass::Forbidden,
        };
    }
    match seg[0] {
        0xfc00..=0xfdff => return AddressClass::Internal, // ULA fc00::/7
        0xfe80..=0xfebf => return AddressClass::Internal, // link-local fe80::/10
        0xfec0..=0xfeff => return AddressClass::Internal, // site-local (deprecated)
        0xff00..=0xffff => return AddressClass::Forbidden, // multicast
        _ => {}
    }
    // 2001:db8::/32 and 3fff::/20 documentation; 2001::/23 IETF protocol assignments
    // (Teredo, ORCHID, ...); 100::/64 discard.
    if (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || (seg[0] == 0x3fff && seg[1] < 0x1000)
        || (seg[0] == 0x2001 && seg[1] < 0x0200)
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])
    {
        return AddressClass::Forbidden;
    }
    // Only 2000::/3 is allocated global unicast; everything else is reserved.
    if seg[0] & 0xe000 == 0x2000 {
        AddressClass::Public
    } else {
        AddressClass::Forbidden
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Whether the SSRF guard lets a fetch reach `ip`.
pub fn ip_allowed(ip: IpAddr, allow_insecure: bool) -> bool {
    match classify_ip(ip) {
        AddressClass::Public => true,
        AddressClass::Loopback | AddressClass::Internal => allow_insecure,
        AddressClass::Forbidden => false,
    }
}

/// Raised inside the HTTP client's resolver; found again in the error's source chain.
#[derive(Debug)]
pub(super) enum ResolveRefusal {
    Forbidden(String),
    Unresolvable(String),
}

impl std::fmt::Display for ResolveRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveRefusal::Forbidden(h) => write!(f, "{h} resolves to a non-public address"),
            ResolveRefusal::Unresolvable(h) => write!(f, "{h} could not be resolved"),
        }
    }
}

impl std::error::Error for ResolveRefusal {}

/// The HTTP client's only resolver: it resolves with the system resolver and refuses the
/// name if any address is not allowed. Because the client connects to exactly the addresses
/// returned here, a second DNS answer cannot swap in an internal address.
pub(super) struct VettingResolver {
    pub(super) allow_insecure: bool,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(it) => it.collect(),
                Err(_) => Vec::new(),
            };
            if addrs.is_empty() {
                return Err(Box::new(ResolveRefusal::Unresolvable(host)) as _);
            }
            if addrs.iter().any(|a| !ip_allowed(a.ip(), allow_insecure)) {
                return Err(Box::new(ResolveRefusal::Forbidden(host)) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(super) fn find_refusal<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ResolveRefusal> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<ResolveRefusal>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classification() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "223.255.255.254",
        ] {
            assert_eq!(classify_ip(v4(public)), AddressClass::Public, "{public}");
        }
        for lo in ["127.0.0.1", "127.255.255.254"] {
            assert_eq!(classify_ip(v4(lo)), AddressClass::Loopback, "{lo}");
        }
        for internal in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
        ] {
            assert_eq!(
                classify_ip(v4(internal)),
                AddressClass::Internal,
                "{internal}"
            );
        }
        for forbidden in [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert_eq!(
                classify_ip(v4(forbidden)),
                AddressClass::Forbidden,
                "{forbidden}"
            );
        }
    }

    #[test]
    fn ipv6_classification() {
        assert_eq!(
            classify_ip(v6("2606:4700:4700::1111")),
            AddressClass::Public
        );
        assert_eq!(
            classify_ip(v6("2a00:1450:4001:82a::200e")),
            AddressClass::Public
        );
        assert_eq!(classify_ip(v6("::1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("::")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("fc00::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("fd12:3456::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("fe80::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("ff02::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("2001:db8::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("3fff::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("2001::1")), AddressClass::Forbidden); // Teredo
        assert_eq!(classify_ip(v6("100::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("4000::1")), AddressClass::Forbidden); // unallocated
                                                                         // IPv4 embedded in IPv6 is judged by the IPv4 address.
        assert_eq!(classify_ip(v6("::ffff:127.0.0.1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("::ffff:10.1.2.3")), AddressClass::Internal);
        assert_eq!(
            classify_ip(v6("::ffff:169.254.169.254")),
            AddressClass::Internal
        );
        assert_eq!(classify_ip(v6("::ffff:8.8.8.8")), AddressClass::Public);
        assert_eq!(classify_ip(v6("::127.0.0.1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("64:ff9b::10.0.0.1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("64:ff9b::8.8.8.8")), AddressClass::Public);
        assert_eq!(classify_ip(v6("2002:7f00:1::1")), AddressClass::Forbidden); // 6to4 of 127.0.0.1
        assert_eq!(classify_ip(v6("2002:0808:0808::1")), AddressClass::Public);
    }

    #[test]
    fn ip_allowed_honours_the_test_switch() {
        assert!(ip_allowed(v4("8.8.8.8"), false));
        assert!(!ip_allowed(v4("127.0.0.1"), false));
        assert!(!ip_allowed(v4("10.0.0.1"), false));
        assert!(ip_allowed(v4("127.0.0.1"), true));
        assert!(ip_allowed(v4("192.168.0.1"), true));
        assert!(!ip_allowed(v4("0.0.0.0"), true));
        assert!(!ip_allowed(v6("ff02::1"), true));
    }
}
