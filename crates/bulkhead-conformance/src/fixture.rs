//! A case's cluster as Bulkhead resources, and the step operations on it.
//!
//! The fixture owns the resource store of a case (keyed by kind, namespace and name), the
//! addresses the runner gave pods, and the names of externals and hosts. Steps mutate it;
//! after each step the backend is handed the whole store.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::calico::{EndpointPort, HostEndpointSpec};
use bulkhead_api::k8s::{Container, ContainerPort, PodIp, PodSpec as K8sPodSpec, PodStatus};
use bulkhead_api::values::Protocol;
use bulkhead_api::{Kind, Object, ObjectMeta, PodObject, Resource, ResourceKey, load_str};
use ipnet::IpNet;

use crate::case::{AddressSpec, DeleteSpec, Model, PodSpec, Serve, SetLabels};

/// A problem with the case file itself (not a failed expectation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CaseError(pub String);

fn err(msg: impl Into<String>) -> CaseError {
    CaseError(msg.into())
}

/// A pod of the fixture.
#[derive(Debug, Clone)]
pub struct FixturePod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// IPv4 address.
    pub v4: Option<IpAddr>,
    /// IPv6 address.
    pub v6: Option<IpAddr>,
    /// Named ports: (name, protocol, port).
    pub ports: Vec<(String, Protocol, u16)>,
}

impl FixturePod {
    /// `ns/pod`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An external or host of the fixture.
#[derive(Debug, Clone)]
pub struct FixtureAddress {
    /// `ext/NAME` or `host/NAME`.
    pub id: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
}

/// The live state of a case.
#[derive(Debug, Clone)]
pub struct Fixture {
    store: BTreeMap<ResourceKey, Resource>,
    /// Pods, in model order.
    pub pods: Vec<FixturePod>,
    /// Externals.
    pub externals: Vec<FixtureAddress>,
    /// Model hosts.
    pub hosts: Vec<FixtureAddress>,
    /// What every pod serves.
    pub serve: Vec<(Protocol, u16)>,
    pod_cidr: IpNet,
    pod_cidr_v6: Option<IpNet>,
    next_host: u128,
}

/// Default pod range when a case gives none.
pub const DEFAULT_POD_CIDR: &str = "10.65.0.0/16";

impl Fixture {
    /// Builds the fixture of a case model.
    pub fn new(model: &Model) -> Result<Fixture, CaseError> {
        let cidr = |text: &str| {
            text.parse::<IpNet>()
                .map_err(|_| err(format!("model: {text:?} is not a CIDR")))
        };
        let serve = model
            .serve
            .iter()
            .map(|s: &Serve| Ok((protocol(s.protocol.as_deref())?, s.port)))
            .collect::<Result<Vec<_>, CaseError>>()?;
        let mut f = Fixture {
            store: BTreeMap::new(),
            pods: Vec::new(),
            externals: Vec::new(),
            hosts: Vec::new(),
            serve,
            pod_cidr: cidr(model.pod_cidr.as_deref().unwrap_or(DEFAULT_POD_CIDR))?,
            pod_cidr_v6: model.pod_cidr_v6.as_deref().map(cidr).transpose()?,
            next_host: 10,
        };
        for ns in &model.namespaces {
            f.put(Resource::Namespace(ObjectMeta {
                name: ns.name.clone(),
                labels: ns.labels.clone(),
                ..Default::default()
            }));
        }
        for sa in &model.service_accounts {
            let (ns, name) = split_pod_name(&sa.name)?;
            f.put(Resource::ServiceAccount(ObjectMeta {
                name: name.into(),
                namespace: Some(ns.into()),
                labels: sa.labels.clone(),
                ..Default::default()
            }));
        }
        for e in &model.externals {
            f.externals.push(FixtureAddress {
                id: if e.name.starts_with("ext/") {
                    e.name.clone()
                } else {
                    format!("ext/{}", e.name)
                },
                ips: addresses(e)?,
            });
        }
        for h in &model.hosts {
            let ips = addresses(h)?;
            f.put(Resource::HostEndpoint(Object {
                metadata: ObjectMeta {
                    name: h.name.clone(),
                    labels: h.labels.clone(),
                    ..Default::default()
                },
                spec: HostEndpointSpec {
                    node: h.name.clone(),
                    interface_name: "*".into(),
                    expected_ips: ips.iter().map(ToString::to_string).collect(),
                    profiles: vec!["projectcalico-default-allow".into()],
                    ports: Vec::<EndpointPort>::new(),
                },
            }));
            f.hosts.push(FixtureAddress {
                id: format!("host/{}", h.name),
                ips,
            });
        }
        // Fixed addresses first, so assigned ones never collide with them.
        let mut taken: Vec<IpAddr> = model
            .pods
            .iter()
            .flat_map(|p| p.ip.iter().chain(p.ips.iter()))
            .filter_map(|t| t.parse().ok())
            .collect();
        for p in &model.pods {
            f.add_pod(p, &mut taken)?;
        }
        if let Some(text) = &model.resources {
            f.apply(text, "model.resources")?;
        }
        Ok(f)
    }

