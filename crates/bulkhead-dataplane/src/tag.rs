//! NFLOG tags: a compact ID for every rule that decides, for flow logs.
//!
//! With [`Tagging::On`] (flow logs wanted), every policy and profile rule that allows,
//! denies or passes, every end-of-tier drop and every "no profile" drop logs the packet
//! to NFLOG before its verdict, as Felix does when its flow logs are on: group [`GROUP_INGRESS`] or [`GROUP_EGRESS`], with a prefix
//! `<verdict><direction><id>`, e.g. `AI3f2a9c1b0e4d5f61`:
//! - verdict `A` (allow), `D` (deny) or `P` (pass);
//! - direction `I` (ingress) or `E` (egress);
//! - id: 16 hex digits, the first 64 bits of the SHA-224 of the rule's identity
//!   ([`TaggedRule`]), so the same rule has the same ID on every node and across
//!   restarts, and a collector maps IDs back with a [`RuleIndex`] of the model.
//!
//! Policy chains run only for a connection's first packet (established traffic is
//! accepted before them), so a flow is logged once per connection and side. With no
//! NFLOG listener on the group, the kernel drops the log message at once; the statement
//! still costs every new connection (docs/perf.md), hence [`Tagging::Off`] by default.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use bulkhead_engine::compile::Policy;
use bulkhead_engine::{Cluster, PolicyRef};
use sha2::{Digest, Sha224};

/// NFLOG group of ingress verdicts (Felix's).
pub const GROUP_INGRESS: u16 = 1;
/// NFLOG group of egress verdicts (Felix's).
pub const GROUP_EGRESS: u16 = 2;

/// Whether rendered verdicts carry their NFLOG tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tagging {
    /// No tags: no flow-log collector reads them (Felix's default, flow logs off).
    #[default]
    Off,
    /// Every verdict logs its tag first.
    On,
}

impl Tagging {
    /// `then` (a verdict such as `accept`), after the tag of `rule` when tagging is on.
    /// An empty `then` gives the tag alone (a log-only rule), or nothing when off.
    pub fn verdict(
        self,
        rule: &TaggedRule,
        verdict: TagVerdict,
        ingress: bool,
        then: &str,
    ) -> String {
        match self {
            Tagging::Off => then.to_string(),
            Tagging::On => {
                let tag = RuleTag::new(rule, verdict, ingress).statement();
                if then.is_empty() {
                    tag
                } else {
                    format!("{tag} {then}")
                }
            }
        }
    }
}

/// What a tagged rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagVerdict {
    /// Allow.
    Allow,
    /// Deny (drop).
    Deny,
    /// Pass (leave the tier; in a profile, go on to the next profile).
    Pass,
}

impl TagVerdict {
    fn letter(self) -> char {
        match self {
            TagVerdict::Allow => 'A',
            TagVerdict::Deny => 'D',
            TagVerdict::Pass => 'P',
        }
    }
}

/// The identity of a rule that decides, as the model names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaggedRule {
    /// Rule `index` of a policy's rules for the direction.
    Policy {
        /// The policy.
        policy: PolicyRef,
        /// Its rule's 0-based index.
        index: usize,
    },
    /// The end of a tier whose default action applied.
    EndOfTier {
        /// The tier.
        tier: String,
    },
    /// Rule `index` of a profile's rules for the direction.
    Profile {
        /// The profile.
        profile: String,
        /// Its rule's 0-based index.
        index: usize,
    },
    /// A profile the endpoint names does not exist.
    MissingProfile {
        /// The profile's name.
        profile: String,
    },
    /// No profile rule matched.
    NoProfile,
}

impl TaggedRule {
    /// The rule's 64-bit ID in `direction` (true: ingress).
    pub fn id(&self, ingress: bool) -> u64 {
        let dir = if ingress { "in" } else { "out" };
        let key = match self {
            TaggedRule::Policy { policy, index } => format!(
                "policy\0{}\0{}\0{}\0{dir}\0{index}",
                policy.kind.display_name(),
                policy.namespace.as_deref().unwrap_or(""),
                policy.name
            ),
            TaggedRule::EndOfTier { tier } => format!("tier\0{tier}\0{dir}"),
            TaggedRule::Profile { profile, index } => format!("profile\0{profile}\0{dir}\0{index}"),
            TaggedRule::MissingProfile { profile } => format!("missing\0{profile}\0{dir}"),
            TaggedRule::NoProfile => format!("no-profile\0{dir}"),
        };
        let digest = Sha224::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

/// One rule's NFLOG tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleTag {
    /// What the rule does.
    pub verdict: TagVerdict,
    /// Ingress (true) or egress.
    pub ingress: bool,
    /// [`TaggedRule::id`].
    pub id: u64,
}

impl RuleTag {
    /// The tag of `rule` with `verdict`, in one direction.
    pub fn new(rule: &TaggedRule, verdict: TagVerdict, ingress: bool) -> RuleTag {
        RuleTag {
            verdict,
            ingress,
            id: rule.id(ingress),
        }
    }

    /// The nft statement that logs a packet with this tag (goes before the verdict).
    pub fn statement(&self) -> String {
        let group = if self.ingress {
            GROUP_INGRESS
        } else {
            GROUP_EGRESS
        };
        format!("log prefix \"{self}\" group {group}")
    }

