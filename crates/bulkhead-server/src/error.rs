//! Errors: [`ApiError`] is what a request can fail with, and is itself the response (a
//! Kubernetes `Status`); [`ServerError`] is what starting the server can fail with.

use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Field path, e.g. `spec.selector`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A failed request, rendered as a Kubernetes `Status` (see `docs/api.md`, Errors).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// Status reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details.kind` and `details.name`, when the error is about one object (boxed: most
    /// errors have none, and every `Result` carries the size of this one).
    pub subject: Option<Box<(String, String)>>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// The methods the path supports, sent as `Allow` with a 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            subject: None,
            causes: Vec::new(),
            allow: None,
        }
    }

    /// 400 `BadRequest`: malformed body, wrong kind for the path, bad query.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 405 `MethodNotAllowed`; `allow` lists the methods the path does support.
    pub fn method_not_allowed(message: impl Into<String>, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
        }
    }

    /// 409 `AlreadyExists`.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "AlreadyExists", message)
    }

    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 410 `Expired`.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 413 `RequestEntityTooLarge`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    /// 422 `Invalid`, with the field causes.
    pub fn invalid(kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {}", summary.join("; ")),
            subject: Some(Box::new((kind.to_string(), name.to_string()))),
            causes,
            allow: None,
        }
    }

    /// 500 `InternalError`. The message is logged; the client sees it too (the server has no
    /// secrets in its store errors).
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// 503 `ServiceUnavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// Sets `details.kind` and `details.name`.
    pub fn about(mut self, kind: &str, name: &str) -> Self {
        self.subject = Some(Box::new((kind.to_string(), name.to_string())));
        self
    }

    /// The `Status` document.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "code": self.code.as_u16(),
            "reason": self.reason,
            "message": self.message,
        });
        if self.subject.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some((kind, name)) = self.subject.as_deref() {
                details.insert("kind".into(), kind.clone().into());
                details.insert("name".into(), name.clone().into());
            }
            if !self.causes.is_empty() {
                let causes = self
                    .causes
                    .iter()
                    .map(|c| json!({"field": c.field, "message": c.message}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.status().to_string();
        let mut response = (self.code, [(CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<bulkhead_store::StoreError> for ApiError {
    fn from(e: bulkhead_store::StoreError) -> Self {
        match e {
            bulkhead_store::StoreError::Compacted { oldest } => ApiError::expired(format!(
                "too old resource version: the oldest that can be watched from is {oldest}"
            )),
            e @ bulkhead_store::StoreError::FutureRevision { .. } => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::unavailable(format!("datastore: {other}")),
        }
    }
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory or a file in it cannot be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The datastore cannot be opened.
    #[error("datastore: {0}")]
    Store(#[from] bulkhead_store::StoreError),
    /// `rbac.yaml` is not valid.
    #[error("{path}: {message}")]
    Rbac {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The audit log cannot be opened or continued.
    #[error("audit log: {0}")]
    Audit(String),
    /// A startup task failed (a panicked blocking task, an encoding that cannot fail).
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}
