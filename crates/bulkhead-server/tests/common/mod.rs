//! A real server on 127.0.0.1 (ephemeral port) over a real embedded store in a temporary
//! directory, driven through HTTP with the crate's blocking client.
#![allow(dead_code)]

use std::time::Duration;

use bulkhead_server::client::{Client, Response};
use bulkhead_server::{Server, ServerConfig};
use bulkhead_store::{AnyStore, EmbeddedStore, StoreError};
use serde_json::{Value, json};

/// A server with its own runtime and data directory.
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub config: ServerConfig,
}

impl TestServer {
    /// A server with test-friendly timings: bookmarks every 200 ms, rbac.yaml re-read every
    /// 100 ms.
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// Like [`TestServer::start`], with the configuration adjusted by `adjust`.
    pub fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-server-test-")
            .tempdir()
            .expect("temp dir");
        let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path());
        config.bookmark_interval = Duration::from_millis(200);
        config.rbac_reload_interval = Duration::from_millis(100);
        adjust(&mut config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut t = TestServer {
            rt,
            server: None,
            dir,
            url: String::new(),
            token: String::new(),
            config,
        };
        t.boot();
        t
    }

    fn boot(&mut self) {
        let config = self.config.clone();
        let server = self.rt.block_on(async move {
            // The previous server's last store handles may still be closing: retry briefly.
            for _ in 0..200 {
                let options = match &config.store {
                    bulkhead_server::StoreConfig::Embedded(o) => o.clone(),
                    bulkhead_server::StoreConfig::Etcd(_) => {
                        return Server::start(config.clone()).await.expect("start");
                    }
                };
                match EmbeddedStore::open(config.data_dir.join("store"), options) {
                    Ok(store) => {
                        return Server::start_with_store(config.clone(), AnyStore::from(store))
                            .await
                            .expect("start");
                    }
                    Err(StoreError::Embedded(redb::Error::DatabaseAlreadyOpen)) => {
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    Err(e) => panic!("open store: {e}"),
                }
            }
            panic!("store still open");
        });
        self.url = server.url();
        self.token = std::fs::read_to_string(server.admin_token_path())
            .expect("admin token")
            .trim()
            .to_string();
        // Next boots reuse the port, as a restarted server would.
        self.config.listen = server.addr();
        self.server = Some(server);
    }

    /// Stops the server (graceful) and starts it again on the same directory and port.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown()).expect("shutdown");
        }
    }

    /// The admin's client.
    pub fn admin(&self) -> Client {
        Client::new(&self.url, Some(&self.token)).expect("client")
    }

    /// A client with `token`.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token).expect("client")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `rbac.yaml` and waits until the server uses it (a request with `probe_token`
    /// stops being 401).
    pub fn write_rbac(&self, text: &str, probe_token: &str) {
        std::fs::write(self.data_dir().join("rbac.yaml"), text).expect("write rbac.yaml");
        let client = self.client(Some(probe_token));
        for _ in 0..100 {
            let r = client.get("/bulkhead/v1/whoami").expect("whoami");
            if r.status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rbac.yaml was not picked up");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server.shutdown());
        }
    }
}

/// Asserts the status and returns the body as JSON.
#[track_caller]
pub fn expect(response: Response, status: u16) -> Value {
    assert_eq!(
        response.status,
        status,
        "unexpected status; body: {}",
        response.text()
    );
    response.json().unwrap_or(Value::Null)
}

/// One valid document per kind, with `name` (and namespace `team-a` for namespaced kinds).
pub fn sample(kind: bulkhead_api::Kind, name: &str) -> Value {
    use bulkhead_api::Kind::*;
    let ns = "team-a";
    let (spec, extra): (Value, Option<(&str, Value)>) = match kind {
        Tier => (json!({"order": 100}), None),
        GlobalNetworkPolicy | StagedGlobalNetworkPolicy => (
            json!({"selector": "all()", "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]}),
            None,
        ),
        NetworkPolicy | StagedNetworkPolicy => (
            json!({"selector": "app == 'a'", "ingress": [{"action": "Deny", "source": {"nets": ["10.0.0.0/8"]}}]}),
            None,
        ),
        StagedKubernetesNetworkPolicy | KubernetesNetworkPolicy => (
            json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}),
            None,
        ),
        GlobalNetworkSet => (json!({"nets": ["198.51.100.0/24"]}), None),
        NetworkSet => (json!({"nets": ["2001:db8::/32"]}), None),
        HostEndpoint => (
            json!({"node": "n1", "interfaceName": "*", "expectedIPs": ["10.66.0.1"]}),
            None,
        ),
        WorkloadEndpoint => (
            json!({"node": "n1", "ipNetworks": ["10.65.0.9/32"], "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
            None,
        ),
        Profile => (json!({"ingress": [{"action": "Allow"}]}), None),
        Namespace | ServiceAccount => (Value::Null, None),
        FelixConfiguration => (
            json!({"failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}], "defaultEndpointToHostAction": "Drop"}),
            None,
        ),
        Node => (
            json!({"bgp": {"ipv4Address": "10.66.0.1/24", "asNumber": 64512}, "addresses": [{"address": "10.66.0.1", "type": "InternalIP"}]}),
            Some(("status", json!({"podCIDRs": ["10.65.1.0/24"]}))),
        ),
        Pod => (
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]}),
            Some(("status", json!({"podIP": "10.65.0.10"}))),
        ),
    };
    let mut metadata = json!({"name": name, "labels": {"app": "a"}});
    if kind.is_namespaced() {
        metadata["namespace"] = ns.into();
    }
    let mut doc = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind_name(),
        "metadata": metadata,
    });
    if !spec.is_null() {
        doc["spec"] = spec;
    }
    if let Some((k, v)) = extra {
        doc[k] = v;
    }
    doc
}

/// The collection path of `kind` (namespace `team-a` for namespaced kinds).
pub fn collection(kind: bulkhead_api::Kind) -> String {
    let info = bulkhead_server::kinds::KindInfo::of(kind);
    info.collection_path(kind.is_namespaced().then_some("team-a"))
}

/// The object path of `kind`/`name` (namespace `team-a` for namespaced kinds).
pub fn object(kind: bulkhead_api::Kind, name: &str) -> String {
    format!("{}/{name}", collection(kind))
}

/// A GlobalNetworkPolicy in `tier`.
pub fn gnp(name: &str, tier: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": tier, "selector": "all()", "ingress": [{"action": "Allow"}]},
    })
}

/// The resourceVersion of an object or list.
pub fn rv(doc: &Value) -> u64 {
    doc["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {doc}"))
}