    /// Every resource of the current state.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.store.values()
    }

    fn put(&mut self, r: Resource) {
        self.store.insert(r.key(), r);
    }

    /// Adds a pod, assigning any address the case leaves to the runner.
    pub fn add_pod(&mut self, p: &PodSpec, taken: &mut Vec<IpAddr>) -> Result<(), CaseError> {
        let (ns, name) = split_pod_name(&p.name)?;
        let mut v4 = None;
        let mut v6 = None;
        for text in p.ip.iter().chain(p.ips.iter()) {
            let ip: IpAddr = text
                .parse()
                .map_err(|_| err(format!("pod {}: {text:?} is not an IP address", p.name)))?;
            if ip.is_ipv4() {
                v4 = Some(ip)
            } else {
                v6 = Some(ip)
            }
        }
        if v4.is_none() {
            v4 = Some(self.assign(self.pod_cidr, taken)?);
        }
        if v6.is_none()
            && let Some(c6) = self.pod_cidr_v6
        {
            v6 = Some(self.assign(c6, taken)?);
        }
        let ports: Vec<(String, Protocol, u16)> = match &p.ports {
            Some(list) => list
                .iter()
                .map(|x| Ok((x.name.clone(), protocol(x.protocol.as_deref())?, x.port)))
                .collect::<Result<_, CaseError>>()?,
            None => self
                .serve
                .iter()
                .map(|(proto, port)| {
                    (
                        format!("serve-{port}-{}", proto.to_string().to_lowercase()),
                        *proto,
                        *port,
                    )
                })
                .collect(),
        };
        let pod_ips: Vec<PodIp> = [v4, v6]
            .iter()
            .flatten()
            .map(|ip| PodIp { ip: ip.to_string() })
            .collect();
        self.put(Resource::Pod(PodObject {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(ns.into()),
                labels: p.labels.clone(),
                ..Default::default()
            },
            spec: K8sPodSpec {
                service_account_name: Some(
                    p.service_account
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                node_name: None,
                host_network: false,
                containers: vec![Container {
                    name: "serve".into(),
                    ports: ports
                        .iter()
                        .map(|(n, proto, port)| ContainerPort {
                            name: Some(n.clone()),
                            container_port: *port,
                            protocol: Some(proto.to_string()),
                            host_port: None,
                            host_ip: None,
                        })
                        .collect(),
                }],
            },
            status: PodStatus {
                pod_ip: v4.or(v6).map(|ip| ip.to_string()),
                pod_ips,
            },
        }));
        self.pods.retain(|x| !(x.namespace == ns && x.name == name));
        self.pods.push(FixturePod {
            namespace: ns.into(),
            name: name.into(),
            v4,
            v6,
            ports,
        });
        Ok(())
    }

    fn assign(&mut self, cidr: IpNet, taken: &mut Vec<IpAddr>) -> Result<IpAddr, CaseError> {
        loop {
            let offset = self.next_host;
            self.next_host += 1;
            let ip = match cidr {
                IpNet::V4(n) => {
                    let base = u32::from(n.network()) as u128;
                    let raw = u32::try_from(base + offset)
                        .ok()
                        .filter(|_| offset < (1u128 << (32 - u32::from(n.prefix_len()))));
                    raw.map(|r| IpAddr::from(std::net::Ipv4Addr::from(r)))
                }
                IpNet::V6(n) => {
                    let base = u128::from(n.network());
                    Some(IpAddr::from(std::net::Ipv6Addr::from(base + offset)))
                }
            };
            let ip = ip.ok_or_else(|| err(format!("pod range {cidr} is full")))?;
            if !taken.contains(&ip) {
                taken.push(ip);
                return Ok(ip);
            }
        }
    }

    /// Removes a pod.
    pub fn delete_pod(&mut self, id: &str) -> Result<(), CaseError> {
        let (ns, name) = split_pod_name(id)?;
        let key = ResourceKey {
            kind: Kind::Pod,
            namespace: Some(ns.into()),
            name: name.into(),
        };
        self.store
            .remove(&key)
            .ok_or_else(|| err(format!("deletePods: no pod {id}")))?;
        self.pods.retain(|p| !(p.namespace == ns && p.name == name));
        Ok(())
    }

    /// Applies verbatim YAML (placeholders substituted first); same identity replaces.
    pub fn apply(&mut self, text: &str, what: &str) -> Result<(), CaseError> {
        let text = self.substitute(text)?;
        let loaded = load_str(what, &text).map_err(|e| err(e.to_string()))?;
        for l in loaded {
            self.put(l.resource);
        }
        Ok(())
    }

