//! Encoding and decoding on the wire, against a scripted HTTP responder. Only what the
//! client sends and how it reads answers is checked here; the behaviour of the real
//! server is tested with the real server (`crates/bulkhead/tests/cli_control_plane.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use bulkhead_api::{Kind, load_str};

use crate::{Client, Error, WatchEvent};

/// One request as the responder saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one connection per scripted answer, in order: (status line, content type, body
/// chunks written with a flush between them). Returns the URL and the requests seen.
fn responder(script: Vec<(u16, &'static str, Vec<String>)>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (code, content_type, chunks) in script {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).expect("header");
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("body");
            let _ = tx.send(Seen {
                method,
                target,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let mut stream = stream;
            let streaming = chunks.len() > 1;
            let head = if streaming {
                format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                )
            } else {
                format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    chunks.first().map_or(0, String::len)
                )
            };
            stream.write_all(head.as_bytes()).expect("head");
            for chunk in &chunks {
                if streaming {
                    write!(stream, "{:x}\r\n{chunk}\r\n", chunk.len()).expect("chunk");
                } else {
                    stream.write_all(chunk.as_bytes()).expect("body");
                }
                stream.flush().expect("flush");
                std::thread::sleep(Duration::from_millis(20));
            }
            if streaming {
                let _ = stream.write_all(b"0\r\n\r\n");
            }
        }
    });
    (url, rx)
}

const JSON: &str = "application/json";

fn gnp(name: &str, rv: u64) -> String {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{{"name":"{name}","resourceVersion":"{rv}","uid":"u-{name}","creationTimestamp":"2026-01-02T03:04:05Z"}},"spec":{{"selector":"app == 'web'","types":["Ingress"]}}}}"#
    )
}

fn next(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(5)).expect("a request")
}

#[test]
fn crud_requests_and_answers() {
    let list = format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicyList","metadata":{{"resourceVersion":"17"}},"items":[{},{}]}}"#,
        gnp("a", 3),
        gnp("b", 9)
    );
    let (url, rx) = responder(vec![
        (200, JSON, vec![gnp("a", 3)]),
        (200, JSON, vec![list]),
        (201, JSON, vec![gnp("c", 18)]),
        (201, JSON, vec![gnp("c", 18)]),
        (200, JSON, vec![gnp("c", 19)]),
        (200, JSON, vec![gnp("c", 20)]),
        (200, JSON, vec![gnp("c", 20)]),
    ]);
    let client = Client::new(&url, Some("tok")).expect("client");

    let a = client
        .get(Kind::GlobalNetworkPolicy, None, "a")
        .expect("get");
    assert_eq!(a.meta().name, "a");
    let seen = next(&rx);
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/apis/projectcalico.org/v3/globalnetworkpolicies/a")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer tok"));

    let l = client
        .list(
            Kind::GlobalNetworkPolicy,
            None,
            Some("app == 'web' && has(x)"),
        )
        .expect("list");
    assert_eq!(l.revision, 17);
    assert_eq!(l.items.len(), 2);
    let seen = next(&rx);
    assert_eq!(
        seen.target,
        "/apis/projectcalico.org/v3/globalnetworkpolicies?labelSelector=app%20%3D%3D%20%27web%27%20%26%26%20has%28x%29"
    );

    let c = load_str(
        "t",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: c}\nspec: {selector: all()}\n",
    )
    .expect("loads")
    .remove(0)
    .resource;
    client.create(&c).expect("create");
    let seen = next(&rx);
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.target,
        "/apis/projectcalico.org/v3/globalnetworkpolicies"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let sent = load_str("sent", &seen.body)
        .expect("the body loads")
        .remove(0);
    assert_eq!(sent.resource, c);

    let (_, created) = client.replace(&c).expect("put");
    assert!(created, "201 means created");
    let seen = next(&rx);
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        seen.target,
        "/apis/projectcalico.org/v3/globalnetworkpolicies/c"
    );
    let (stored, created) = client.replace(&c).expect("put");
    assert!(!created, "200 means replaced");
    assert_eq!(stored.meta().resource_version.as_deref(), Some("19"));
    next(&rx);

    client
        .patch(
            Kind::GlobalNetworkPolicy,
            None,
            "c",
            &serde_json::json!({"metadata": {"labels": {"x": "1"}}}),
        )
        .expect("patch");
    let seen = next(&rx);
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.header("content-type"),
        Some("application/merge-patch+json")
    );
    assert_eq!(seen.body, r#"{"metadata":{"labels":{"x":"1"}}}"#);

    let gone = client
        .delete(Kind::GlobalNetworkPolicy, None, "c")
        .expect("delete");
    assert_eq!(gone.meta().name, "c");
    assert_eq!(next(&rx).method, "DELETE");
}

