//! The crate's error type.

use std::io;
use std::process::ExitStatus;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building or driving a topology.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A helper command (`ip`, `sysctl`, …) ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for humans.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A helper command could not be started (missing binary, no permission).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line, for humans.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `nft` rejected a script; nothing of it was applied (one transaction).
    #[error("nft rejected the script in namespace {netns} ({status}): {stderr}")]
    Nft {
        /// The namespace the script was meant for.
        netns: String,
        /// How `nft` exited.
        status: ExitStatus,
        /// `nft`'s standard error: the parser or kernel message with its location.
        stderr: String,
    },
    /// Opening or entering (`setns`) a namespace failed.
    #[error("could not enter network namespace {netns}: {source}")]
    Enter {
        /// The namespace.
        netns: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Something this machine must provide is missing (a tool, a privilege).
    #[error("{what}: {reason}")]
    Unmet {
        /// What is needed.
        what: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An argument was rejected before anything was changed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (a name, an address, …).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Any other I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
