//! `bulkhead login`, and how every server command finds its server and token.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bulkhead_client::config::{self, ENV_SERVER, ENV_TOKEN, FileConfig};
use bulkhead_client::{Client, Config};

/// `--server` and `--token`, shared by every command that talks to the server.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Server URL (default: $BULKHEAD_SERVER, then the config file written by `bulkhead
    /// login`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token (default: $BULKHEAD_TOKEN, then the config file; the file's token
    /// is only sent to the file's server).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

impl ServerArgs {
    /// A client for the resolved server and token.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let config = Config::resolve(self.server.as_deref(), self.token.as_deref())?;
        Ok(Client::from_config(&config)?)
    }
}

/// Arguments of `bulkhead login`.
#[derive(clap::Args)]
#[command(
    after_help = "Checks the server and token with /bulkhead/v1/whoami, then writes them to\n\
~/.config/bulkhead/config (mode 0600; $BULKHEAD_CONFIG or $XDG_CONFIG_HOME move it).\n\
Later commands use them unless --server/--token or BULKHEAD_SERVER/BULKHEAD_TOKEN say\n\
otherwise. `--token -` reads the token from standard input (keeps it out of `ps`).\n\n\
Example:\n  bulkhead login --server http://127.0.0.1:8443 --token \"$(cat /var/lib/bulkhead/server/admin.token)\""
)]
pub struct Args {
    /// Server URL (default: $BULKHEAD_SERVER).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Bearer token, or `-` to read it from standard input (default: $BULKHEAD_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// Checks the credentials and saves them.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = match args.token.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            Some(line.trim().to_string())
        }
        other => other.map(str::to_string),
    };
    // Flags, then the environment; never the old file (logging in replaces it).
    let config = Config::resolve_from(
        args.server.as_deref(),
        token.as_deref(),
        |name| std::env::var(name).ok(),
        None,
    )
    .with_context(|| format!("login needs --server URL (or {ENV_SERVER})"))?;
    let Some(token) = config.token.clone() else {
        bail!("login needs --token TOKEN (or {ENV_TOKEN})");
    };
    let client = Client::from_config(&config)?;
    let who = client
        .whoami()
        .with_context(|| format!("checking the token with {}", config.server))?;
    let path = config::config_path().context("no config path: set HOME or BULKHEAD_CONFIG")?;
    config::save_file(
        &path,
        &FileConfig {
            server: Some(config.server.clone()),
            token: Some(token),
        },
    )?;
    println!(
        "logged in to {} as {}; saved to {}",
        config.server,
        identity(&who),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The user's name in a whoami answer (`user`, `name` or `username`, possibly nested
/// under `user`), with groups if given; else the answer itself.
fn identity(who: &serde_json::Value) -> String {
    let name = ["user", "name", "username"]
        .iter()
        .find_map(|k| match who.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(obj @ serde_json::Value::Object(_)) => obj
                .get("name")
                .or_else(|| obj.get("username"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
            _ => None,
        });
    let groups: Vec<&str> = who
        .get("groups")
        .or_else(|| who.get("user").and_then(|u| u.get("groups")))
        .and_then(|g| g.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    match name {
        Some(n) if groups.is_empty() => n,
        Some(n) => format!("{n} (groups: {})", groups.join(", ")),
        None => who.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::identity;
    use serde_json::json;

    #[test]
    fn identity_reads_common_whoami_shapes() {
        assert_eq!(identity(&json!({"user": "admin"})), "admin");
        assert_eq!(
            identity(&json!({"name": "alice", "groups": ["team-dev"]})),
            "alice (groups: team-dev)"
        );
        assert_eq!(
            identity(&json!({"user": {"name": "bob", "groups": ["a", "b"]}})),
            "bob (groups: a, b)"
        );
        assert_eq!(identity(&json!({"x": 1})), r#"{"x":1}"#);
    }
}
