//! Errors: the server's Kubernetes `Status`, decoded, and everything that can go wrong
//! before or after it.

use std::fmt;

use bulkhead_api::{LoadErrors, ResourceKey};
use serde::{Deserialize, Serialize};

/// A Kubernetes `Status` object: what the server says when a request fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Failure` (or `Success`).
    #[serde(default)]
    pub status: String,
    /// The HTTP status code.
    #[serde(default)]
    pub code: u16,
    /// Machine-readable reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`,
    /// `Expired`, `Forbidden`, `Unauthorized`, `BadRequest`, `RequestEntityTooLarge`.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The object concerned and the field-level causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

/// `Status.details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Kind of the object concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the object concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One entry per problem, with its field path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One cause of a failure: a field path and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    /// The field path (`spec.ingress[0].source.selector`), when the cause is a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// Machine-readable reason of the cause, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Status {
    /// A status for a response that carried no `Status` body (a proxy's error page, an
    /// empty body): the code, the standard reason for it, and the body as the message.
    pub fn from_code(code: u16, body: &str) -> Status {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        let body = body.trim();
        Status {
            status: "Failure".into(),
            code,
            reason: reason.into(),
            message: if body.is_empty() {
                format!("HTTP {code} {reason}")
            } else {
                body.chars().take(500).collect()
            },
            details: None,
        }
    }

    /// Decodes a failed response's body: a `Status` if it is one, else [`Status::from_code`].
    pub fn from_response(code: u16, body: &str) -> Status {
        match serde_json::from_str::<Status>(body) {
            Ok(mut s) if !s.reason.is_empty() || !s.message.is_empty() => {
                if s.code == 0 {
                    s.code = code;
                }
                s
            }
            _ => Status::from_code(code, body),
        }
    }

    /// The field-level causes (empty if none).
    pub fn causes(&self) -> &[StatusCause] {
        self.details.as_ref().map_or(&[], |d| d.causes.as_slice())
    }
}

impl fmt::Display for Status {
    /// The message, then one line per cause that the message does not already state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)?;
        for cause in self.causes() {
            let line = match &cause.field {
                Some(field) => format!("{field}: {}", cause.message),
                None => cause.message.clone(),
            };
            if !self.message.contains(&line) {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error `Status` (boxed: errors stay small).
    #[error("{0}")]
    Api(Box<Status>),
    /// The server could not be reached, or the connection broke.
    #[error("{url}: {message}")]
    Transport {
        /// The request's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server's answer is not what the API contract says.
    #[error("{url}: unexpected response: {message}")]
    Protocol {
        /// The request's URL.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// An object from the server does not load with this client's resource types
    /// (version skew, or a server bug). In a watch stream it does not end the stream.
    #[error("{key}: the server's object does not load: {errors}")]
    Invalid {
        /// The object's identity, as far as its metadata tells.
        key: ResourceKey,
        /// Its `metadata.resourceVersion`, if any.
        revision: Option<u64>,
        /// True if it came in a `DELETED` event (the object is gone either way).
        deleted: bool,
        /// Why it does not load.
        errors: LoadErrors,
    },
    /// No usable configuration (no server, unreadable config file, bad URL).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The server's `Status`, if the server answered with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Api(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// The HTTP code of the server's answer, if it answered with an error.
    pub fn code(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }

    /// True for a 404 `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True for a 410 `Expired` (a watch from a revision the server no longer keeps).
    pub fn is_expired(&self) -> bool {
        self.code() == Some(410)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_contract_example() {
        let body = r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
 "reason": "Invalid", "message": "GlobalNetworkPolicy \"x\" is invalid: spec.selector: …",
 "details": {"kind": "GlobalNetworkPolicy", "name": "x",
             "causes": [{"field": "spec.selector", "message": "col 5: expected =="}]}}"#;
        let s = Status::from_response(422, body);
        assert_eq!(s.reason, "Invalid");
        assert_eq!(s.code, 422);
        assert_eq!(s.causes().len(), 1);
        assert_eq!(s.causes()[0].field.as_deref(), Some("spec.selector"));
        let shown = s.to_string();
        assert!(
            shown.contains("spec.selector: col 5: expected =="),
            "{shown}"
        );
    }

    #[test]
    fn non_status_bodies_become_a_status() {
        let s = Status::from_response(502, "<html>bad gateway</html>");
        assert_eq!(s.code, 502);
        assert_eq!(s.message, "<html>bad gateway</html>");
        let s = Status::from_response(404, "");
        assert_eq!(s.reason, "NotFound");
        let s = Status::from_response(
            409,
            r#"{"kind":"Status","reason":"AlreadyExists","message":"exists"}"#,
        );
        assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    }
}
