//! Parsing the text inside single values: addresses, `addr:port`, MAC
//! addresses, durations, interface names, enum words, ring sizes. Pure
//! functions with no notion of where the value sits; each failure says what
//! is wrong and how to write it instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::MacAddr;

use super::schema;
use super::suggest;

/// Why a value is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub message: String,
    pub help: String,
}

fn bad<T>(message: impl Into<String>, help: impl Into<String>) -> Result<T, Bad> {
    Err(Bad {
        message: message.into(),
        help: help.into(),
    })
}

/// Index of `word` in `allowed`, or the list of allowed words and the
/// closest one.
pub fn one_of(word: &str, allowed: &[&str], what: &str) -> Result<usize, Bad> {
    if let Some(i) = allowed.iter().position(|a| *a == word) {
        return Ok(i);
    }
    let list = quoted_list(allowed);
    let help = match suggest::closest(word, allowed.iter().copied()) {
        Some(s) => format!("did you mean \"{s}\"? {what} is one of {list}"),
        None => format!("{what} is one of {list}"),
    };
    bad(format!("unknown {what} \"{word}\""), help)
}

/// `"a", "b" or "c"`.
pub fn quoted_list(words: &[&str]) -> String {
    let q: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => q.concat(),
    }
}

fn ipv4(s: &str) -> Result<Ipv4Addr, Bad> {
    Ipv4Addr::from_str(s).or_else(|_| {
        bad(
            format!("\"{s}\" is not an IPv4 address"),
            "write four decimal numbers from 0 to 255 separated by dots, without leading zeros, e.g. \"10.0.0.1\"",
        )
    })
}

/// A plain address (no port, no brackets), as for reals.
pub fn ip(s: &str) -> Result<IpAddr, Bad> {
    if s.is_empty() {
        return bad("empty address", "write an IP address, e.g. \"10.1.0.1\"");
    }
    if let Ok(a) = IpAddr::from_str(s) {
        return Ok(a);
    }
    if s.contains('%') {
        return bad(
            format!("\"{s}\" has a zone index"),
            "zone indexes (\"%eth0\") are not supported; use an address that is not link-local",
        );
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.split(']').next().unwrap_or_default();
        return bad(
            format!("\"{s}\" has brackets or a port"),
            format!("write the address alone, without brackets or port: \"{inner}\""),
        );
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if Ipv4Addr::from_str(host).is_ok() && port.bytes().all(|b| b.is_ascii_digit()) {
            return bad(
                format!("\"{s}\" has a port"),
                format!(
                    "write the address alone, \"{host}\": reals receive packets on the VIP's port"
                ),
            );
        }
    }
    if s.contains(':') {
        return bad(
            format!("\"{s}\" is not an IPv6 address"),
            "write eight groups of up to four hex digits separated by ':', \"::\" once for a run of zero groups, e.g. \"fc00::1\"",
        );
    }
    if s.bytes().any(|b| b.is_ascii_alphabetic()) {
        return bad(
            format!("\"{s}\" is not an IP address"),
            "host names are not resolved; write the IP address, e.g. \"10.1.0.1\"",
        );
    }
    ipv4(s).map(IpAddr::V4)
}

fn port(addr: &str, p: &str) -> Result<u16, Bad> {
    if p.is_empty() {
        return bad(
            format!("\"{addr}\" has no port after ':'"),
            "write the port after the colon; port 0 means every port",
        );
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return bad(
            format!("\"{p}\" is not a port number"),
            "write the port as a decimal number from 0 to 65535 (0 means every port)",
        );
    }
    u16::from_str(p).or_else(|_| {
        bad(
            format!("port {p} is out of range"),
            "ports go from 0 to 65535 (0 means every port)",
        )
    })
}