    /// Reads a tag back from an NFLOG prefix.
    pub fn parse(prefix: &str) -> Result<RuleTag, TagError> {
        let bad = || TagError(prefix.to_string());
        let mut chars = prefix.chars();
        let verdict = match chars.next() {
            Some('A') => TagVerdict::Allow,
            Some('D') => TagVerdict::Deny,
            Some('P') => TagVerdict::Pass,
            _ => return Err(bad()),
        };
        let ingress = match chars.next() {
            Some('I') => true,
            Some('E') => false,
            _ => return Err(bad()),
        };
        let hex = chars.as_str();
        if hex.len() != 16 {
            return Err(bad());
        }
        let id = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
        Ok(RuleTag {
            verdict,
            ingress,
            id,
        })
    }
}

impl fmt::Display for RuleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.ingress { 'I' } else { 'E' };
        write!(f, "{}{dir}{:016x}", self.verdict.letter(), self.id)
    }
}

/// An NFLOG prefix that is not a Bulkhead rule tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a rule tag: {0:?} (expected A|D|P, I|E, then 16 hex digits)")]
pub struct TagError(pub String);

/// Rule IDs → the rules of a model, for one direction each: what a flow-log collector
/// needs to name the rule behind a logged packet.
#[derive(Debug, Default)]
pub struct RuleIndex {
    rules: HashMap<(bool, u64), TaggedRule>,
}

impl RuleIndex {
    /// Every tagged rule of `cluster`'s policies, tiers and profiles, and of the profiles
    /// its endpoints name that do not exist, both directions.
    pub fn of(cluster: &Cluster) -> RuleIndex {
        let missing: BTreeSet<&str> = cluster
            .endpoints()
            .iter()
            .flat_map(|e| e.profiles.iter().map(|p| p.as_ref()))
            .filter(|name| cluster.profile(name).is_none())
            .collect();
        let mut index = RuleIndex::default();
        for ingress in [true, false] {
            index.add(TaggedRule::NoProfile, ingress);
            for policy in cluster.policies() {
                for i in 0..policy_rules(policy, ingress) {
                    let rule = TaggedRule::Policy {
                        policy: policy.id.clone(),
                        index: i,
                    };
                    index.add(rule, ingress);
                }
            }
            for tier in cluster.tiers() {
                let tier = tier.name.to_string();
                index.add(TaggedRule::EndOfTier { tier }, ingress);
            }
            for profile in cluster.all_profiles() {
                let rules = if ingress {
                    &profile.ingress
                } else {
                    &profile.egress
                };
                // An allow-all profile is tagged as its rule 0 even without rules.
                for i in 0..rules.len().max(1) {
                    let rule = TaggedRule::Profile {
                        profile: profile.name.to_string(),
                        index: i,
                    };
                    index.add(rule, ingress);
                }
            }
            for name in &missing {
                let profile = name.to_string();
                index.add(TaggedRule::MissingProfile { profile }, ingress);
            }
        }
        index
    }

    fn add(&mut self, rule: TaggedRule, ingress: bool) {
        self.rules.insert((ingress, rule.id(ingress)), rule);
    }

    /// The rule behind `tag`, if the model has it.
    pub fn get(&self, tag: &RuleTag) -> Option<&TaggedRule> {
        self.rules.get(&(tag.ingress, tag.id))
    }
}

fn policy_rules(policy: &Policy, ingress: bool) -> usize {
    if ingress {
        policy.ingress.len()
    } else {
        policy.egress.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::Kind;

    fn policy(name: &str, index: usize) -> TaggedRule {
        TaggedRule::Policy {
            policy: PolicyRef {
                kind: Kind::GlobalNetworkPolicy,
                namespace: None,
                name: name.into(),
            },
            index,
        }
    }

    #[test]
    fn a_tag_prints_and_parses_back() {
        let tag = RuleTag::new(&policy("allow-web", 0), TagVerdict::Allow, true);
        let text = tag.to_string();
        assert_eq!(text.len(), 18);
        assert!(text.starts_with("AI"), "{text}");
        assert_eq!(RuleTag::parse(&text), Ok(tag));
        assert_eq!(
            tag.statement(),
            format!("log prefix \"{text}\" group {GROUP_INGRESS}")
        );
        for bad in [
            "",
            "A",
            "XI0123456789abcdef",
            "AX0123456789abcdef",
            "AI0123",
            "AIzz23456789abcdef",
        ] {
            assert!(RuleTag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_differ_by_rule_direction_and_kind_of_thing() {
        let ids = [
            policy("a", 0).id(true),
            policy("a", 0).id(false),
            policy("a", 1).id(true),
            policy("b", 0).id(true),
            TaggedRule::EndOfTier { tier: "a".into() }.id(true),
            TaggedRule::Profile {
                profile: "a".into(),
                index: 0,
            }
            .id(true),
            TaggedRule::NoProfile.id(true),
        ];
        let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        // Stable: the same rule, the same ID.
        assert_eq!(policy("a", 0).id(true), policy("a", 0).id(true));
    }
}
