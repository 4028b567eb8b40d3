//! The client: one server, one token, typed calls.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use bulkhead_api::{Kind, LoadErrors, Resource, ResourceKey};
use serde_json::Value;

use crate::config::{Config, normalize_server};
use crate::decode::{decode_list, decode_object, encode, key_of, revision_of};
use crate::error::{Error, Status};
use crate::paths::{collection_path, object_path, segment};

/// Largest response body read (lists of many objects can be large).
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// A list: the objects and the revision it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    /// The objects that loaded, in the server's order.
    pub items: Vec<Resource>,
    /// Objects the server returned that do not load with this client's types.
    pub invalid: Vec<(ResourceKey, LoadErrors)>,
    /// The list's `metadata.resourceVersion`: watch from here to miss nothing.
    pub revision: u64,
}

/// One event of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// An object was created.
    Added(Resource),
    /// An object changed (the new state).
    Modified(Resource),
    /// An object was deleted (its last state).
    Deleted(Resource),
    /// Nothing changed up to this revision; resume from it.
    Bookmark(u64),
}

impl WatchEvent {
    /// The revision the event brings the client to (`None` if the object has none).
    pub fn revision(&self) -> Option<u64> {
        match self {
            WatchEvent::Added(r) | WatchEvent::Modified(r) | WatchEvent::Deleted(r) => r
                .meta()
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
            WatchEvent::Bookmark(rev) => Some(*rev),
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A blocking client of one Bulkhead server.
#[derive(Clone)]
pub struct Client {
    server: String,
    token: Option<String>,
    agent: ureq::Agent,
    watch_agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client of `server` (`http://host:port`), authenticating with `token` if given.
    pub fn new(server: &str, token: Option<&str>) -> Result<Client, Error> {
        Client::with_watch_timeout(server, token, Duration::from_secs(30))
    }

    /// As [`Client::new`], with the longest silence tolerated on a watch stream before it
    /// counts as broken (the server sends a bookmark at least every 10 s).
    pub fn with_watch_timeout(
        server: &str,
        token: Option<&str>,
        watch_timeout: Duration,
    ) -> Result<Client, Error> {
        let server = normalize_server(server)?;
        if server.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(Error::Config(format!(
                "{server}: this build has no TLS support (build bulkhead-client with the `tls` feature)"
            )));
        }
        let base = || {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(10)))
                .user_agent(concat!("bulkhead/", env!("CARGO_PKG_VERSION")))
        };
        let agent = base()
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let watch_agent = base()
            .timeout_per_read(Some(watch_timeout))
            .build()
            .new_agent();
        Ok(Client {
            server,
            token: token.filter(|t| !t.is_empty()).map(str::to_string),
            agent,
            watch_agent,
        })
    }