/// A VIP address: `10.0.0.1:80` or `[fc00::1]:443`.
pub fn addr_port(s: &str) -> Result<(IpAddr, u16), Bad> {
    if s.is_empty() {
        return bad(
            "empty address",
            "write address and port, e.g. \"10.0.0.1:80\" or \"[fc00::1]:443\"",
        );
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return bad(
                format!("\"{s}\" lacks the closing ']'"),
                "write IPv6 addresses as \"[fc00::1]:443\"",
            );
        };
        if let Ok(v4) = Ipv4Addr::from_str(inside) {
            return bad(
                format!("\"{s}\" puts an IPv4 address in brackets"),
                format!("brackets are for IPv6 only: write \"{v4}{after}\""),
            );
        }
        let a = Ipv6Addr::from_str(inside).map_err(|_| {
            ip(inside).err().unwrap_or_else(|| Bad {
                message: format!("\"{inside}\" is not an IPv6 address"),
                help: "write e.g. \"[fc00::1]:443\"".into(),
            })
        })?;
        let Some(p) = after.strip_prefix(':') else {
            return bad(
                format!("\"{s}\" has no port"),
                format!("write \"[{inside}]:PORT\"; port 0 means every port"),
            );
        };
        return Ok((IpAddr::V6(a), port(s, p)?));
    }
    if let Ok(a) = IpAddr::from_str(s) {
        return match a {
            IpAddr::V4(_) => bad(
                format!("\"{s}\" has no port"),
                format!("write \"{s}:PORT\"; port 0 means every port"),
            ),
            IpAddr::V6(_) => {
                let mut help = format!("IPv6 addresses need brackets and a port: \"[{s}]:PORT\"");
                if let Some((head, tail)) = s.rsplit_once(':') {
                    if Ipv6Addr::from_str(head).is_ok()
                        && !tail.is_empty()
                        && tail.bytes().all(|b| b.is_ascii_digit())
                    {
                        help = format!(
                            "IPv6 addresses need brackets before the port: if {tail} is the port, write \"[{head}]:{tail}\"; otherwise \"[{s}]:PORT\""
                        );
                    }
                }
                bad(format!("\"{s}\" has no port (or lacks brackets)"), help)
            }
        };
    }
    let Some((host, p)) = s.rsplit_once(':') else {
        let _ = ip(s)?;
        return bad(
            format!("\"{s}\" has no port"),
            "write address and port, e.g. \"10.0.0.1:80\"",
        );
    };
    if host.contains(':') {
        return bad(
            format!("\"{s}\" is not an address with a port"),
            "IPv6 addresses with a port need brackets, e.g. \"[fc00::1]:443\"",
        );
    }
    match ip(host)? {
        IpAddr::V4(a) => Ok((IpAddr::V4(a), port(s, p)?)),
        // `host` has no ':', so this cannot happen; an error all the same.
        IpAddr::V6(_) => bad(
            format!("\"{s}\" is not an address with a port"),
            "IPv6 addresses with a port need brackets, e.g. \"[fc00::1]:443\"",
        ),
    }
}

/// What a VIP or real address must not be. `role` is "VIP" or "real".
pub fn usable(a: IpAddr, role: &str) -> Result<(), Bad> {
    let why = match a {
        _ if a.is_unspecified() => Some("the unspecified address"),
        _ if a.is_loopback() => Some("a loopback address"),
        _ if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    };
    match why {
        Some(why) => bad(
            format!("{a} is {why} and cannot be a {role}"),
            format!("use the unicast address the {role} is reached at"),
        ),
        None => Ok(()),
    }
}

/// `::ffff:a.b.c.d`: written as IPv6 but meaning an IPv4 host.
pub fn ipv4_mapped(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff).then(|| {
                let o = v6.octets();
                Ipv4Addr::new(o[12], o[13], o[14], o[15])
            })
        }
        IpAddr::V4(_) => None,
    }
}

/// A gateway MAC: six bytes, unicast, not zero.
pub fn mac(s: &str) -> Result<MacAddr, Bad> {
    let m = MacAddr::from_str(s).or_else(|_| {
        bad(
            format!("\"{s}\" is not a MAC address"),
            "write six two-digit hex bytes separated by ':', e.g. \"02:00:5e:00:53:01\", or \"auto\"",
        )
    })?;
    if m.0 == [0; 6] {
        return bad(
            "the gateway MAC address is all zeros",
            "write the router's MAC address, or \"auto\" to use the default route's neighbour",
        );
    }
    if m.0[0] & 1 == 1 {
        return bad(
            format!("{m} is a multicast or broadcast MAC address"),
            "the gateway is one host: write its unicast MAC address (first byte even), or \"auto\"",
        );
    }
    Ok(m)
}

/// A Linux interface name, as the kernel's `dev_valid_name` accepts.
pub fn interface_name(s: &str) -> Result<(), Bad> {
    let help = "interface names are 1 to 15 bytes without '/', ':' or spaces, e.g. \"eth0\"";
    if s.is_empty() || s == "." || s == ".." {
        return bad(format!("\"{s}\" is not an interface name"), help);
    }
    if s.len() > schema::MAX_IFNAME_LEN {
        return bad(
            format!("interface name \"{s}\" is longer than 15 bytes"),
            help,
        );
    }
    if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return bad(format!("\"{s}\" is not an interface name"), help);
    }
    Ok(())
}

/// A duration in whole seconds: `"30s"`, `"5m"`, `"1h"`.
pub fn duration_s(s: &str) -> Result<u64, Bad> {
    let help = "write a whole number followed by s, m or h, e.g. \"30s\" or \"2m\", or an integer number of seconds";
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
    let (num, unit) = t.split_at(digits);
    let unit = unit.trim_start();
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "ms" | "us" | "ns" => {
            return bad(
                format!("\"{s}\" is finer than a second"),
                "UDP flow timeouts count whole seconds, e.g. \"1s\"",
            )
        }
        _ => return bad(format!("\"{s}\" is not a duration"), help),
    };
    if num.is_empty() {
        return bad(format!("\"{s}\" is not a duration"), help);
    }
    u64::from_str(num)
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map_or_else(|| bad(format!("\"{s}\" is too long"), help), Ok)
}

