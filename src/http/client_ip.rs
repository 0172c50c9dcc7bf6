//! Which address the browser has. The socket peer, unless the peer is a
//! configured trusted proxy: then the right-most address in
//! `X-Forwarded-For` (or, without one, `Forwarded`) that is not itself a
//! trusted proxy. Anything a client writes to the left of that is ignored,
//! so a browser cannot forge its IP.

use std::net::IpAddr;

/// Built once: a lookup by `&str` parses the name on every request.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

use http::HeaderMap;
use ipnet::IpNet;

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    // `X-Forwarded-For` wins over `Forwarded` when both are present: it is
    // what nearly every proxy writes (NGINX, the clouds' load balancers,
    // Traefik, Caddy), and such a proxy passes a `Forwarded` the browser
    // wrote through untouched, so letting that one win let any browser
    // name its own address. Present counts even when unreadable (a browser
    // can make the proxy's line non-ASCII), or that `Forwarded` would win
    // again. The hops are walked nearest first, straight off the headers:
    // collecting them cost two vectors a request.
    // One lookup: `GetAll` is the entry's place, walked again for the hops.
    let x_forwarded_for = headers.get_all(X_FORWARDED_FOR);
    if x_forwarded_for.iter().next().is_some() {
        nearest_untrusted(peer, x_forwarded_for_hops(x_forwarded_for), is_trusted)
    } else {
        nearest_untrusted(peer, forwarded_hops(headers), is_trusted)
    }
}

/// The first hop, walking from `peer` toward the client, that is not a
/// trusted proxy (or the last trusted one, when every hop is).
fn nearest_untrusted(
    peer: IpAddr,
    hops: impl Iterator<Item = Option<IpAddr>>,
    is_trusted: impl Fn(&IpAddr) -> bool,
) -> IpAddr {
    let mut nearest = peer;
    for hop in hops {
        match hop {
            Some(ip) if is_trusted(&ip) => nearest = ip,
            Some(ip) => return ip,
            // A hop we cannot read: believe nothing further left of it.
            None => return nearest,
        }
    }
    nearest
}

/// `Forwarded`'s `for=` nodes, right (nearest proxy) to left. An element
/// without one, or not UTF-8, is an unreadable hop: a trusted proxy that
/// wrote it has not said who its client is, and skipping it read the
/// elements left of it, which the browser wrote.
fn forwarded_hops(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .rev()
        .flat_map(|v| elements(v).rev())
        .map(|e| std::str::from_utf8(e).ok().and_then(for_node))
}

/// A header line's comma-separated elements, as bytes: a line is split
/// before it is read, so a non-ASCII element a browser wrote is one
/// unreadable hop where it stands. Skipping the whole line instead went on
/// to the lines left of it, which the browser wrote too.
fn elements(value: &http::HeaderValue) -> std::slice::Split<'_, u8, impl FnMut(&u8) -> bool> {
    value.as_bytes().split(|b| *b == b',')
}

/// The `for=` node of one `Forwarded` element (`None`: the element has
/// none, or not an address).
fn for_node(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))
    })?
}

