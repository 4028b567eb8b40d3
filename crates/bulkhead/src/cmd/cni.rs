//! `bulkhead cni`: a CNI 1.0 plugin (ADD, DEL, CHECK, VERSION).
//!
//! The runtime passes the operation and the container in environment variables
//! (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`) and the network
//! configuration as JSON on stdin. Bulkhead's keys in that configuration:
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "bulkhead", "type": "bulkhead",
//!  "node": "node1",            // the node's name as its agent knows it
//!  "nodeNetns": "node1",       // the node sandbox the veth goes to
//!  "resourceDir": "/var/lib/bulkhead/resources",   // where the agent reads resources
//!  "ipam": {"subnet": "10.65.1.0/24", "subnet6": "fd65:1::/64"}}
//! ```
//!
//! The pod's namespace and name come from `CNI_ARGS` (`K8S_POD_NAMESPACE`,
//! `K8S_POD_NAME`); labels from `BULKHEAD_LABELS=k=v,k2=v2` there. A failure is reported
//! on stdout as a CNI error object with a non-zero exit status.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;

use crate::workload::{self, Ipam, WorkloadSpec, parse_labels};

/// CNI versions this plugin speaks.
const SUPPORTED: [&str; 2] = ["0.4.0", "1.0.0"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    cni_version: String,
    #[serde(default)]
    name: String,
    node: String,
    node_netns: String,
    resource_dir: PathBuf,
    ipam: IpamConf,
}

#[derive(Deserialize)]
struct IpamConf {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    subnet6: Option<String>,
}

impl IpamConf {
    /// The configured subnets, parsed.
    fn subnets(&self) -> anyhow::Result<Vec<IpNet>> {
        [&self.subnet, &self.subnet6]
            .into_iter()
            .flatten()
            .map(|s| s.parse().map_err(|_| anyhow!("ipam: {s:?} is not a CIDR")))
            .collect()
    }
}

/// Runs the plugin; the process's output is the CNI result or error.
pub fn run() -> anyhow::Result<ExitCode> {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut input = String::new();
    if command != "VERSION" {
        std::io::stdin().read_to_string(&mut input)?;
    }
    let version = serde_json::from_str::<serde_json::Value>(&input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "1.0.0".into());
    match execute(&command, &input) {
        Ok(Some(result)) => {
            println!("{result}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let code = if e.to_string().contains("unsupported CNI version") {
                1
            } else {
                999
            };
            println!(
                "{}",
                json!({"cniVersion": version, "code": code, "msg": e.to_string(), "details": format!("{e:#}")})
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow!("{name} is not set"))
}

fn execute(command: &str, input: &str) -> anyhow::Result<Option<serde_json::Value>> {
    if command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}),
        ));
    }
    let conf: NetConf = serde_json::from_str(input).context("network configuration on stdin")?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(anyhow!("unsupported CNI version {}", conf.cni_version));
    }
    let args: BTreeMap<String, String> = std::env::var("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let container = env("CNI_CONTAINERID")?;
    let namespace = args
        .get("K8S_POD_NAMESPACE")
        .cloned()
        .unwrap_or_else(|| "default".into());
    let name = args
        .get("K8S_POD_NAME")
        .cloned()
        .unwrap_or_else(|| container.clone());
    let ipam_dir = conf.resource_dir.join(".ipam");
    match command {
        "ADD" => {
            let netns = env("CNI_NETNS")?;
            let ifname = env("CNI_IFNAME")?;
            let mut ipv4 = None;
            let mut ipv6 = None;
            for subnet in conf.ipam.subnets()? {
                match Ipam::open(&ipam_dir, subnet)?.lease(&container)? {
                    IpAddr::V4(a) => ipv4 = Some(a),
                    IpAddr::V6(a) => ipv6 = Some(a),
                }
            }
            let labels = parse_labels(&[args.get("BULKHEAD_LABELS").cloned().unwrap_or_default()])?;
            let spec = WorkloadSpec {
                namespace,
                name,
                node: conf.node.clone(),
                node_netns: conf.node_netns.clone(),
                netns: netns.clone(),
                ifname: ifname.clone(),
                ipv4,
                ipv6,
                labels,
            };
            workload::add(&spec, &conf.resource_dir)?;
            let ips: Vec<serde_json::Value> = [ipv4.map(IpAddr::V4), ipv6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
                .map(|ip| {
                    let gateway = if ip.is_ipv4() { bulkhead_netns::GATEWAY_V4.to_string() } else { bulkhead_netns::GATEWAY_V6.to_string() };
                    json!({"address": IpNet::from(ip).to_string(), "interface": 1, "gateway": gateway})
                })
                .collect();
            Ok(Some(json!({
                "cniVersion": conf.cni_version,
                "interfaces": [
                    {"name": spec.host_ifname()},
                    {"name": ifname, "sandbox": netns},
                ],
                "ips": ips,
                "routes": [{"dst": "0.0.0.0/0", "gw": bulkhead_netns::GATEWAY_V4.to_string()}],
                "dns": {},
            })))
        }
        "DEL" => {
            workload::del(&namespace, &name, &conf.node_netns, &conf.resource_dir)?;
            for subnet in conf.ipam.subnets()? {
                Ipam::open(&ipam_dir, subnet)?.release(&container)?;
            }
            Ok(None)
        }
        "CHECK" => {
            let netns = env("CNI_NETNS")?;
            let ifname = env("CNI_IFNAME")?;
            let have = bulkhead_netns::persistent::addresses(&netns, &ifname)?;
            for subnet in conf.ipam.subnets()? {
                let want = Ipam::open(&ipam_dir, subnet)?.lease(&container)?;
                if !have.contains(&want) {
                    return Err(anyhow!(
                        "{ifname} in {netns} does not have {want} (it has {have:?})"
                    ));
                }
            }
            if !workload::registration_path(&conf.resource_dir, &namespace, &name).exists() {
                return Err(anyhow!(
                    "workload {namespace}/{name} of network {} is not registered",
                    conf.name
                ));
            }
            Ok(None)
        }
        other => Err(anyhow!(
            "unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK or VERSION"
        )),
    }
}