/// A TCP option kind usable for server ids.
pub fn tcp_option_kind(n: i64) -> Result<u8, Bad> {
    let help = "use an unassigned or experimental kind, e.g. 183 (Katran's) or 253/254 (RFC 6994); `true` means 183";
    let Ok(k) = u8::try_from(n) else {
        return bad(format!("TCP option kind {n} is out of range"), help);
    };
    let taken = match k {
        0 => Some("end of option list"),
        1 => Some("no-operation"),
        2 => Some("maximum segment size"),
        3 => Some("window scale"),
        4 => Some("SACK permitted"),
        5 => Some("SACK"),
        8 => Some("timestamps"),
        19 => Some("TCP MD5 signature"),
        28 => Some("user timeout"),
        29 => Some("TCP authentication"),
        30 => Some("multipath TCP"),
        34 => Some("TCP Fast Open"),
        _ => None,
    };
    match taken {
        Some(name) => bad(
            format!("TCP option kind {k} is {name}, which clients send for their own purposes"),
            help,
        ),
        None => Ok(k),
    }
}

pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// The largest prime below `n` and the smallest above it, within the
/// allowed ring sizes.
pub fn primes_around(n: u32) -> (Option<u32>, Option<u32>) {
    let below = (schema::MIN_RING_SIZE..n).rev().find(|&k| is_prime(k));
    let above = (n.saturating_add(1).max(schema::MIN_RING_SIZE)..=schema::MAX_RING_SIZE)
        .find(|&k| is_prime(k));
    (below, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_ports() {
        assert_eq!(
            addr_port("10.0.0.1:80"),
            Ok(("10.0.0.1".parse().unwrap(), 80))
        );
        assert_eq!(
            addr_port("[fc00::1]:443"),
            Ok(("fc00::1".parse().unwrap(), 443))
        );
        assert_eq!(
            addr_port("[::ffff:10.0.0.1]:0"),
            Ok(("::ffff:10.0.0.1".parse().unwrap(), 0))
        );
        for (s, msg) in [
            ("10.0.0.1", "has no port"),
            ("10.0.0.1:", "no port after"),
            ("10.0.0.1:70000", "port 70000 is out of range"),
            ("10.0.0.1:http", "is not a port number"),
            ("10.0.0.1:+80", "is not a port number"),
            ("fc00::1:443", "lacks brackets"),
            ("[fc00::1]", "has no port"),
            ("[fc00::1:443", "closing ']'"),
            ("[10.0.0.1]:80", "IPv4 address in brackets"),
            ("10.0.0.256:80", "not an IPv4 address"),
            ("lb.example:80", "not an IP address"),
            ("", "empty"),
        ] {
            let e = addr_port(s).unwrap_err();
            assert!(e.message.contains(msg), "{s}: {e:?}");
        }
        let e = addr_port("fc00::1:443").unwrap_err();
        assert!(e.help.contains("\"[fc00::1]:443\""), "{e:?}");
    }

    #[test]
    fn plain_addresses() {
        assert!(ip("10.1.0.1").is_ok());
        assert!(ip("fc00::1").is_ok());
        assert!(ip("10.1.0.1:80")
            .unwrap_err()
            .message
            .contains("has a port"));
        assert!(ip("[fc00::1]").unwrap_err().message.contains("brackets"));
        assert!(ip("fe80::1%eth0").unwrap_err().message.contains("zone"));
        assert!(usable("0.0.0.0".parse().unwrap(), "VIP").is_err());
        assert!(usable("::1".parse().unwrap(), "real").is_err());
        assert!(usable("224.0.0.1".parse().unwrap(), "real").is_err());
        assert!(usable("255.255.255.255".parse().unwrap(), "real").is_err());
        assert!(usable("10.0.0.1".parse().unwrap(), "real").is_ok());
        assert_eq!(
            ipv4_mapped("::ffff:10.0.0.1".parse().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(ipv4_mapped("fc00::1".parse().unwrap()), None);
    }

    #[test]
    fn durations_and_primes() {
        assert_eq!(duration_s("30s"), Ok(30));
        assert_eq!(duration_s("2m"), Ok(120));
        assert_eq!(duration_s("1h"), Ok(3600));
        assert!(duration_s("30").is_err());
        assert!(duration_s("500ms").unwrap_err().message.contains("finer"));
        assert!(is_prime(65_537) && is_prime(1_000_003) && is_prime(17));
        assert!(!is_prime(65_536) && !is_prime(1) && !is_prime(0));
        assert_eq!(primes_around(65_536), (Some(65_521), Some(65_537)));
        assert_eq!(primes_around(1_000_004), (Some(1_000_003), None));
    }

    #[test]
    fn macs_and_words() {
        assert!(mac("02:00:00:00:00:01").is_ok());
        assert!(mac("01:00:5e:00:00:01").is_err());
        assert!(mac("00:00:00:00:00:00").is_err());
        assert!(mac("00:11:22:33:44").is_err());
        assert_eq!(quoted_list(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
        let e = one_of("TCP", schema::PROTOS, "protocol").unwrap_err();
        assert!(e.help.starts_with("did you mean \"tcp\"?"), "{e:?}");
        assert!(tcp_option_kind(8).is_err());
        assert_eq!(tcp_option_kind(253), Ok(253));
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("a-very-long-interface").is_err());
        assert!(interface_name("eth0/1").is_err());
    }
}