#[test]
fn namespaced_paths_and_kubernetes_list_items_without_type() {
    let list = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicyList","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"p","namespace":"shop","resourceVersion":"4"},"spec":{"podSelector":{}}}]}"#;
    let (url, rx) = responder(vec![(200, JSON, vec![list.to_string()])]);
    let client = Client::new(&url, None).expect("client");
    let l = client
        .list(Kind::KubernetesNetworkPolicy, Some("shop"), None)
        .expect("list");
    assert_eq!(l.items[0].kind(), Kind::KubernetesNetworkPolicy);
    let seen = next(&rx);
    assert_eq!(
        seen.target,
        "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"
    );
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn errors_are_decoded_from_status() {
    let invalid = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,"reason":"Invalid","message":"GlobalNetworkPolicy \"x\" is invalid","details":{"kind":"GlobalNetworkPolicy","name":"x","causes":[{"field":"spec.selector","message":"col 5: expected =="}]}}"#;
    let (url, _rx) = responder(vec![
        (422, JSON, vec![invalid.to_string()]),
        (404, "text/plain", vec!["no such thing".to_string()]),
    ]);
    let client = Client::new(&url, Some("t")).expect("client");
    let e = client
        .get(Kind::GlobalNetworkPolicy, None, "x")
        .expect_err("422");
    let status = e.status().expect("a status");
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(status.causes()[0].field.as_deref(), Some("spec.selector"));
    let e = client
        .get(Kind::GlobalNetworkPolicy, None, "y")
        .expect_err("404");
    assert!(e.is_not_found());
    assert_eq!(e.status().expect("status").message, "no such thing");

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    assert!(matches!(
        client.get(Kind::Tier, None, "x"),
        Err(Error::Transport { .. })
    ));
}

#[test]
fn watch_streams_events_bookmarks_and_expiry() {
    let bad = r#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"bad","resourceVersion":"12"},"spec":{"selector":"app =="}}"#;
    let stream = vec![
        format!("{{\"type\":\"ADDED\",\"object\":{}}}\n", gnp("a", 10)),
        format!("{{\"type\":\"MODIFIED\",\"object\":{}}}\n\n", gnp("a", 11)),
        format!("{{\"type\":\"ADDED\",\"object\":{bad}}}\n"),
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"GlobalNetworkPolicy\",\"apiVersion\":\"projectcalico.org/v3\",\"metadata\":{\"resourceVersion\":\"15\"}}}\n".to_string(),
        format!("{{\"type\":\"DELETED\",\"object\":{}}}\n", gnp("a", 16)),
    ];
    let expired = vec![
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"code\":410,\"reason\":\"Expired\",\"message\":\"too old\"}}\n".to_string(),
        String::new(),
    ];
    let (url, rx) = responder(vec![(200, JSON, stream), (200, JSON, expired)]);
    let client = Client::new(&url, Some("t")).expect("client");
    let mut watch = client.watch(Kind::GlobalNetworkPolicy, 9).expect("watch");
    let seen = next(&rx);
    assert_eq!(
        seen.target,
        "/apis/projectcalico.org/v3/globalnetworkpolicies?watch=1&resourceVersion=9&allowWatchBookmarks=true"
    );
    assert!(matches!(watch.next(), Some(Ok(WatchEvent::Added(r))) if r.meta().name == "a"));
    assert!(matches!(watch.next(), Some(Ok(WatchEvent::Modified(_)))));
    assert_eq!(watch.revision(), 11);
    match watch.next() {
        Some(Err(Error::Invalid {
            key,
            revision,
            deleted,
            ..
        })) => {
            assert_eq!(key.name, "bad");
            assert_eq!(revision, Some(12));
            assert!(!deleted);
        }
        other => panic!("expected an invalid object, got {other:?}"),
    }
    assert!(matches!(watch.next(), Some(Ok(WatchEvent::Bookmark(15)))));
    assert_eq!(watch.revision(), 15);
    assert!(matches!(watch.next(), Some(Ok(WatchEvent::Deleted(_)))));
    assert_eq!(watch.revision(), 16);
    assert!(watch.next().is_none(), "the server closed the stream");

    let mut watch = client.watch(Kind::GlobalNetworkPolicy, 1).expect("watch");
    let e = watch.next().expect("an item").expect_err("expired");
    assert!(e.is_expired(), "{e}");
    assert!(watch.next().is_none());
}

#[test]
fn a_silent_watch_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        std::thread::sleep(Duration::from_secs(3));
    });
    let client =
        Client::with_watch_timeout(&url, None, Duration::from_millis(300)).expect("client");
    let mut watch = client.watch(Kind::Tier, 0).expect("watch");
    assert!(matches!(watch.next(), Some(Err(Error::Transport { .. }))));
    assert!(watch.next().is_none());
}
