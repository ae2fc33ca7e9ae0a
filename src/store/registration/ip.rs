//! Agent addresses as authd accepts and stores them.
//!
//! authd takes `any`, an IPv4 address with an optional `/prefix` or `/netmask`, or an IPv6 address
//! with an optional `/prefix`; an IPv4-mapped IPv6 address counts as its IPv4 address, and IPv6
//! addresses are rewritten in full upper-case form. Three spellings of one address matter:
//! the text authd answers with, the bare address it indexes for duplicate checks (and writes in
//! removed-key lines), and the form it writes in `client.keys`, where a host prefix is dropped.

use std::net::Ipv6Addr;

/// Longest address text considered; no valid form comes close.
const MAX_TEXT: usize = 64;

/// One validated agent address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIp {
    /// The normalised request text (with the prefix as given): what authd answers.
    text: String,
    /// The address without any prefix: the duplicate-IP key.
    addr: String,
    /// Prefix length; `None` for a single host (and for `any`).
    prefix: Option<u8>,
    /// Whether the prefix is a host prefix (32 for IPv4, 128 for IPv6).
    host_prefix: u8,
}

impl AgentIp {
    /// `any`: the agent may connect from anywhere.
    pub fn any() -> AgentIp {
        AgentIp {
            text: "any".to_owned(),
            addr: "any".to_owned(),
            prefix: None,
            host_prefix: 0,
        }
    }

    /// Validates `input` like authd; `None` when authd would answer "No such IP".
    pub fn parse(input: &str) -> Option<AgentIp> {
        if input.len() > MAX_TEXT {
            return None;
        }
        // authd's validator skips one leading negation mark.
        let input = input.strip_prefix('!').unwrap_or(input);
        if input == "any" {
            return Some(AgentIp::any());
        }
        if let Some(v4) = strip_mapped_prefix(input) {
            return parse_v4(v4);
        }
        if input.contains(':') {
            return parse_v6(input);
        }
        parse_v4(input)
    }

    /// Whether this is `any`.
    pub fn is_any(&self) -> bool {
        self.text == "any"
    }

    /// The text authd answers with for a new agent.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The address without its prefix: the duplicate-IP key and the `get` answer.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The form written in `client.keys`: the address, plus `/<prefix>` unless it names one host.
    pub fn file_form(&self) -> String {
        match self.prefix {
            Some(prefix) if prefix < self.host_prefix => format!("{}/{prefix}", self.addr),
            _ => self.addr.clone(),
        }
    }
}

/// The IPv4 part of `::ffff:a.b.c.d[/..]` (the `ffff` in any case).
fn strip_mapped_prefix(input: &str) -> Option<&str> {
    let head = input.get(..7)?;
    (head.eq_ignore_ascii_case("::ffff:") && input[7..].contains('.')).then(|| &input[7..])
}

/// A dotted quad without leading zeros, as authd's pattern requires.
fn dotted_quad(text: &str) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(octets)
}

fn parse_v4(input: &str) -> Option<AgentIp> {
    let (addr, mask) = match input.split_once('/') {
        Some((addr, mask)) => (addr, Some(mask)),
        None => (input, None),
    };
    dotted_quad(addr)?;
    let prefix = match mask {
        None => None,
        Some(mask) if mask.len() <= 2 => {
            if !mask.bytes().all(|b| b.is_ascii_digit())
                || mask.is_empty()
                || (mask.len() == 2 && mask.starts_with('0'))
            {
                return None;
            }
            let bits: u8 = mask.parse().ok()?;
            (bits <= 32).then_some(bits)?;
            Some(bits)
        }
        // A netmask; only contiguous ones can be written back as a prefix.
        Some(mask) => {
            let bits = u32::from_be_bytes(dotted_quad(mask)?);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(())?;
            Some(u8::try_from(ones).ok()?)
        }
    };
    Some(AgentIp {
        text: input.to_owned(),
        addr: addr.to_owned(),
        prefix,
        host_prefix: 32,
    })
}

fn parse_v6(input: &str) -> Option<AgentIp> {
    let (addr, prefix) = match input.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (input, None),
    };
    // Embedded IPv4 forms, zone ids and the bare `::` are outside authd's patterns.
    if addr == "::" || addr.contains(['.', '%']) {
        return None;
    }
    let parsed: Ipv6Addr = addr.parse().ok()?;
    let prefix = match prefix {
        None => None,
        Some(p) => {
            let valid = !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() < 3 || p.starts_with('1'));
            let bits: u8 = p.parse().ok().filter(|bits| valid && *bits <= 128)?;
            Some(bits)
        }
    };
    let expanded = parsed
        .octets()
        .chunks(2)
        .map(|pair| format!("{:02X}{:02X}", pair[0], pair[1]))
        .collect::<Vec<_>>()
        .join(":");
    let text = match prefix {
        Some(bits) if bits != 0 => format!("{expanded}/{bits}"),
        _ => expanded.clone(),
    };
    Some(AgentIp {
        text,
        addr: expanded,
        prefix,
        host_prefix: 128,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(input: &str) -> Option<(String, String, String)> {
        AgentIp::parse(input).map(|ip| (ip.text().to_owned(), ip.addr().to_owned(), ip.file_form()))
    }

    fn owned(a: &str, b: &str, c: &str) -> Option<(String, String, String)> {
        Some((a.to_owned(), b.to_owned(), c.to_owned()))
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(forms("any"), owned("any", "any", "any"));
        assert_eq!(forms("10.0.0.5"), owned("10.0.0.5", "10.0.0.5", "10.0.0.5"));
        assert_eq!(
            forms("10.0.0.5/8"),
            owned("10.0.0.5/8", "10.0.0.5", "10.0.0.5/8")
        );
        assert_eq!(
            forms("10.0.0.5/32"),
            owned("10.0.0.5/32", "10.0.0.5", "10.0.0.5")
        );
        assert_eq!(
            forms("10.0.0.0/255.255.0.0"),
            owned("10.0.0.0/255.255.0.0", "10.0.0.0", "10.0.0.0/16")
        );
        assert_eq!(
            forms("::FFFF:192.168.1.1"),
            owned("192.168.1.1", "192.168.1.1", "192.168.1.1")
        );
        assert_eq!(forms("!1.2.3.4"), owned("1.2.3.4", "1.2.3.4", "1.2.3.4"));
    }

    #[test]
    fn invalid_addresses() {
        for bad in [
            "",
            "anyx",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4/33",
            "1.2.3.4/05",
            "1.2.3.4/",
            "1.2.3.4/255.0.255.0",
            "host.example",
            "::",
            "fe80::1%eth0",
            "::1/129",
            "::1/0128",
            "1.2.3.4 ",
            "a b",
        ] {
            assert_eq!(AgentIp::parse(bad), None, "{bad:?}");
        }
        assert_eq!(AgentIp::parse(&"1".repeat(65)), None);
    }

    #[test]
    fn ipv6_is_expanded() {
        assert_eq!(
            forms("fe80::1"),
            owned(
                "FE80:0000:0000:0000:0000:0000:0000:0001",
                "FE80:0000:0000:0000:0000:0000:0000:0001",
                "FE80:0000:0000:0000:0000:0000:0000:0001"
            )
        );
        assert_eq!(
            forms("2001:db8::/64"),
            owned(
                "2001:0DB8:0000:0000:0000:0000:0000:0000/64",
                "2001:0DB8:0000:0000:0000:0000:0000:0000",
                "2001:0DB8:0000:0000:0000:0000:0000:0000/64"
            )
        );
    }
}
