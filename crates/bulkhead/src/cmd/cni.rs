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
//! on stdout as a CNI error object with a non-zero exit status and the spec's well-known
//! code where one fits (1 version, 4 environment, 6 not JSON, 7 invalid configuration;
//! 100 when the operation itself fails). Bad input is refused before anything is
//! leased, plumbed or registered, and CHECK never changes anything.

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

/// Well-known CNI error codes (CNI spec, "Error"); 100 and up are the plugin's own.
mod code {
    /// The configuration's `cniVersion` is not one this plugin speaks.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A required environment variable is missing or invalid (`CNI_COMMAND` included).
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// The configuration on stdin is not JSON.
    pub const DECODING_FAILURE: u32 = 6;
    /// The configuration is JSON but not a valid Bulkhead network configuration.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// The operation itself failed (plumbing, address management, registration, CHECK).
    pub const OPERATION_FAILED: u32 = 100;
}

/// A CNI error result: a code and the error with its causes.
struct CniError {
    code: u32,
    error: anyhow::Error,
}

/// Gives a fallible step its CNI error code.
trait WithCode<T> {
    fn code(self, code: u32) -> Result<T, CniError>;
}

impl<T, E: Into<anyhow::Error>> WithCode<T> for Result<T, E> {
    fn code(self, code: u32) -> Result<T, CniError> {
        self.map_err(|e| CniError {
            code,
            error: e.into(),
        })
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
        Err(CniError { code, error }) => {
            println!(
                "{}",
                json!({"cniVersion": version, "code": code, "msg": error.to_string(), "details": format!("{error:#}")})
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn env(name: &str) -> Result<String, CniError> {
    std::env::var(name)
        .map_err(|_| anyhow!("{name} is not set"))
        .code(code::INVALID_ENVIRONMENT)
}

/// Parses the network configuration: not JSON is a decoding failure, JSON of the wrong
/// shape (a missing key, a wrong type) an invalid configuration.
fn parse_conf(input: &str) -> Result<NetConf, CniError> {
    serde_json::from_str(input).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => code::INVALID_NETWORK_CONFIG,
            _ => code::DECODING_FAILURE,
        };
        CniError {
            code,
            error: anyhow::Error::new(e).context("network configuration on stdin"),
        }
    })
}

/// One ADD, DEL or CHECK: the configuration and the container it is about.
struct Request {
    conf: NetConf,
    subnets: Vec<IpNet>,
    /// `CNI_ARGS`, `K=V;K2=V2`.
    args: BTreeMap<String, String>,
    container: String,
    namespace: String,
    name: String,
    ipam_dir: PathBuf,
}

impl Request {
    /// Reads and checks everything the operations share; nothing is changed yet.
    fn parse(input: &str) -> Result<Request, CniError> {
        let conf = parse_conf(input)?;
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(anyhow!(
                "unsupported CNI version {}: this plugin speaks {}",
                conf.cni_version,
                SUPPORTED.join(", ")
            ))
            .code(code::INCOMPATIBLE_VERSION);
        }
        let subnets = conf.ipam.subnets().code(code::INVALID_NETWORK_CONFIG)?;
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
        Ok(Request {
            conf,
            subnets,
            args,
            container,
            namespace,
            name,
            ipam_dir,
        })
    }
}

fn execute(command: &str, input: &str) -> Result<Option<serde_json::Value>, CniError> {
    match command {
        "VERSION" => Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}),
        )),
        "ADD" => add(Request::parse(input)?).map(Some),
        "DEL" => del(Request::parse(input)?).map(|()| None),
        "CHECK" => check(Request::parse(input)?).map(|()| None),
        other => Err(anyhow!(
            "CNI_COMMAND {other:?}: expected ADD, DEL, CHECK or VERSION"
        ))
        .code(code::INVALID_ENVIRONMENT),
    }
}

