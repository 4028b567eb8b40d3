//! The CLI and the agent against the real server: `bulkhead server` is started as a process
//! with a temporary data directory on an ephemeral port, and driven with `bulkhead apply |
//! get | describe | diff | delete | login` and `bulkhead agent --server`, as a user would.
//!
//! The agent test needs root, nft and ping (it skips with a message otherwise); the others
//! run anywhere.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_agent::node_publisher::NodePublisher;
use bulkhead_agent::server_source::ServerSource;
use bulkhead_api::{Kind, Resource, ResourceKey, load_str};
use bulkhead_calc::Update;
use bulkhead_client::Client;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead")
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-cp-{}-{what}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bulkhead server` as a child process; killed on drop.
struct ServerProc {
    child: Option<Child>,
    data: TempDir,
    port: u16,
    url: String,
    token: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl ServerProc {
    fn start() -> ServerProc {
        let data = TempDir::new("server");
        let port = free_port();
        let mut s = ServerProc {
            child: None,
            data,
            port,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
        };
        s.spawn();
        s
    }

    /// Starts (again) on the same port and data directory; waits until it answers.
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.data.path().join("server.log")).expect("log");
        let child = Command::new(bin())
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--data-dir",
            ])
            .arg(self.data.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bulkhead server starts");
        self.child = Some(child);
        let token_path = self.data.path().join("data").join("admin.token");
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("bulkhead server exited with {status}: {}", self.log());
            }
            if let Ok(token) = std::fs::read_to_string(&token_path) {
                self.token = token.trim().to_string();
                if !self.token.is_empty()
                    && Client::new(&self.url, Some(&self.token))
                        .and_then(|c| c.whoami())
                        .is_ok()
                {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(&self.url, Some(&self.token)).expect("client")
    }

    /// Runs the CLI with this server's URL and admin token in the environment (the way a
    /// user who ran `export BULKHEAD_SERVER=… BULKHEAD_TOKEN=…` would), and a config file
    /// path of its own so the user's real one is never read.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    fn cli_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("BULKHEAD_SERVER", &self.url)
            .env("BULKHEAD_TOKEN", &self.token)
            .env("BULKHEAD_CONFIG", self.data.path().join("cli-config"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("bulkhead runs");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("bulkhead finishes")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.data.path().join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// One object of every kind.
const EVERY_KIND: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.no-smtp, labels: {team: sec}}
spec:
  tier: security
  order: 10
  selector: app == 'web'
  egress: [{action: Deny, protocol: TCP, destination: {ports: [25]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: staged-gnp}
spec: {selector: all(), ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: staged-np, namespace: shop}
spec: {selector: all(), stagedAction: Set, ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: staged-knp, namespace: shop}
spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 5432}]}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: internet, labels: {zone: outside}}
spec: {nets: [0.0.0.0/0]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: host}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.168.1.10]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web-eth0, namespace: shop, labels: {app: web}}
spec:
  node: n1
  orchestrator: k8s
  workload: web
  endpoint: eth0
  interfaceName: cali1234
  ipNetworks: [10.1.0.5/32]
  profiles: [kns.shop]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}], labelsToApply: {open: "true"}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  nodeName: n1
  serviceAccountName: db
  containers: [{name: pg, ports: [{name: pg, containerPort: 5432}]}]
status: {podIP: 10.1.0.6}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: db, namespace: shop}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{protocol: TCP, port: 22}, {port: 2222}]
  defaultEndpointToHostAction: Drop
  logSeverityScreen: Info
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec:
  bgp: {asNumber: 64512, ipv4Address: 192.168.1.10/24}
  addresses: [{address: 192.168.1.10/24, type: CalicoNodeIP}]
  wireguard: {interfaceIPv4Address: 10.1.0.1}
"#;

fn resources(text: &str) -> Vec<Resource> {
    load_str("test", text)
        .expect("the test's documents load")
        .into_iter()
        .map(|l| l.resource)
        .collect()
}

/// A document without the metadata the server sets.
fn user_document(r: &Resource) -> serde_json::Value {
    let mut doc = r.to_document();
    if let Some(serde_json::Value::Object(m)) = doc.get_mut("metadata") {
        for f in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            m.remove(f);
        }
    }
    doc
}

/// The name the CLI calls a kind by, and the `-n` arguments for an object.
fn cli_kind(kind: Kind) -> String {
    kind.display_name().to_ascii_lowercase()
}

fn ns_args(r: &Resource) -> Vec<String> {
    match (&r.meta().namespace, r.kind().is_namespaced()) {
        (Some(ns), true) => vec!["-n".into(), ns.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn every_kind_round_trips_through_apply_get_diff_and_delete() {
    let server = ServerProc::start();
    let all = resources(EVERY_KIND);
    assert_eq!(
        all.iter()
            .map(Resource::kind)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        Kind::ALL.len(),
        "the test covers every kind"
    );
    let file = server.file("every-kind.yaml", EVERY_KIND);

    // Nothing exists: diff shows creations and exits 1; apply creates everything.
    let d = server.cli(&["diff", "-f", p(&file)]);
    assert_eq!(d.status.code(), Some(1), "{}{}", stdout(&d), stderr(&d));
    assert!(stdout(&d).contains("--- /dev/null\n+++ tier/security (file)"));
    let out = ok(server.cli(&["apply", "-f", p(&file)]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), all.len(), "{out}");
    assert_eq!(
        lines[0], "namespace/shop created",
        "namespaces first: {out}"
    );
    assert_eq!(lines[1], "tier/security created", "then tiers: {out}");
    for r in &all {
        let line = format!("{}/{} created", cli_kind(r.kind()), r.meta().name);
        assert!(lines.contains(&line.as_str()), "{line} in {out}");
    }

    for r in &all {
        let kind = cli_kind(r.kind());
        let name = &r.meta().name;
        let mut args: Vec<String> = vec!["get".into(), kind.clone(), name.clone()];
        args.extend(ns_args(r));
        args.extend(["-o".into(), "yaml".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let yaml = ok(server.cli(&args));
        let back = resources(&yaml);
        assert_eq!(back.len(), 1, "{yaml}");
        assert_eq!(
            user_document(&back[0]),
            user_document(r),
            "{kind}/{name} came back different:\n{yaml}"
        );
        assert!(
            back[0].meta().resource_version.is_some(),
            "the server's metadata is shown: {yaml}"
        );
        // Applying what get printed changes nothing; diff agrees.
        let again = server.file(&format!("back/{kind}.yaml"), &yaml);
        let out = ok(server.cli(&["apply", "-f", p(&again)]));
        assert_eq!(out, format!("{kind}/{name} unchanged\n"));
        let d = server.cli(&["diff", "-f", p(&again)]);
        assert_eq!(d.status.code(), Some(0), "{}{}", stdout(&d), stderr(&d));
        assert_eq!(stdout(&d), format!("{kind}/{name} unchanged\n"));
        // Tables name it.
        let mut args: Vec<String> = vec!["get".into(), kind.clone(), "-A".into()];
        if !r.kind().is_namespaced() {
            args.truncate(2);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let table = ok(server.cli(&args));
        assert!(
            table.starts_with("NAME") || table.starts_with("NAMESPACE"),
            "{table}"
        );
        assert!(table.contains(name.as_str()), "{table}");
    }
    // The whole file again: unchanged, and stdin works.
    let out = ok(server.cli_stdin(&["apply", "-f", "-"], Some(EVERY_KIND)));
    assert_eq!(out.matches(" unchanged").count(), all.len(), "{out}");
    let d = server.cli(&["diff", "-f", p(&file)]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));

    // A list printed by get -o yaml applies back unchanged.
    let list = ok(server.cli(&["get", "np", "-n", "shop", "-o", "yaml"]));
    assert!(list.contains("kind: List"), "{list}");
    let list_file = server.file("np-list.yaml", &list);
    assert_eq!(
        ok(server.cli(&["apply", "-f", p(&list_file)])),
        "networkpolicy/allow-web unchanged\n"
    );

    // A change: diff shows it as a unified diff, apply configures it.
    let changed = EVERY_KIND.replace(
        "spec: {order: 100, defaultAction: Pass}",
        "spec: {order: 200, defaultAction: Pass}",
    );
    let changed_file = server.file("changed.yaml", &changed);
    let d = server.cli(&["diff", "-f", p(&changed_file)]);
    assert_eq!(d.status.code(), Some(1));
    let text = stdout(&d);
    assert!(
        text.contains("--- tier/security (server)\n+++ tier/security (file)\n@@"),
        "{text}"
    );
    assert!(text.contains("-  order: 100\n+  order: 200\n"), "{text}");
    assert!(
        text.contains("globalnetworkpolicy/security.no-smtp unchanged"),
        "{text}"
    );
    let out = ok(server.cli(&["apply", "-f", p(&changed_file)]));
    assert!(out.contains("tier/security configured\n"), "{out}");
    assert_eq!(out.matches(" configured").count(), 1, "{out}");

    // Short names and tables with wide columns.
    let t = ok(server.cli(&["get", "gnp", "-o", "wide"]));
    assert!(t.starts_with("NAME"), "{t}");
    let row = t
        .lines()
        .find(|l| l.starts_with("security.no-smtp"))
        .expect("a row");
    let cells: Vec<&str> = row
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[..4],
        ["security.no-smtp", "security", "10", "app == 'web'"],
        "{t}"
    );
    assert_eq!(cells[5..8], ["Egress", "0", "1"], "{t}");
    let t = ok(server.cli(&["get", "knp", "-n", "shop"]));
    assert!(t.contains("db-ingress   app=db"), "{t}");
    let t = ok(server.cli(&["get", "pods", "-A", "-l", "app == 'db'"]));
    assert!(t.contains("shop        db-0"), "{t}");
    let o = server.cli(&["get", "pods", "-n", "shop", "-l", "app == 'nothing'"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("No resources found in shop namespace."));
    let json = ok(server.cli(&["get", "netset", "partners", "-n", "shop", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["spec"]["nets"][0], "192.0.2.0/24");

    // describe: the policy selects the workload endpoint; the endpoint names the policy.
    let text = ok(server.cli(&["describe", "gnp", "security.no-smtp"]));
    assert!(text.contains("Tier:           security"), "{text}");
    assert!(text.contains("Selects:        1 endpoint now"), "{text}");
    assert!(
        text.contains("Egress rules:\n  1. Deny TCP to ports 25"),
        "{text}"
    );
    let text = ok(server.cli(&["describe", "wep", "n1-k8s-web-eth0", "-n", "shop"]));
    assert!(text.contains("app=web"), "{text}");
    assert!(text.contains("gnp:security.no-smtp"), "{text}");
    assert!(text.contains("np:shop/allow-web"), "{text}");

    // delete -f removes everything (policies before their tier); then nothing is found.
    let out = ok(server.cli(&["delete", "-f", p(&file)]));
    assert_eq!(out.matches(" deleted").count(), all.len(), "{out}");
    assert_eq!(out.lines().last(), Some("namespace/shop deleted"), "{out}");
    for r in &all {
        let mut args: Vec<String> = vec!["get".into(), cli_kind(r.kind()), r.meta().name.clone()];
        args.extend(ns_args(r));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = server.cli(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        assert!(stderr(&o).contains("NotFound"), "{}", stderr(&o));
    }
    let o = server.cli(&["delete", "gnp", "security.no-smtp"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        ok(server.cli(&["delete", "gnp", "security.no-smtp", "--ignore-not-found"])).is_empty()
    );
}

#[test]
fn a_bad_file_applies_nothing() {
    let server = ServerProc::start();
    let dir = server.data.path().join("bad");
    server.file(
        "bad/a-good.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: fine}\nspec: {selector: all()}\n",
    );
    server.file(
        "bad/b-mixed.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: ok-tier}\nspec: {order: 5}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\nspec:\n  selector: app ==\n  ingress: [{action: Allow}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: typo}\nspec: {selectr: all()}\n",
    );
    let o = server.cli(&["apply", "-f", p(&dir)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(stdout(&o).is_empty(), "nothing applied: {}", stdout(&o));
    assert!(
        err.contains("b-mixed.yaml: document 2 (line 10): spec.selector"),
        "{err}"
    );
    assert!(err.contains("b-mixed.yaml: document 3"), "{err}");
    assert!(err.contains("selectr"), "{err}");
    assert!(
        err.contains("nothing was sent to the server: 2 errors"),
        "{err}"
    );
    for kind in ["gnp", "tier"] {
        let t = server.cli(&["get", kind]);
        assert!(t.status.success());
        assert!(stdout(&t).is_empty(), "{}", stdout(&t));
    }
    // The same object twice is refused as well.
    let twice = server.file(
        "twice.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y}}\n",
    );
    let o = server.cli(&["apply", "-f", p(&twice)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("defined twice"), "{}", stderr(&o));
    assert!(stdout(&server.cli(&["get", "ns"])).is_empty());
}

#[test]
fn apply_warns_of_fields_that_are_accepted_but_not_enforced() {
    let server = ServerProc::start();
    let file = server.file(
        "gateway.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: gateway}\nspec:\n  selector: has(gateway)\n  ingress: [{action: Allow, protocol: TCP, http: {methods: [GET]}, source: {nets: [198.18.0.0/16]}}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: plain}\nspec:\n  selector: has(gateway)\n  applyOnForward: true\n  ingress: [{action: Allow}]\n",
    );
    let o = server.cli(&["apply", "-f", p(&file)]);
    let out = ok(o.clone());
    assert!(out.contains("globalnetworkpolicy/gateway created"), "{out}");
    let err = stderr(&o);
    assert_eq!(
        err.lines().count(),
        1,
        "one warning, for gateway only: {err}"
    );
    assert!(
        err.starts_with("Warning: globalnetworkpolicy/gateway (")
            && err.contains("gateway.yaml: document 1")
            && err.contains("spec.ingress[0].http: HTTP matches are not enforced"),
        "{err}"
    );
}

#[test]
fn login_saves_the_server_and_errors_come_from_status() {
    let server = ServerProc::start();
    let config = server.data.path().join("home/.config/bulkhead/config");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_remove("BULKHEAD_SERVER")
            .env_remove("BULKHEAD_TOKEN")
            .env_remove("BULKHEAD_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", server.data.path().join("home"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    };
    // Without configuration the error says what to do.
    let o = run(&["get", "gnp"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bulkhead login"), "{}", stderr(&o));
    // A wrong token is refused and nothing is saved.
    let o = run(&["login", "--server", &server.url, "--token", "wrong"], &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Unauthorized"), "{}", stderr(&o));
    assert!(!config.exists());
    // The right one is saved with mode 0600, and later commands use it.
    let o = run(
        &["login", "--server", &server.url, "--token", &server.token],
        &[],
    );
    assert!(ok(o).contains("logged in to"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(run(&["get", "gnp"], &[]).status.success());
    // Environment over file: a bad token in the environment wins and fails.
    let o = run(&["get", "gnp"], &[("BULKHEAD_TOKEN", "bad")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    // Flag over environment.
    let o = run(
        &["get", "gnp", "--token", &server.token],
        &[("BULKHEAD_TOKEN", "bad")],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // The server's validation errors come back with their field causes. (Sent with PUT by
    // a client directly: the CLI never sends what the loader refuses.)
    let body = r#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"x"},"spec":{"selector":"app =="}}"#;
    let status = put_raw(
        &server,
        "/apis/projectcalico.org/v3/globalnetworkpolicies/x",
        body,
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    assert!(
        status
            .causes()
            .iter()
            .any(|c| c.field.as_deref() == Some("spec.selector")),
        "{status:?}"
    );
}

/// PUTs a body the loader would refuse, through the client's error decoding.
fn put_raw(server: &ServerProc, path: &str, body: &str) -> bulkhead_client::Status {
    // The typed client only sends valid resources; talk HTTP by hand for this one check.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.token,
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let code: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    // Chunked or not, the JSON object is between the first '{' and the last '}'.
    let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
    bulkhead_client::Status::from_response(code, json)
}

/// Polls until `want` holds for the source's state, or panics.
fn wait_state(
    source: &mut ServerSource,
    last: &mut Option<Vec<Resource>>,
    what: &str,
    want: impl Fn(&[Resource]) -> bool,
) {
    let start = Instant::now();
    loop {
        if let Some(r) = source.poll() {
            // The source hands over changes; fold them into the state they lead to.
            let mut held: BTreeMap<ResourceKey, Resource> = last
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.key(), r))
                .collect();
            for u in r.expect("the server's objects load") {
                match u {
                    Update::Upsert(r) => held.insert(r.key(), r),
                    Update::Delete(k) => held.remove(&k),
                };
            }
            *last = Some(held.into_values().collect());
        }
        if last.as_deref().is_some_and(&want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; last state: {:?}",
            last.as_ref()
                .map(|v| v.iter().map(|r| r.key().to_string()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn names(state: &[Resource]) -> BTreeMap<String, String> {
    state
        .iter()
        .map(|r| {
            (
                r.key().to_string(),
                r.meta().resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn server_source_lists_watches_resumes_and_keeps_state_while_away() {
    let mut server = ServerProc::start();
    let mut source = ServerSource::new(server.client());
    let mut state = None;
    wait_state(&mut source, &mut state, "the first (empty) list", |s| {
        s.is_empty()
    });
    assert!(source.synced());

    let gnp = |name: &str, selector: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec: {{selector: \"{selector}\"}}\n"
        )
    };
    ok(server.cli_stdin(&["apply", "-f", "-"], Some(&gnp("a", "has(x)"))));
    ok(server.cli_stdin(
        &["apply", "-f", "-"],
        Some(&EVERY_KIND.replace("security.no-smtp", "security.b")),
    ));
    // Every kind's documents, and `a`.
    let every = resources(EVERY_KIND).len() + 1;
    wait_state(&mut source, &mut state, "a and every kind", |s| {
        s.len() == every && s.iter().any(|r| r.meta().name == "security.b")
    });
    // Changes, deletions.
    ok(server.cli_stdin(&["apply", "-f", "-"], Some(&gnp("a", "has(y)"))));
    ok(server.cli(&["delete", "gnp", "security.b"]));
    wait_state(&mut source, &mut state, "a modified and b deleted", |s| {
        s.len() == every - 1
            && s.iter()
                .any(|r| r.meta().name == "a" && r.to_document()["spec"]["selector"] == "has(y)")
    });

    // The server goes away: nothing changes, the last state stays.
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        source.poll().is_none(),
        "no change while the server is away"
    );

    // It comes back (same data): changes made since are picked up by resuming.
    server.spawn();
    ok(server.cli_stdin(&["apply", "-f", "-"], Some(&gnp("c", "all()"))));
    ok(server.cli(&["delete", "gnp", "a"]));
    wait_state(
        &mut source,
        &mut state,
        "c added and a deleted after the restart",
        |s| s.iter().any(|r| r.meta().name == "c") && !s.iter().any(|r| r.meta().name == "a"),
    );
    // The local copy is exactly the server's, object for object and revision for revision.
    let (listed, _) = server.client().list_all().expect("list");
    assert_eq!(names(state.as_deref().expect("state")), names(&listed));
}

#[test]
fn an_agent_with_server_enforces_a_policy_applied_after_it_started() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = Command::new("nft").arg("--version").output().is_ok()
        && Command::new("ping").arg("-V").output().is_ok();
    if !root || !tools {
        eprintln!("skipped: needs root, nft and ping");
        return;
    }
    let server = ServerProc::start();
    let pid = std::process::id();
    let node = format!("bh-cp-{pid}");
    let res = TempDir::new("workloads");
    let state = TempDir::new("agent-state");
    let mut cleanup = NetCleanup {
        netns: vec![
            node.clone(),
            format!("{node}-shop-a"),
            format!("{node}-shop-b"),
        ],
        agent: None,
    };
    ok(Command::new(bin())
        .args(["node", "add", &node])
        .output()
        .expect("runs"));
    for (name, ip) in [("a", "10.66.9.1"), ("b", "10.66.9.2")] {
        ok(Command::new(bin())
            .args([
                "workload",
                "add",
                &format!("shop/{name}"),
                "--node",
                &node,
                "--node-name",
                "n1",
                "--ip",
                ip,
                "--label",
                &format!("app={name}"),
                "--dir",
                p(res.path()),
            ])
            .output()
            .expect("runs"));
    }
    // The workloads' registrations go to the server, not to the agent.
    let mut args = vec!["apply".to_string()];
    for entry in std::fs::read_dir(res.path()).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("wep-") && name.ends_with(".yaml") {
            args.extend(["-f".to_string(), p(&entry.path()).to_string()]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(server.cli(&args));
    assert_eq!(out.matches(" created").count(), 2, "{out}");

    let agent = Command::new(bin())
        .args([
            "agent",
            "--node",
            "n1",
            "--netns",
            &node,
            "--server",
            &server.url,
            "--token",
            &server.token,
            "--state-dir",
            p(state.path()),
            "--poll-ms",
            "50",
        ])
        .env_remove("BULKHEAD_FROM_DIR")
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    cleanup.agent = Some(agent);
    let a_ns = format!("{node}-shop-a");
    wait_for("the agent to program both workloads", || {
        Command::new("ip")
            .args([
                "netns", "exec", &node, "nft", "list", "map", "inet", "bulkhead", "wl_from",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).matches("goto").count() == 2)
    });
    assert!(ping(&a_ns, "10.66.9.2"), "open without policy");

    // The agent publishes its node's addresses, and follows a new one.
    let node_addresses = || {
        let out = server.cli(&["get", "node", "n1", "-o", "yaml"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("the agent to publish its node", || {
        node_addresses().contains("kind: Node")
    });
    assert!(
        !node_addresses().contains("10.66.9."),
        "no workload address"
    );
    let added = Command::new("ip")
        .args(["-n", &node, "address", "add", "10.66.200.1/32", "dev", "lo"])
        .status()
        .expect("ip runs");
    assert!(added.success());
    wait_for("the new address to be published", || {
        node_addresses().contains("address: \"10.66.200.1\"")
    });

    let policy = server.file(
        "isolate-b.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate-b}\nspec: {selector: app == 'b', types: [Ingress]}\n",
    );
    assert_eq!(
        ok(server.cli(&["apply", "-f", p(&policy)])),
        "globalnetworkpolicy/isolate-b created\n"
    );
    wait_for("the policy to be enforced", || !ping(&a_ns, "10.66.9.2"));
    ok(server.cli(&["delete", "-f", p(&policy)]));
    wait_for("the policy's removal to be enforced", || {
        ping(&a_ns, "10.66.9.2")
    });

    if let Some(mut a) = cleanup.agent.take() {
        let _ = a.kill();
        let _ = a.wait();
    }
    for name in ["a", "b"] {
        let id = format!("shop/{name}");
        ok(Command::new(bin())
            .args([
                "workload",
                "del",
                &id,
                "--node",
                &node,
                "--dir",
                p(res.path()),
            ])
            .output()
            .expect("runs"));
    }
    ok(Command::new(bin())
        .args(["node", "del", &node])
        .output()
        .expect("runs"));
    drop(cleanup);
}

/// Removes the test's namespaces and stops the agent on drop.
struct NetCleanup {
    netns: Vec<String>,
    agent: Option<Child>,
}

impl Drop for NetCleanup {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        common::delete_leftover_netns(&self.netns);
    }
}

fn ping(from: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", from, "ping", "-c1", "-W1", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A TCP relay to a server that can cut every connection and refuse new ones: the
/// network between an agent and the server failing, not a fake server.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to(upstream: std::net::SocketAddr) -> Relay {
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, o) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut held = o.lock().expect("lock");
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        held.push(s);
                    }
                }
                drop(held);
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Breaks every open connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// The server in this process, with a history short enough to expire in a test (the
/// `bulkhead server` command keeps 10 000 revisions). It runs until the test process ends.
fn short_history_server(data: &Path, retention: u64) -> (String, String) {
    use bulkhead_server::{ServerConfig, StoreConfig};
    use bulkhead_store::EmbeddedOptions;
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), data);
    config.store = StoreConfig::Embedded(EmbeddedOptions {
        retention,
        ..EmbeddedOptions::default()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = bulkhead_server::run_blocking(config, |s| {
            let _ = tx.send((s.url(), s.admin_token_path()));
        });
        if let Err(e) = result {
            eprintln!("in-process server: {e}");
        }
    });
    let (url, token_path) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server starts");
    let token = std::fs::read_to_string(token_path).expect("admin token");
    (url, token.trim().to_string())
}

#[test]
fn server_source_lists_again_when_its_revision_expired() {
    let data = TempDir::new("short-history");
    let (url, token) = short_history_server(&data.path().join("data"), 10);
    let direct = Client::new(&url, Some(&token)).expect("client");
    let relay = Relay::to(url.trim_start_matches("http://").parse().expect("addr"));
    let mut source = ServerSource::new(Client::new(&relay.url(), Some(&token)).expect("client"));

    let gnp = |name: &str, label: usize| {
        resources(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}, labels: {{n: '{label}'}}}}\nspec: {{selector: all()}}\n"
        ))
        .remove(0)
    };
    direct.replace(&gnp("a", 0)).expect("put a");
    let mut state = None;
    wait_state(&mut source, &mut state, "a", |s| s.len() == 1);

    // Cut off, the agent falls further behind than the server's history goes.
    relay.cut();
    direct
        .delete(Kind::GlobalNetworkPolicy, None, "a")
        .expect("delete a");
    for i in 0..30 {
        direct.replace(&gnp("churn", i)).expect("put churn");
    }
    direct.replace(&gnp("b", 0)).expect("put b");
    std::thread::sleep(Duration::from_millis(300));
    assert!(source.poll().is_none(), "nothing while cut off");

    relay.restore();
    wait_state(&mut source, &mut state, "the relisted state", |s| {
        let n: Vec<&str> = s.iter().map(|r| r.meta().name.as_str()).collect();
        n == ["b", "churn"]
    });
    let churn = state
        .as_deref()
        .expect("state")
        .iter()
        .find(|r| r.meta().name == "churn")
        .expect("churn");
    assert_eq!(churn.meta().labels["n"], "29", "the last version");
    let (listed, _) = direct.list_all().expect("list");
    assert_eq!(names(state.as_deref().expect("state")), names(&listed));
}

const READ_ONLY_AGENT: &str = "agent-token-0123456789abcdef";

#[test]
fn a_node_publisher_writes_only_what_differs_and_asks_once_if_refused() {
    let server = ServerProc::start();
    std::fs::write(
        server.data.path().join("data").join("rbac.yaml"),
        format!(
            "users: [{{name: agent-n1, token: {READ_ONLY_AGENT}, groups: [agents]}}]\n\
             roles: [{{name: agent, rules: [{{verbs: [get, list, watch], kinds: [\"*\"]}}]}}]\n\
             bindings: [{{role: agent, groups: [agents]}}]\n"
        ),
    )
    .expect("rbac.yaml");
    let agent = Client::new(&server.url, Some(READ_ONLY_AGENT)).expect("client");
    wait_for("the server to take rbac.yaml", || agent.whoami().is_ok());

    // The node's addresses are read from this namespace (read only).
    let mut refused = NodePublisher::new(agent, "n1", None, "cali");
    let error = refused
        .publish()
        .expect_err("a read-only token may not write");
    assert!(
        error.contains("cannot create Node") && error.contains("not tried again"),
        "{error}"
    );
    assert_eq!(refused.publish(), Ok(false), "not asked again");
    let denied = ok(server.cli(&[
        "audit", "list", "--type", "denied", "--kind", "Node", "-o", "json",
    ]));
    assert_eq!(denied.lines().count(), 1, "{denied}");

    let publisher = || NodePublisher::new(server.client(), "n1", None, "cali");
    let mut allowed = publisher();
    assert_eq!(allowed.publish(), Ok(true));
    assert_eq!(allowed.publish(), Ok(false), "nothing changed");
    assert!(ok(server.cli(&["get", "node", "n1"])).contains("n1"));
    // A restarted agent finds its Node as it would write it, and leaves it; a deleted
    // one comes back.
    assert_eq!(publisher().publish(), Ok(false));
    ok(server.cli(&["delete", "node", "n1"]));
    assert_eq!(publisher().publish(), Ok(true));
    assert!(ok(server.cli(&["get", "node", "n1"])).contains("n1"));
}