    /// Deletes one object by kind, namespace and name.
    pub fn delete(&mut self, d: &DeleteSpec) -> Result<(), CaseError> {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.kind_name() == d.kind)
            .filter(|k| {
                d.api_version
                    .as_deref()
                    .is_none_or(|v| v == k.api_version())
            })
            .collect();
        let keys: Vec<ResourceKey> = kinds
            .into_iter()
            .map(|kind| ResourceKey {
                kind,
                namespace: if kind.is_namespaced() {
                    Some(d.namespace.clone().unwrap_or_else(|| "default".into()))
                } else {
                    None
                },
                name: d.name.clone(),
            })
            .filter(|k| self.store.contains_key(k))
            .collect();
        match keys.as_slice() {
            [one] => {
                self.store.remove(one);
                Ok(())
            }
            [] => Err(err(format!("delete: no {} {:?}", d.kind, d.name))),
            _ => Err(err(format!(
                "delete: {} {:?} is ambiguous: give apiVersion",
                d.kind, d.name
            ))),
        }
    }

    /// Replaces a pod's or a namespace's labels.
    pub fn set_labels(&mut self, s: &SetLabels) -> Result<(), CaseError> {
        let key = match (&s.pod, &s.namespace) {
            (Some(pod), None) => {
                let (ns, name) = split_pod_name(pod)?;
                ResourceKey {
                    kind: Kind::Pod,
                    namespace: Some(ns.into()),
                    name: name.into(),
                }
            }
            (None, Some(ns)) => ResourceKey {
                kind: Kind::Namespace,
                namespace: None,
                name: ns.clone(),
            },
            _ => return Err(err("setLabels: give exactly one of pod or namespace")),
        };
        match self.store.get_mut(&key) {
            Some(Resource::Pod(p)) => p.metadata.labels = s.labels.clone(),
            Some(Resource::Namespace(m)) => m.labels = s.labels.clone(),
            _ => return Err(err(format!("setLabels: no such object {key}"))),
        }
        Ok(())
    }

    /// Replaces `${ip:ns/pod}`, `${ip6:…}`, `${cidr:ns/pod:/N}` and `${cidr6:…}`.
    pub fn substitute(&self, text: &str) -> Result<String, CaseError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| err("unterminated ${ placeholder"))?;
            out.push_str(&self.placeholder(&after[..end])?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn placeholder(&self, body: &str) -> Result<String, CaseError> {
        let (func, arg) = body
            .split_once(':')
            .ok_or_else(|| err(format!("bad placeholder ${{{body}}}")))?;
        let (pod_id, prefix) = match func {
            "cidr" | "cidr6" => {
                let (p, n) = arg
                    .rsplit_once(":/")
                    .ok_or_else(|| err(format!("bad placeholder ${{{body}}}")))?;
                let n: u8 = n
                    .parse()
                    .map_err(|_| err(format!("bad prefix in ${{{body}}}")))?;
                (p, Some(n))
            }
            "ip" | "ip6" => (arg, None),
            _ => return Err(err(format!("unknown placeholder ${{{body}}}"))),
        };
        let pod = self
            .pods
            .iter()
            .find(|p| p.id() == pod_id)
            .ok_or_else(|| err(format!("placeholder ${{{body}}}: no pod {pod_id}")))?;
        let ip = if func.ends_with('6') { pod.v6 } else { pod.v4 }
            .ok_or_else(|| err(format!("placeholder ${{{body}}}: pod has no such address")))?;
        Ok(match prefix {
            None => ip.to_string(),
            Some(n) => IpNet::new(ip, n)
                .map_err(|_| err(format!("bad prefix in ${{{body}}}")))?
                .trunc()
                .to_string(),
        })
    }

    /// The addresses of `ns/pod`, `ext/NAME` or `host/NAME` (hosts declared in resources
    /// count too, by their expected IPs).
    pub fn addresses_of(&self, id: &str) -> Option<Vec<IpAddr>> {
        if let Some(name) = id.strip_prefix("host/") {
            if let Some(h) = self.hosts.iter().find(|h| h.id == id) {
                return Some(h.ips.clone());
            }
            return self.store.values().find_map(|r| match r {
                Resource::HostEndpoint(h) if h.metadata.name == name => Some(
                    h.spec
                        .expected_ips
                        .iter()
                        .filter_map(|t| t.parse().ok())
                        .collect(),
                ),
                _ => None,
            });
        }
        if id.starts_with("ext/") {
            return self
                .externals
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.ips.clone());
        }
        self.pods
            .iter()
            .find(|p| p.id() == id)
            .map(|p| [p.v4, p.v6].into_iter().flatten().collect())
    }
}

/// Parses a case protocol name (default TCP).
pub fn protocol(text: Option<&str>) -> Result<Protocol, CaseError> {
    match text {
        None => Ok(Protocol::TCP),
        Some(t) => Protocol::parse(t).ok_or_else(|| err(format!("unknown protocol {t:?}"))),
    }
}

fn addresses(a: &AddressSpec) -> Result<Vec<IpAddr>, CaseError> {
    a.ip.iter()
        .chain(a.ips.iter())
        .map(|t| {
            t.parse()
                .map_err(|_| err(format!("{}: {t:?} is not an IP address", a.name)))
        })
        .collect()
}

fn split_pod_name(id: &str) -> Result<(&str, &str), CaseError> {
    id.split_once('/')
        .ok_or_else(|| err(format!("{id:?}: expected <namespace>/<name>")))
}
