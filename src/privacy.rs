//! What the pipeline keeps of a visitor's address. Documents carry
//! `client.ip` truncated to its network by default (IPv4 /24, IPv6 /48, 6to4 /40), with
//! or without a GeoIP database; the full address lives only in memory, on
//! the beacon's context, for enrichment (`geoip` looks it up), and is never
//! written out. Operators who need it stored opt in with `client_ip = "full"`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// `client_ip` of the HTTP sources: what `client.ip` holds in documents.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientIpMode {
    /// The network part only: IPv4 /24, IPv6 /48 (the default).
    #[default]
    Truncated,
    /// The whole address (personal data: opt in knowingly).
    Full,
    /// No `client.ip` at all.
    None,
}

/// Bits of an address kept by [`ClientIpMode::Truncated`].
pub const IPV4_PREFIX: u8 = 24;
pub const IPV6_PREFIX: u8 = 48;

impl ClientIpMode {
    /// The text stored in `client.ip` for this address, if any.
    pub fn stored(self, ip: IpAddr) -> Option<String> {
        self.stored_text(ip).map(|text| text.to_string())
    }

    /// `stored`, an IPv4 address (most visitors) written on the stack:
    /// for a decoder that copies it on (a `String` was an allocation a
    /// request).
    pub fn stored_text(self, ip: IpAddr) -> Option<IpText> {
        match self {
            ClientIpMode::Truncated => Some(ip_text(truncate(
                ip.to_canonical(),
                IPV4_PREFIX,
                IPV6_PREFIX,
            ))),
            ClientIpMode::Full => Some(ip_text(ip)),
            ClientIpMode::None => None,
        }
    }
}

/// An address as text: an IPv4 one in place (at most 15 bytes), any other
/// in a `String`.
pub enum IpText {
    V4(V4Text),
    Other(String),
}

/// An IPv4 address's text, in place. Its fields are private: only
/// `ip_text` makes one, of digits and dots.
pub struct V4Text {
    bytes: [u8; 15],
    len: u8,
}

impl std::ops::Deref for IpText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Not checked again a read (`from_utf8` was ~90 instructions a
            // beacon): SAFETY: only `ip_text` makes a `V4Text`, of ASCII
            // digits and dots, which are UTF-8.
            IpText::V4(text) => unsafe {
                std::str::from_utf8_unchecked(
                    text.bytes.get(..usize::from(text.len)).unwrap_or_default(),
                )
            },
            IpText::Other(text) => text,
        }
    }
}

impl std::fmt::Display for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// `ip.to_string()`, with IPv4 (most visitors) written digit by digit:
/// every request pays this, and the formatting machinery costs ten times
/// as much.
fn ip_text(ip: IpAddr) -> IpText {
    let IpAddr::V4(v4) = ip else {
        return IpText::Other(ip.to_string());
    };
    let mut out = [0u8; 15];
    let mut len = 0;
    let mut put = |b: u8| {
        out[len] = b;
        len += 1;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        if octet >= 100 {
            put(b'0' + octet / 100);
        }
        if octet >= 10 {
            put(b'0' + octet / 10 % 10);
        }
        put(b'0' + octet % 10);
    }
    IpText::V4(V4Text {
        bytes: out,
        len: len as u8,
    })
}

/// Keeps the first `ipv4_prefix` / `ipv6_prefix` bits of an address.
pub fn truncate(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            // A 6to4 address (2002::/16) carries the client's IPv4 address
            // in bits 16..48, so a /48 would be the full IPv4: keep no more
            // of it than an IPv4 client keeps.
            let ipv6_prefix = match v6.segments()[0] {
                0x2002 => ipv6_prefix.min(16 + ipv4_prefix.min(32)),
                _ => ipv6_prefix,
            };
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for octet in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(octet, 0, 10, 255),
                Ipv4Addr::new(1, octet, 99, 100),
                Ipv4Addr::new(203, 0, octet, 9),
                Ipv4Addr::new(0, 0, 0, octet),
                Ipv4Addr::new(255, 255, octet, 255),
            ] {
                assert_eq!(&*ip_text(IpAddr::V4(ip)), ip.to_string());
            }
        }
        let v6: IpAddr = "2001:db8::8a2e:370:7334".parse().unwrap();
        assert_eq!(&*ip_text(v6), "2001:db8::8a2e:370:7334");
    }

    #[test]
    fn a_6to4_address_keeps_only_the_network_of_the_ipv4_inside() {
        // 2002:cb00:714d::/48 is the whole IPv4 address 203.0.113.77.
        let ip: IpAddr = "2002:cb00:714d:1::9".parse().unwrap();
        assert_eq!(
            ClientIpMode::default().stored(ip).as_deref(),
            Some("2002:cb00:7100::")
        );
        assert_eq!(truncate(ip, 32, 48).to_string(), "2002:cb00:714d::");
        assert_eq!(truncate(ip, 8, 128).to_string(), "2002:cb00::");
    }

    #[test]
    fn the_default_keeps_only_the_network() {
        let mode = ClientIpMode::default();
        assert_eq!(
            mode.stored("203.0.113.77".parse().unwrap()).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            mode.stored("2001:db8:1234:5678::9".parse().unwrap())
                .as_deref(),
            Some("2001:db8:1234::")
        );
        // An IPv4 client on an IPv6 socket is still truncated as IPv4.
        assert_eq!(
            mode.stored("::ffff:198.51.100.9".parse().unwrap())
                .as_deref(),
            Some("198.51.100.0")
        );
        assert_eq!(
            ClientIpMode::Full
                .stored("203.0.113.77".parse().unwrap())
                .as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(
            ClientIpMode::None.stored("203.0.113.77".parse().unwrap()),
            None
        );
    }
}