    /// A client from resolved configuration.
    pub fn from_config(config: &Config) -> Result<Client, Error> {
        Client::new(&config.server, config.token.as_deref())
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Gets one object. Namespaced kinds without a namespace are looked up in `default`.
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Result<Resource, Error> {
        let path = object_path(kind, namespace, name);
        let (url, body) = self.exchange(Method::Get, &path, None)?;
        decode_object(kind, parse_json(&url, &body)?, &url)
    }

    /// Lists a kind. For namespaced kinds, `namespace: None` lists every namespace.
    /// `label_selector` is a Calico selector (`app == 'web' && has(tier)`).
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<List, Error> {
        let mut path = collection_path(kind, namespace);
        if let Some(sel) = label_selector.filter(|s| !s.trim().is_empty()) {
            path.push_str("?labelSelector=");
            path.push_str(&segment(sel));
        }
        let (url, body) = self.exchange(Method::Get, &path, None)?;
        decode_list(kind, &body, &url)
    }

    /// Lists every kind, one list per kind, with the revision of each.
    pub fn list_each(&self) -> Result<Vec<(Kind, List)>, Error> {
        Kind::ALL
            .into_iter()
            .map(|k| self.list(k, None, None).map(|l| (k, l)))
            .collect()
    }

    /// Lists every kind. The revision is the oldest of the lists': watching from it misses
    /// nothing (it may repeat changes the lists already hold; applying events as upserts
    /// absorbs them). Objects that do not load are errors.
    pub fn list_all(&self) -> Result<(Vec<Resource>, u64), Error> {
        let mut all = Vec::new();
        let mut revision = u64::MAX;
        for (_, list) in self.list_each()? {
            if let Some((key, errors)) = list.invalid.into_iter().next() {
                return Err(Error::Invalid {
                    key,
                    revision: None,
                    deleted: false,
                    errors,
                });
            }
            revision = revision.min(list.revision);
            all.extend(list.items);
        }
        Ok((all, if revision == u64::MAX { 0 } else { revision }))
    }

    /// Creates an object (POST); 409 `AlreadyExists` if it exists.
    pub fn create(&self, resource: &Resource) -> Result<Resource, Error> {
        let kind = resource.kind();
        let path = collection_path(kind, Some(namespace_of(resource)));
        let (url, body) = self.exchange(Method::Post, &path, Some(encode(resource)))?;
        decode_object(kind, parse_json(&url, &body)?, &url)
    }

    /// Replaces an object, or creates it if absent (PUT). Returns the stored object and
    /// whether it was created. 409 `Conflict` if the object carries a stale
    /// `metadata.resourceVersion`.
    pub fn replace(&self, resource: &Resource) -> Result<(Resource, bool), Error> {
        let kind = resource.kind();
        let path = object_path(kind, Some(namespace_of(resource)), &resource.meta().name);
        let (url, code, body) = self.exchange_code(Method::Put, &path, Some(encode(resource)))?;
        Ok((
            decode_object(kind, parse_json(&url, &body)?, &url)?,
            code == 201,
        ))
    }

    /// Applies a JSON merge patch to an object; 404 if it is absent.
    pub fn patch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        merge_patch: &Value,
    ) -> Result<Resource, Error> {
        let path = object_path(kind, namespace, name);
        let body = merge_patch.to_string().into_bytes();
        let (url, body) = self.exchange(Method::Patch, &path, Some(body))?;
        decode_object(kind, parse_json(&url, &body)?, &url)
    }

    /// Deletes an object; returns its last state. 404 if it is absent.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Resource, Error> {
        let path = object_path(kind, namespace, name);
        let (url, body) = self.exchange(Method::Delete, &path, None)?;
        let value = parse_json(&url, &body)?;
        // A server may answer a delete with a Success Status instead of the object.
        if value.get("kind").and_then(Value::as_str) == Some("Status") {
            return Err(Error::Protocol {
                url,
                message: "expected the deleted object, got a Status".into(),
            });
        }
        decode_object(kind, value, &url)
    }

    /// Who the server thinks the token belongs to (`/bulkhead/v1/whoami`).
    pub fn whoami(&self) -> Result<Value, Error> {
        let (url, body) = self.exchange(Method::Get, "/bulkhead/v1/whoami", None)?;
        parse_json(&url, &body)
    }

    /// Watches a kind (every namespace) for changes after `from_revision`, with bookmarks.
    /// The iterator ends when the server closes the stream; a broken connection or a
    /// silent server yields one `Error::Transport` and then ends; a revision the server no
    /// longer keeps yields `Error::Api` with code 410 (list again). Objects that do not
    /// load yield `Error::Invalid` and the stream goes on.
    pub fn watch(&self, kind: Kind, from_revision: u64) -> Result<Watch, Error> {
        let path = format!(
            "{}?watch=1&resourceVersion={from_revision}&allowWatchBookmarks=true",
            collection_path(kind, None)
        );
        let url = format!("{}{}", self.server, path);
        let mut response = self
            .authed(self.watch_agent.get(&url))
            .call()
            .map_err(|e| transport(&url, e))?;
        let code = response.status().as_u16();
        if code >= 400 {
            let body = read_body(&url, response.body_mut())?;
            return Err(Error::Api(Box::new(Status::from_response(code, &body))));
        }
        Ok(Watch {
            kind,
            url,
            revision: from_revision,
            reader: Some(BufReader::new(response.into_body().into_reader())),
        })
    }

    /// Adds the `Accept` and `Authorization` headers.
    fn authed<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let request = request.header("Accept", "application/json");
        match &self.token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, String), Error> {
        let (url, _, body) = self.exchange_code(method, path, body)?;
        Ok((url, body))
    }

    /// Sends a request; a 4xx/5xx answer becomes `Error::Api` with the decoded Status.
    fn exchange_code(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, u16, String), Error> {
        let url = format!("{}{}", self.server, path);
        let body = body.unwrap_or_default();
        let result = match method {
            Method::Get => self.authed(self.agent.get(&url)).call(),
            Method::Delete => self.authed(self.agent.delete(&url)).call(),
            Method::Post => self
                .authed(self.agent.post(&url))
                .content_type("application/json")
                .send(&body[..]),
            Method::Put => self
                .authed(self.agent.put(&url))
                .content_type("application/json")
                .send(&body[..]),
            Method::Patch => self
                .authed(self.agent.patch(&url))
                .content_type("application/merge-patch+json")
                .send(&body[..]),
        };
        let mut response = result.map_err(|e| transport(&url, e))?;
        let code = response.status().as_u16();
        let text = read_body(&url, response.body_mut())?;
        if code >= 400 {
            return Err(Error::Api(Box::new(Status::from_response(code, &text))));
        }
        Ok((url, code, text))
    }
}

