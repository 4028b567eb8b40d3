//! Small value types shared by the resources: protocols, ports, actions, policy types.
//!
//! Each accepts exactly the spellings Calico's API accepts and keeps what the user wrote
//! recognisable in error messages.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An IP protocol as Calico's `numorstring.Protocol`: a well-known name or a number 1–255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(u8);

impl Protocol {
    /// TCP (6).
    pub const TCP: Protocol = Protocol(6);
    /// UDP (17).
    pub const UDP: Protocol = Protocol(17);
    /// ICMP (1).
    pub const ICMP: Protocol = Protocol(1);
    /// ICMPv6 (58).
    pub const ICMPV6: Protocol = Protocol(58);
    /// SCTP (132).
    pub const SCTP: Protocol = Protocol(132);
    /// UDP-Lite (136).
    pub const UDPLITE: Protocol = Protocol(136);

    /// The protocol with IANA number `n` (1–255).
    pub fn from_number(n: u8) -> Option<Protocol> {
        (n != 0).then_some(Protocol(n))
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Parses a protocol name (`TCP`, `tcp`, `ICMPv6`, …) or a decimal number 1–255.
    pub fn parse(s: &str) -> Option<Protocol> {
        let named = match s {
            "TCP" | "tcp" => Some(Self::TCP),
            "UDP" | "udp" => Some(Self::UDP),
            "ICMP" | "icmp" => Some(Self::ICMP),
            "ICMPv6" | "icmpv6" => Some(Self::ICMPV6),
            "SCTP" | "sctp" => Some(Self::SCTP),
            "UDPLite" | "udplite" => Some(Self::UDPLITE),
            _ => None,
        };
        named.or_else(|| s.parse::<u8>().ok().and_then(Protocol::from_number))
    }

    /// True for the protocols whose rules may carry ports (TCP, UDP, SCTP).
    pub fn supports_ports(self) -> bool {
        matches!(self, Self::TCP | Self::UDP | Self::SCTP)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TCP => f.write_str("TCP"),
            Self::UDP => f.write_str("UDP"),
            Self::ICMP => f.write_str("ICMP"),
            Self::ICMPV6 => f.write_str("ICMPv6"),
            Self::SCTP => f.write_str("SCTP"),
            Self::UDPLITE => f.write_str("UDPLite"),
            Protocol(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_string().parse::<u8>() {
            Ok(n) => s.serialize_u8(n),
            Err(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol: TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .ok()
                    .and_then(Protocol::from_number)
                    .ok_or_else(|| E::custom(format!("protocol number {v} is not in 1-255")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("protocol number {v} is not in 1-255"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Protocol::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown protocol {v:?}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A port match: a number, an inclusive range `"min:max"`, or a named port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// Ports `min..=max` (a single port has `min == max`).
    Range {
        /// First port of the range.
        min: u16,
        /// Last port of the range (inclusive).
        max: u16,
    },
    /// A named port, resolved on the endpoint that owns the address.
    Named(String),
}

impl Port {
    /// A single numeric port.
    pub fn single(p: u16) -> Port {
        Port::Range { min: p, max: p }
    }

    /// Parses `"80"`, `"80:90"` or a port name (`^[a-zA-Z0-9_.-]{1,128}$`).
    pub fn parse(s: &str) -> Result<Port, String> {
        if let Some((a, b)) = s.split_once(':') {
            let min = a
                .parse::<u16>()
                .map_err(|_| format!("port range {s:?}: {a:?} is not a port number 0-65535"))?;
            let max = b
                .parse::<u16>()
                .map_err(|_| format!("port range {s:?}: {b:?} is not a port number 0-65535"))?;
            if min > max {
                return Err(format!(
                    "port range {s:?}: the first port is above the last"
                ));
            }
            return Ok(Port::Range { min, max });
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u16>()
                .map(Port::single)
                .map_err(|_| format!("port {s} is not in 0-65535"));
        }
        let valid_name = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid_name {
            Ok(Port::Named(s.to_string()))
        } else {
            Err(format!(
                "invalid port {s:?}: expected a number, a range \"min:max\" or a port name of [a-zA-Z0-9_.-]{{1,128}}"
            ))
        }
    }

    /// True if numeric port `p` is in this range (never true for a named port).
    pub fn contains(&self, p: u16) -> bool {
        matches!(self, Port::Range { min, max } if (*min..=*max).contains(&p))
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range { min, max } if min == max => write!(f, "{min}"),
            Port::Range { min, max } => write!(f, "{min}:{max}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Range { min, max } if min == max => s.serialize_u16(*min),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a range \"min:max\" or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0-65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0-65535")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Accept the connection; stop evaluating.
    Allow,
    /// Drop the connection; stop evaluating.
    Deny,
    /// Log and continue with the next rule.
    Log,
    /// Skip the rest of this tier; continue with the next tier.
    Pass,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        })
    }
}

/// A direction a policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic arriving at the selected endpoint.
    Ingress,
    /// Traffic leaving the selected endpoint.
    Egress,
}

/// A tier's action for traffic that a selecting policy did not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TierDefaultAction {
    /// Drop (the default).
    #[default]
    Deny,
    /// Continue with the next tier.
    Pass,
}

/// What a staged policy would do to the enforced policy of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StagedAction {
    /// Add the policy, or replace the enforced one of the same name (the default).
    #[default]
    Set,
    /// Remove the enforced policy of the same name.
    Delete,
    /// Accepted for compatibility; previews nothing.
    Learn,
    /// Accepted for compatibility; previews nothing.
    Ignore,
}

/// What happens to a workload's traffic to its own host once the workload's egress policy
/// allowed it (Felix's `DefaultEndpointToHostAction`). The host's own endpoints never
/// judge it: in Calico the traffic between a host and its workloads skips the host
/// endpoints' policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointToHost {
    /// Dropped: workloads reach their host only by the replies of connections the host
    /// opened. Felix's own default.
    Drop,
    /// Left to the host's other firewall rules. Bulkhead's table is a table of its own,
    /// which every other table sees the packet after anyway, so this comes to
    /// [`EndpointToHost::Accept`] here.
    Return,
    /// Accepted: the workload's egress policy alone decides. What Calico's shipped
    /// manifests set, and Bulkhead's default.
    #[default]
    Accept,
}

impl EndpointToHost {
    /// Whether the host takes what the workload's egress allowed.
    pub fn admits(self) -> bool {
        self != EndpointToHost::Drop
    }
}

impl std::str::FromStr for EndpointToHost {
    type Err = String;

    /// `Drop`, `Return` or `Accept`, in any case (Felix's spellings).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(EndpointToHost::Drop),
            "return" => Ok(EndpointToHost::Return),
            "accept" => Ok(EndpointToHost::Accept),
            _ => Err(format!("{text:?}: expected Drop, Return or Accept")),
        }
    }
}

