//! Authentication: bearer tokens. The admin token lives in `<data-dir>/admin.token` (created
//! at first start, mode 0600); every other token comes from `<data-dir>/rbac.yaml`, which is
//! re-read when it changes. A request either carries a known token and gets a [`Caller`] in
//! its extensions, or is answered 401 (and audited) before any handler runs.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use crate::ServerError;
use crate::audit::AuditEntry;
use crate::error::ApiError;
use crate::rbac::{self, Identity, Rbac, Verb};
use crate::server::AppState;
use crate::util::{hex, random_bytes, sha256_hex};

/// The admin token's file name in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The RBAC file's name in the data directory.
pub const RBAC_FILE: &str = "rbac.yaml";

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// The policy in force when the request arrived (a reload does not change a request
    /// halfway).
    rbac: Arc<Rbac>,
    index: Option<usize>,
}

impl Caller {
    /// True when some rule covers the request.
    pub fn allows(&self, request: &rbac::Request<'_>) -> bool {
        self.identity.admin
            || self
                .index
                .is_some_and(|i| rbac::allows(self.rbac.rules(i), request))
    }

    /// True when the caller may `verb` some objects of `kind` (lists are then filtered).
    pub fn allows_some(&self, verb: Verb, kind: &str) -> bool {
        self.identity.admin
            || self
                .index
                .is_some_and(|i| rbac::allows_some(self.rbac.rules(i), verb, kind))
    }

    /// The RBAC policy in force.
    pub fn rbac(&self) -> &Rbac {
        &self.rbac
    }

    /// The 403 for `request`, naming the rule that would be needed.
    pub fn forbidden(&self, request: &rbac::Request<'_>) -> ApiError {
        let groups = if self.identity.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups {})", self.identity.groups.join(", "))
        };
        let mut what = format!("{} {}", request.verb, request.kind);
        if let Some(name) = request.name {
            what.push_str(&format!(" {name:?}"));
        }
        if let Some(ns) = request.namespace {
            what.push_str(&format!(" in namespace {ns:?}"));
        }
        if let Some(tier) = request.tier {
            what.push_str(&format!(" in tier {tier:?}"));
        }
        ApiError::forbidden(format!(
            "user {:?}{groups} cannot {what}: no bound rule covers it; it needs a rule {request}",
            self.identity.name
        ))
    }
}

/// Tokens and roles, shared by every request.
#[derive(Debug)]
pub struct Authenticator {
    admin_digest: String,
    rbac: RwLock<Arc<Rbac>>,
    rbac_path: PathBuf,
    rbac_text: RwLock<Option<Vec<u8>>>,
}

impl Authenticator {
    /// Loads (creating if needed) the admin token and loads `rbac.yaml` (absent: no other
    /// users). A malformed `rbac.yaml` stops the start.
    pub fn open(data_dir: &Path) -> Result<Authenticator, ServerError> {
        let admin = ensure_admin_token(&data_dir.join(ADMIN_TOKEN_FILE))?;
        let rbac_path = data_dir.join(RBAC_FILE);
        let text = read_optional(&rbac_path)?;
        let rbac = parse_rbac(&rbac_path, text.as_deref())?;
        Ok(Authenticator {
            admin_digest: sha256_hex(admin.as_bytes()),
            rbac: RwLock::new(Arc::new(rbac)),
            rbac_path,
            rbac_text: RwLock::new(text),
        })
    }

    /// The current RBAC policy.
    pub fn rbac(&self) -> Arc<Rbac> {
        Arc::clone(&self.rbac.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The caller holding `token`.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let rbac = self.rbac();
        if sha256_hex(token.as_bytes()) == self.admin_digest {
            return Some(Caller {
                identity: Identity {
                    name: "admin".into(),
                    groups: vec!["system:masters".into()],
                    admin: true,
                },
                rbac,
                index: None,
            });
        }
        let (index, identity) = rbac.authenticate(token)?;
        let identity = identity.clone();
        Some(Caller {
            identity,
            rbac,
            index: Some(index),
        })
    }

    /// Re-reads `rbac.yaml` if its content changed. A file that does not parse is logged and
    /// the previous policy stays in force; a removed file means no users but the admin.
    pub fn reload(&self) {
        let text = match read_optional(&self.rbac_path) {
            Ok(text) => text,
            Err(e) => {
                warn!(error = %e, "cannot read rbac.yaml; keeping the current policy");
                return;
            }
        };
        if *self.rbac_text.read().unwrap_or_else(|e| e.into_inner()) == text {
            return;
        }
        match parse_rbac(&self.rbac_path, text.as_deref()) {
            Ok(rbac) => {
                info!(path = %self.rbac_path.display(), users = rbac.user_count(), "rbac.yaml reloaded");
                *self.rbac.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rbac);
            }
            Err(e) => warn!(error = %e, "rbac.yaml is invalid; keeping the current policy"),
        }
        *self.rbac_text.write().unwrap_or_else(|e| e.into_inner()) = text;
    }

    /// Reloads `rbac.yaml` every `interval` until the process ends.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { break };
                // Small file, but still file I/O: keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        });
    }
}

fn parse_rbac(path: &Path, text: Option<&[u8]>) -> Result<Rbac, ServerError> {
    let text = text.map(String::from_utf8_lossy).unwrap_or_default();
    Rbac::parse(&text).map_err(|message| ServerError::Rbac {
        path: path.to_path_buf(),
        message,
    })
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ServerError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(path, e)),
    }
}

/// Reads the admin token, creating it (32 random bytes as hex, mode 0600) if absent.
fn ensure_admin_token(path: &Path) -> Result<String, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 32 {
                return Err(ServerError::io(
                    path,
                    std::io::Error::other("admin token is shorter than 32 characters"),
                ));
            }
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                warn!(path = %path.display(), "admin token is readable by group or others: chmod 600");
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = hex(&random_bytes::<32>().map_err(|e| ServerError::io("/dev/urandom", e))?);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| ServerError::io(path, e))?;
            writeln!(file, "{token}")
                .and_then(|()| file.sync_all())
                .map_err(|e| ServerError::io(path, e))?;
            info!(path = %path.display(), "admin token created");
            Ok(token)
        }
        Err(e) => Err(ServerError::io(path, e)),
    }
}

/// The bearer token of a request, if it has a well-formed `Authorization` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: authenticates every request it wraps, or answers 401 and audits the attempt.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = bearer(&request).and_then(|t| state.auth.authenticate(t));
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            let message = if bearer(&request).is_some() {
                "the bearer token is not valid"
            } else {
                "a bearer token is required (Authorization: Bearer <token>)"
            };
            let error = ApiError::unauthorized(message);
            let entry = AuditEntry::denied(
                "",
                request.method().as_str(),
                request.uri().path(),
                &error,
                crate::server::request_id(&request),
            );
            if let Err(e) = state.audit.append(vec![entry]).await {
                warn!(error = %e, "cannot audit a rejected request");
            }
            error.into_response()
        }
    }
}
