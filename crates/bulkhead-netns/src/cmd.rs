//! Running helper commands (`ip`, `sysctl`, `nft`) and collecting their output.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, feeding `input` on stdin, and returns its output whatever
/// its exit status.
pub(crate) fn output(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let command = describe(cmd);
    tracing::debug!(command = %command, "run");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let out = match (input, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => std::thread::scope(|s| {
            // Write on another thread: the child may fill its stdout/stderr pipes before it
            // has read all of its input.
            let writer = s.spawn(move || {
                // EPIPE here means the child stopped reading; its status tells why.
                let _ = pipe.write_all(input);
            });
            let out = child.wait_with_output();
            let _ = writer.join();
            out
        }),
        _ => child.wait_with_output(),
    };
    out.map_err(|source| Error::Spawn { command, source })
}

/// Like [`output`], but a non-zero exit is an [`Error::Command`].
pub(crate) fn checked(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let out = output(cmd, input)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