/// Leases addresses, plumbs the workload and registers it; returns the CNI result.
fn add(request: Request) -> Result<serde_json::Value, CniError> {
    let netns = env("CNI_NETNS")?;
    let ifname = env("CNI_IFNAME")?;
    let labels_arg = request.args.get("BULKHEAD_LABELS").cloned();
    let labels = parse_labels(&[labels_arg.unwrap_or_default()])
        .context("BULKHEAD_LABELS in CNI_ARGS")
        .code(code::INVALID_ENVIRONMENT)?;
    let (mut ipv4, mut ipv6) = (None, None);
    for &subnet in &request.subnets {
        let lease = Ipam::open(&request.ipam_dir, subnet)
            .and_then(|mut ipam| ipam.lease(&request.container))
            .code(code::OPERATION_FAILED)?;
        match lease {
            IpAddr::V4(a) => ipv4 = Some(a),
            IpAddr::V6(a) => ipv6 = Some(a),
        }
    }
    let spec = WorkloadSpec {
        namespace: request.namespace,
        name: request.name,
        node: request.conf.node.clone(),
        node_netns: request.conf.node_netns.clone(),
        netns: netns.clone(),
        ifname: ifname.clone(),
        ipv4,
        ipv6,
        labels,
    };
    workload::add(&spec, &request.conf.resource_dir).code(code::OPERATION_FAILED)?;
    let leased: Vec<IpAddr> = [ipv4.map(IpAddr::V4), ipv6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .collect();
    let gateway = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => bulkhead_netns::GATEWAY_V4.to_string(),
        IpAddr::V6(_) => bulkhead_netns::GATEWAY_V6.to_string(),
    };
    let ips: Vec<serde_json::Value> = leased
        .iter()
        .map(|ip| json!({"address": IpNet::from(*ip).to_string(), "interface": 1, "gateway": gateway(ip)}))
        .collect();
    let routes: Vec<serde_json::Value> = leased
        .iter()
        .map(|ip| {
            let default = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            json!({"dst": default, "gw": gateway(ip)})
        })
        .collect();
    Ok(json!({
        "cniVersion": request.conf.cni_version,
        "interfaces": [
            {"name": spec.host_ifname()},
            {"name": ifname, "sandbox": netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": {},
    }))
}

/// Unplumbs, unregisters and releases the leases; succeeds if they are already gone.
fn del(request: Request) -> Result<(), CniError> {
    let Request { conf, .. } = &request;
    workload::del(
        &request.namespace,
        &request.name,
        &conf.node_netns,
        &conf.resource_dir,
    )
    .code(code::OPERATION_FAILED)?;
    for &subnet in &request.subnets {
        Ipam::open(&request.ipam_dir, subnet)
            .and_then(|mut ipam| ipam.release(&request.container))
            .code(code::OPERATION_FAILED)?;
    }
    Ok(())
}

/// Checks that the container has its leased addresses and is registered. Looks only:
/// no lease is taken and nothing is repaired.
fn check(request: Request) -> Result<(), CniError> {
    let netns = env("CNI_NETNS")?;
    let ifname = env("CNI_IFNAME")?;
    let mut want = Vec::new();
    for &subnet in &request.subnets {
        let leased = Ipam::open(&request.ipam_dir, subnet)
            .map(|ipam| ipam.leased(&request.container))
            .code(code::OPERATION_FAILED)?;
        let Some(ip) = leased else {
            return Err(anyhow!(
                "container {} has no address in {subnet}: was it added?",
                request.container
            ))
            .code(code::OPERATION_FAILED);
        };
        want.push(ip);
    }
    let have = bulkhead_netns::persistent::addresses(&netns, &ifname)
        .with_context(|| format!("reading the addresses of {ifname} in {netns}"))
        .code(code::OPERATION_FAILED)?;
    if let Some(missing) = want.iter().find(|ip| !have.contains(ip)) {
        return Err(anyhow!(
            "{ifname} in {netns} does not have {missing} (it has {have:?})"
        ))
        .code(code::OPERATION_FAILED);
    }
    let (namespace, name) = (&request.namespace, &request.name);
    if !workload::registration_path(&request.conf.resource_dir, namespace, name).exists() {
        return Err(anyhow!(
            "workload {namespace}/{name} of network {} is not registered",
            request.conf.name
        ))
        .code(code::OPERATION_FAILED);
    }
    Ok(())
}
