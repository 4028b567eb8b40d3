//! Assembly: configuration, shared state, the router with its layers, start and shutdown.
//!
//! Layers, outermost first: request id → metrics → (API routes only) authentication →
//! handler. Authorization, validation, the store write and the audit append happen in the
//! handler, in that order, because they need the resource (its namespace and tier) and the
//! store's answer.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bulkhead_store::{
    AnyStore, EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Store, WatchEvent,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::audit::{self, AuditLog, Query};
use crate::auth::{self, Authenticator, Caller};
use crate::error::{ApiError, ServerError};
use crate::kinds::{KindInfo, REGISTRY_ROOT};
use crate::metrics::{self, Metrics, VerbLabel};
use crate::rbac::{self, Verb};
use crate::util::{hex, parse_rfc3339, random_bytes};

/// Which datastore backs the server.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded store in `<data-dir>/store`.
    Embedded(EmbeddedOptions),
    /// etcd.
    Etcd(EtcdOptions),
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (plain HTTP).
    pub listen: SocketAddr,
    /// Data directory: `admin.token`, `rbac.yaml`, `audit.log`, `audit.head`, and the
    /// embedded store in `store/`.
    pub data_dir: PathBuf,
    /// The datastore.
    pub store: StoreConfig,
    /// Largest request body; larger ones get 413. Default 1 MiB.
    pub body_limit: usize,
    /// Bookmark period of watches that ask for bookmarks. Default 10 s.
    pub bookmark_interval: Duration,
    /// How often `rbac.yaml` is checked for changes. Default 2 s.
    pub rbac_reload_interval: Duration,
}

impl ServerConfig {
    /// Defaults for `data_dir`, listening on `listen`, with the embedded store.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            store: StoreConfig::Embedded(EmbeddedOptions::default()),
            body_limit: 1 << 20,
            bookmark_interval: Duration::from_secs(10),
            rbac_reload_interval: Duration::from_secs(2),
        }
    }
}

/// State shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The datastore.
    pub store: AnyStore,
    /// Tokens and roles.
    pub auth: Arc<Authenticator>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Configuration.
    pub config: Arc<ServerConfig>,
    /// Becomes `true` at shutdown (ends watches).
    pub shutdown: watch::Receiver<bool>,
    ids: Arc<RequestIds>,
    openapi: Arc<Vec<u8>>,
}

/// Request ids: a random per-process prefix and a counter.
struct RequestIds {
    boot: String,
    next: AtomicU64,
}

/// The id of one request, in its extensions (and its `X-Request-Id` response header).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The request id of `request` (empty if the id layer did not run).
pub fn request_id(request: &Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

async fn assign_request_id(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let n = state.ids.next.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n:08x}", state.ids.boot);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    counter: tokio::task::JoinHandle<()>,
    state: AppState,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Server {
    /// Opens the data directory and the store, binds, and serves in the background.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        prepare_data_dir(&config.data_dir)?;
        let store: AnyStore = match &config.store {
            StoreConfig::Embedded(options) => {
                let dir = config.data_dir.join("store");
                let options = options.clone();
                tokio::task::spawn_blocking(move || EmbeddedStore::open(dir, options))
                    .await
                    .map_err(|e| ServerError::Internal(format!("store open task: {e}")))??
                    .into()
            }
            StoreConfig::Etcd(options) => EtcdStore::connect(options.clone()).await?.into(),
        };
        Self::start_with_store(config, store).await
    }

    /// Like [`Server::start`], on a store opened by the caller.
    pub async fn start_with_store(
        config: ServerConfig,
        store: AnyStore,
    ) -> Result<Server, ServerError> {
        prepare_data_dir(&config.data_dir)?;
        let auth = Arc::new(Authenticator::open(&config.data_dir)?);
        auth.spawn_reloader(config.rbac_reload_interval);
        let audit = Arc::new(AuditLog::open(&config.data_dir)?);
        if let AnyStore::Embedded(_) = &store {
            let protected = auth.rbac().protected_tiers.clone();
            if let Err(e) = crate::recover::recover(&store, &audit, &protected).await {
                warn!(error = %e, "audit recovery failed; changes in flight at the last crash may be unaudited");
            }
        }
        let metrics = Arc::new(Metrics::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let boot = hex(&random_bytes::<4>().map_err(|e| ServerError::io("/dev/urandom", e))?);
        let openapi = serde_json::to_vec(&crate::openapi::document())
            .map_err(|e| ServerError::Internal(format!("openapi: {e}")))?;
        let state = AppState {
            store,
            auth,
            audit,
            metrics,
            config: Arc::new(config),
            shutdown: shutdown_rx.clone(),
            ids: Arc::new(RequestIds {
                boot,
                next: AtomicU64::new(1),
            }),
            openapi: Arc::new(openapi),
        };
        let counter = tokio::spawn(count_objects(state.clone()));
        let app = router(state.clone());
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        info!(%addr, data_dir = %state.config.data_dir.display(), "bulkhead server listening");
        Ok(Server {
            addr,
            data_dir: state.config.data_dir.clone(),
            shutdown,
            task,
            counter,
            state,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the admin token is.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join(auth::ADMIN_TOKEN_FILE)
    }

    /// The audit log's path.
    pub fn audit_log_path(&self) -> PathBuf {
        self.state.audit.path().to_path_buf()
    }

    /// Stops accepting requests, ends the watches, and waits for open requests to finish.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        // The object counter holds a store handle: wait for it, so that the store is closed
        // (and can be opened again) soon after this returns.
        let _ = self.counter.await;
        match self.task.await {
            Ok(result) => result.map_err(|e| ServerError::io(&self.data_dir, e)),
            Err(e) => Err(ServerError::Internal(format!("server task: {e}"))),
        }
    }
}

/// Creates the data directory (mode 0700).
fn prepare_data_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| ServerError::io(dir, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ServerError::io(dir, e))?;
    }
    Ok(())
}