impl fmt::Display for EndpointToHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointToHost::Drop => "Drop",
            EndpointToHost::Return => "Return",
            EndpointToHost::Accept => "Accept",
        })
    }
}

impl Serialize for EndpointToHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EndpointToHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_to_host_takes_felix_spellings_in_any_case() {
        for (text, action) in [
            ("Drop", EndpointToHost::Drop),
            ("DROP", EndpointToHost::Drop),
            ("return", EndpointToHost::Return),
            (" Accept ", EndpointToHost::Accept),
        ] {
            assert_eq!(text.parse::<EndpointToHost>(), Ok(action), "{text}");
            assert_eq!(
                action.to_string().parse::<EndpointToHost>(),
                Ok(action),
                "round trip"
            );
        }
        let e = "reject".parse::<EndpointToHost>().unwrap_err();
        assert!(e.contains("expected Drop, Return or Accept"), "{e}");
        assert!(!EndpointToHost::Drop.admits());
        assert!(EndpointToHost::Return.admits() && EndpointToHost::Accept.admits());
    }

    #[test]
    fn protocols_parse_names_and_numbers() {
        assert_eq!(Protocol::parse("TCP"), Some(Protocol::TCP));
        assert_eq!(Protocol::parse("icmpv6"), Some(Protocol::ICMPV6));
        assert_eq!(Protocol::parse("6"), Some(Protocol::TCP));
        assert_eq!(Protocol::parse("0"), None);
        assert_eq!(Protocol::parse("Tcp"), None);
        assert_eq!(Protocol::parse("256"), None);
        assert_eq!(
            Protocol::from_number(47).map(|p| p.to_string()),
            Some("47".into())
        );
    }

    #[test]
    fn ports_parse_numbers_ranges_and_names() {
        assert_eq!(Port::parse("80"), Ok(Port::single(80)));
        assert_eq!(Port::parse("80:90"), Ok(Port::Range { min: 80, max: 90 }));
        assert_eq!(Port::parse("http-alt"), Ok(Port::Named("http-alt".into())));
        assert!(Port::parse("90:80").is_err());
        assert!(Port::parse("70000").is_err());
        assert!(Port::parse("a b").is_err());
        assert!(Port::parse("").is_err());
        assert!(Port::Range { min: 80, max: 90 }.contains(85));
        assert!(!Port::Named("x".into()).contains(85));
    }
}
