//! Workloads on a node: plumbing (via `bulkhead_netns::persistent`), registration as a
//! WorkloadEndpoint in the agent's resource directory, and address management. Shared by
//! `bulkhead workload` and the CNI plugin, so both create exactly the same thing.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bulkhead_api::calico::WorkloadEndpointSpec;
use bulkhead_api::{Object, ObjectMeta, Resource};
use bulkhead_dataplane::naming::{WORKLOAD_PREFIX, workload_interface};
use bulkhead_netns::persistent::{WorkloadAttach, attach_workload, detach_workload};
use ipnet::IpNet;

/// A workload to create.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Kubernetes-style namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node's name (as agents know it).
    pub node: String,
    /// The node's network namespace.
    pub node_netns: String,
    /// The workload's network namespace (name or path).
    pub netns: String,
    /// Interface inside the workload.
    pub ifname: String,
    /// Addresses.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

impl WorkloadSpec {
    /// The node-side interface.
    pub fn host_ifname(&self) -> String {
        workload_interface(WORKLOAD_PREFIX, &self.namespace, &self.name)
    }
}

/// The file that registers workload `namespace/name` in `dir`.
pub fn registration_path(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(format!("wep-{namespace}-{name}.yaml"))
}

/// Plumbs the workload and registers it (the agent picks the file up).
pub fn add(spec: &WorkloadSpec, dir: &Path) -> anyhow::Result<()> {
    let host_ifname = spec.host_ifname();
    attach_workload(&WorkloadAttach {
        netns: &spec.netns,
        ifname: &spec.ifname,
        node: &spec.node_netns,
        host_ifname: &host_ifname,
        ipv4: spec.ipv4,
        ipv6: spec.ipv6,
    })
    .with_context(|| format!("plumbing {}/{}", spec.namespace, spec.name))?;
    let ips: Vec<IpAddr> = [spec.ipv4.map(IpAddr::V4), spec.ipv6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .collect();
    let wep = Resource::WorkloadEndpoint(Object {
        metadata: ObjectMeta {
            name: spec.name.clone(),
            namespace: Some(spec.namespace.clone()),
            labels: spec.labels.clone(),
            ..Default::default()
        },
        spec: WorkloadEndpointSpec {
            orchestrator: "k8s".into(),
            node: spec.node.clone(),
            interface_name: host_ifname.clone(),
            ip_networks: ips.iter().map(|ip| IpNet::from(*ip).to_string()).collect(),
            ..Default::default()
        },
    });
    let text = serde_json::to_string_pretty(&wep.to_document())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = registration_path(dir, &spec.namespace, &spec.name);
    write_atomically(&path, text.as_bytes())?;
    if let Err(e) = check_registration(&path) {
        let _ = detach_workload(&spec.node_netns, &host_ifname);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

fn check_registration(path: &Path) -> anyhow::Result<()> {
    bulkhead_api::load_paths(&[path]).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Unplumbs and unregisters the workload. Succeeds if it is already gone.
pub fn del(namespace: &str, name: &str, node_netns: &str, dir: &Path) -> anyhow::Result<()> {
    let host_ifname = workload_interface(WORKLOAD_PREFIX, namespace, name);
    detach_workload(node_netns, &host_ifname)?;
    match std::fs::remove_file(registration_path(dir, namespace, name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Parses `k=v,k2=v2` labels.
pub fn parse_labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("label {item:?}: expected key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// A tiny host-local address allocator: one JSON file of leases per subnet, replaced
/// atomically on every change, and a lock file beside it held while in use (so the
/// leases are never seen half-written, even after a crash).
pub struct Ipam {
    _lock: File,
    path: PathBuf,
    subnet: IpNet,
    leases: BTreeMap<String, IpAddr>,
}

impl Ipam {
    /// Opens (and locks) the allocation file for `subnet` in `dir`.
    pub fn open(dir: &Path, subnet: IpNet) -> anyhow::Result<Ipam> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = format!("ipam-{}", subnet.to_string().replace(['/', ':'], "_"));
        let lock_path = dir.join(format!("{stem}.lock"));
        let lock = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let path = dir.join(format!("{stem}.json"));
        let leases = match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text)
                .with_context(|| format!("{} is corrupt", path.display()))?,
            Ok(_) => BTreeMap::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Ipam {
            _lock: lock,
            path,
            subnet,
            leases,
        })
    }

    /// The address leased to `owner`, if any (nothing is allocated).
    pub fn leased(&self, owner: &str) -> Option<IpAddr> {
        self.leases.get(owner).copied()
    }

    /// The address leased to `owner`, allocating the lowest free one if it has none.
    pub fn lease(&mut self, owner: &str) -> anyhow::Result<IpAddr> {
        if let Some(ip) = self.leased(owner) {
            return Ok(ip);
        }
        let taken: HashSet<IpAddr> = self.leases.values().copied().collect();
        let ip = self
            .subnet
            .hosts()
            .skip(1)
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| anyhow!("no free address left in {}", self.subnet))?;
        self.leases.insert(owner.to_string(), ip);
        self.save()?;
        Ok(ip)
    }

    /// Releases `owner`'s address, if any.
    pub fn release(&mut self, owner: &str) -> anyhow::Result<()> {
        if self.leases.remove(owner).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> anyhow::Result<()> {
        write_atomically(&self.path, &serde_json::to_vec_pretty(&self.leases)?)
    }
}

/// Replaces `path` with `bytes` all at once: a temporary file beside it, synced, then
/// renamed over it. A crash leaves the old or the new content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Splits `NAMESPACE/NAME`.
pub fn split_id(id: &str) -> anyhow::Result<(String, String)> {
    match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns.into(), name.into())),
        _ => bail!("{id:?}: expected NAMESPACE/NAME"),
    }
}