/// `X-Forwarded-For`'s addresses, right (nearest proxy) to left.
fn x_forwarded_for_hops(
    values: http::header::GetAll<'_, http::HeaderValue>,
) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    values
        .iter()
        .rev()
        .flat_map(|v| elements(v).rev())
        .map(|e| std::str::from_utf8(e).ok().and_then(parse_node))
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) are shown as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let node = raw.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The walk as it was first written (every hop collected, left to
    /// right, then walked from the right): the reference the iterators
    /// above are checked against.
    fn reference(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        let peer = canonical(peer);
        if !is_trusted(&peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        let mut nearest = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if is_trusted(ip) => nearest = *ip,
                Some(ip) => return *ip,
                None => return nearest,
            }
        }
        nearest
    }

    /// The hops, left (client side) to right (nearest proxy).
    /// `X-Forwarded-For` wins over `Forwarded` when both are present.
    fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        if headers.contains_key(X_FORWARDED_FOR) {
            chain_of(headers, X_FORWARDED_FOR, parse_node)
        } else {
            chain_of(headers, http::header::FORWARDED, for_node)
        }
    }

    /// One header's elements, each read by `read` unless it was not UTF-8.
    fn chain_of(
        headers: &HeaderMap,
        name: http::HeaderName,
        read: fn(&str) -> Option<IpAddr>,
    ) -> Vec<Option<IpAddr>> {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|e| (!e.contains('\u{fffd}')).then(|| read(&e)).flatten())
            .collect()
    }

    #[test]
    fn the_walk_matches_the_reference_on_random_header_sets() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let nodes = [
            "10.0.0.3",
            "10.1.2.3:8080",
            "198.51.100.7",
            "\"[2001:db8::1]:4711\"",
            "2001:db8::5",
            "[2606:4700::1]",
            "1.1.1.1",
            "not-an-ip",
            "",
            "unknown",
            " 203.0.113.9 ",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..5_000 {
            let mut map = HeaderMap::new();
            for _ in 0..rng.usize(0..4) {
                let (name, value) = if rng.bool() {
                    let hops: Vec<&str> = (0..rng.usize(1..4))
                        .map(|_| nodes[rng.usize(..nodes.len())])
                        .collect();
                    ("x-forwarded-for", hops.join(","))
                } else {
                    let elements: Vec<String> = (0..rng.usize(1..4))
                        .map(|_| match rng.usize(0..3) {
                            0 => format!("for={}", nodes[rng.usize(..nodes.len())]),
                            1 => format!("proto=https;For={}", nodes[rng.usize(..nodes.len())]),
                            _ => "by=10.0.0.1".to_owned(),
                        })
                        .collect();
                    ("forwarded", elements.join(", "))
                };
                map.append(http::HeaderName::from_static(name), value.parse().unwrap());
            }
            if rng.u8(..10) == 0 {
                // Not UTF-8: an unreadable hop.
                let name = if rng.bool() {
                    http::header::FORWARDED
                } else {
                    X_FORWARDED_FOR
                };
                map.append(name, http::HeaderValue::from_bytes(b"for=\xff").unwrap());
            }
            let peer = if rng.bool() {
                ip("10.0.0.2")
            } else {
                ip("::ffff:10.9.9.9")
            };
            assert_eq!(
                client_ip(peer, &map, &trusted),
                reference(peer, &map, &trusted),
                "{map:?}"
            );
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(client_ip(ip("203.0.113.5"), &h, &[]), ip("203.0.113.5"));
    }

    #[test]
    fn right_most_untrusted_hop_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client forged 1.1.1.1; the real client is 198.51.100.7.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.3")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn forwarded_header_with_ipv6_and_ports() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
    }

    /// NGINX (deployments/nginx) appends to `X-Forwarded-For` and passes a
    /// browser's own `Forwarded` through untouched: that one must not win.
    #[test]
    fn a_forwarded_header_the_browser_wrote_does_not_beat_the_proxys_x_forwarded_for() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let h = headers(&[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // Nor when the browser made the proxy's line unreadable.
        let mut h = headers(&[("forwarded", "for=1.2.3.4")]);
        h.append(
            X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap(),
        );
        assert_ne!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("1.2.3.4"));
    }

    /// A proxy that appends to the browser's last `X-Forwarded-For` line:
    /// the browser made that line non-ASCII and sent a forged one before it.
    #[test]
    fn an_unreadable_line_stops_the_walk_instead_of_being_skipped() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let mut h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        h.append(
            X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap(),
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        let mut h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        h.append(
            X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"\xff, 127.0.0.9").unwrap(),
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.9"));
        let mut h = headers(&[("forwarded", "for=1.2.3.4")]);
        h.append(
            http::header::FORWARDED,
            http::HeaderValue::from_bytes(b"for=\"\xff\"").unwrap(),
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
    }

    /// A trusted proxy that writes `Forwarded` without `for=` (HAProxy's
    /// `option forwarded proto by`) has not said who its client is: what
    /// the browser wrote left of its element must not stand in for that.
    #[test]
    fn an_element_without_for_stops_the_walk() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let h = headers(&[("forwarded", "for=1.2.3.4, proto=https;by=127.0.0.1")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "8.8.8.8, not-an-ip")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
        let h = headers(&[]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("127.0.0.1")
        );
    }
}