/// Runs a server on its own runtime until SIGINT or SIGTERM; `ready` is called once it
/// listens. For the `bulkhead server` command.
pub fn run_blocking(config: ServerConfig, ready: impl FnOnce(&Server)) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bulkhead-server")
        .build()
        .map_err(|e| ServerError::io(&config.data_dir, e))?;
    runtime.block_on(async move {
        let server = Server::start(config).await?;
        ready(&server);
        wait_for_signal().await;
        info!("shutting down");
        server.shutdown().await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The router with every layer.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/{*rest}", any(resource_entry))
        .route("/apis/{*rest}", any(resource_entry))
        .route("/bulkhead/v1/audit", get(audit_list))
        .route("/bulkhead/v1/whoami", get(whoami))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi));
    Router::new()
        .merge(api)
        .merge(public)
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), assign_request_id))
        .with_state(state)
}

async fn resource_entry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    crate::handlers::resource(state, caller, request_id, method, uri, headers, body).await
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("the server could not find {}", uri.path())).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(2), state.store.current_revision()).await;
    let audit_ok = !state.audit.stats.failing.load(Ordering::Relaxed);
    match store {
        Ok(Ok(_)) if audit_ok => (StatusCode::OK, "ok\n").into_response(),
        Ok(Ok(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log cannot be written\n",
        )
            .into_response(),
        Ok(Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("datastore: {e}\n")).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "datastore: no answer in 2 s\n",
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.audit.stats);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi.as_ref().clone(),
    )
        .into_response()
}

async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    let body = json!({
        "kind": "WhoAmI",
        "apiVersion": "bulkhead/v1",
        "user": caller.identity.name,
        "groups": caller.identity.groups,
        "admin": caller.identity.admin,
    });
    ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn audit_list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    uri: Uri,
) -> Response {
    let mut response = match audit_query(&state, &caller, request_id, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(VerbLabel("list"));
    response
}

async fn audit_query(
    state: &AppState,
    caller: &Caller,
    request_id: RequestId,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let request = rbac::Request {
        verb: Verb::List,
        kind: rbac::AUDIT_KIND,
        namespace: None,
        tier: None,
        name: None,
    };
    if !caller.allows(&request) {
        let error = caller.forbidden(&request);
        let entry = audit::AuditEntry::denied(
            &caller.identity.name,
            "list",
            rbac::AUDIT_KIND,
            &error,
            request_id.0,
        );
        if let Err(e) = state.audit.append(vec![entry]).await {
            warn!(error = %e, "cannot audit a denied request");
        }
        return Err(error);
    }
    let params = crate::handlers::query_pairs(uri)?;
    let mut q = Query {
        limit: 1000,
        ..Query::default()
    };
    for (k, v) in params {
        match k.as_str() {
            "since" => {
                q.since = Some(parse_rfc3339(&v).ok_or_else(|| {
                    ApiError::bad_request(format!("since {v:?} is not an RFC 3339 time"))
                })?)
            }
            "user" => q.user = Some(v),
            "kind" => q.kind = Some(v),
            "tier" => q.tier = Some(v),
            "type" => q.record_type = Some(v),
            "limit" => {
                q.limit = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("limit {v:?} is not a number")))?
            }
            _ => {}
        }
    }
    let path = state.audit.path().to_path_buf();
    let (items, more) = tokio::task::spawn_blocking(move || audit::query(&path, &q))
        .await
        .map_err(|e| ApiError::internal(format!("audit query task: {e}")))?
        .map_err(|e| ApiError::internal(format!("reading the audit log: {e}")))?;
    let mut metadata = json!({});
    if more > 0 {
        metadata["remainingItemCount"] = Value::from(more);
    }
    let body = json!({
        "kind": "AuditRecordList",
        "apiVersion": "bulkhead/v1",
        "metadata": metadata,
        "items": items,
    });
    Ok(([(CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

/// Keeps `bulkhead_server_stored_objects` current: lists the registry once, then follows its
/// changes (a new key counts one up, a delete one down). Relists if the watch fails.
async fn count_objects(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let listed = state.store.list(REGISTRY_ROOT).await;
        let (items, revision) = match listed {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "object count: cannot list the store; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        {
            let mut counts = state
                .metrics
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            counts.clear();
            for kind in bulkhead_api::Kind::ALL {
                counts.insert(kind.display_name(), 0);
            }
            for kv in &items {
                if let Some((info, _, _)) = KindInfo::parse_key(&kv.key) {
                    *counts.entry(info.kind.display_name()).or_default() += 1;
                }
            }
        }
        drop(items);
        state.metrics.revision.store(revision, Ordering::Relaxed);
        let mut stream = match state.store.watch(REGISTRY_ROOT, revision).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "object count: cannot watch the store; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = shutdown.changed() => return,
            };
            let Some(Ok(event)) = event else { break };
            state
                .metrics
                .revision
                .store(event.revision(), Ordering::Relaxed);
            let delta = match &event {
                WatchEvent::Put(kv) if kv.create_revision == kv.mod_revision => 1,
                WatchEvent::Put(_) => 0,
                WatchEvent::Delete { .. } => -1,
            };
            if delta != 0
                && let Some((info, _, _)) = KindInfo::parse_key(event.key())
            {
                *state
                    .metrics
                    .objects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(info.kind.display_name())
                    .or_default() += delta;
            }
        }
    }
}