/// A namespaced resource's namespace (`default` if unset); ignored for other kinds.
fn namespace_of(resource: &Resource) -> &str {
    resource.meta().namespace.as_deref().unwrap_or("default")
}

fn transport(url: &str, e: ureq::Error) -> Error {
    Error::Transport {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn read_body(url: &str, body: &mut ureq::Body) -> Result<String, Error> {
    body.with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| transport(url, e))
}

fn parse_json(url: &str, body: &str) -> Result<Value, Error> {
    serde_json::from_str(body).map_err(|e| Error::Protocol {
        url: url.to_string(),
        message: format!("not JSON: {e}"),
    })
}

/// A watch stream: an iterator of events in revision order.
pub struct Watch {
    kind: Kind,
    url: String,
    revision: u64,
    reader: Option<BufReader<ureq::BodyReader<'static>>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("revision", &self.revision)
            .finish()
    }
}

impl Watch {
    /// The kind watched.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The last revision seen (from an event or a bookmark; the starting revision before
    /// any): reconnect from here to miss nothing and see nothing twice.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn seen(&mut self, revision: Option<u64>) {
        if let Some(r) = revision {
            self.revision = self.revision.max(r);
        }
    }

    fn event(&mut self, line: &str) -> Result<WatchEvent, Error> {
        let protocol = |message: String| Error::Protocol {
            url: self.url.clone(),
            message,
        };
        let value: Value =
            serde_json::from_str(line).map_err(|e| protocol(format!("event is not JSON: {e}")))?;
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let object = value.get("object").cloned().unwrap_or(Value::Null);
        let revision = revision_of(&object);
        let typed = |object: Value, deleted: bool| match decode_object(self.kind, object, &self.url)
        {
            Err(Error::Invalid {
                key,
                revision,
                errors,
                ..
            }) => Err(Error::Invalid {
                key,
                revision,
                deleted,
                errors,
            }),
            other => other,
        };
        let event = match kind {
            "ADDED" => typed(object, false).map(WatchEvent::Added),
            "MODIFIED" => typed(object, false).map(WatchEvent::Modified),
            "DELETED" => match typed(object.clone(), true) {
                Ok(r) => Ok(WatchEvent::Deleted(r)),
                // The object's identity is all a deletion needs.
                Err(Error::Protocol { .. }) => Err(Error::Invalid {
                    key: key_of(self.kind, &object),
                    revision,
                    deleted: true,
                    errors: LoadErrors(Vec::new()),
                }),
                Err(e) => Err(e),
            },
            "BOOKMARK" => revision
                .map(WatchEvent::Bookmark)
                .ok_or_else(|| protocol("bookmark without metadata.resourceVersion".into())),
            "ERROR" => {
                let code = object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                self.reader = None;
                return Err(Error::Api(Box::new(Status::from_response(
                    code,
                    &object.to_string(),
                ))));
            }
            other => Err(protocol(format!("unknown event type {other:?}"))),
        };
        self.seen(revision);
        event
    }
}

impl Iterator for Watch {
    type Item = Result<WatchEvent, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let reader = self.reader.as_mut()?;
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => {
                    self.reader = None;
                    return None;
                }
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => return Some(self.event(line.trim())),
                Err(e) => {
                    self.reader = None;
                    return Some(Err(Error::Transport {
                        url: self.url.clone(),
                        message: format!("watch stream broke: {e}"),
                    }));
                }
            }
        }
    }
}
