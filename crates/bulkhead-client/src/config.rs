//! Which server to talk to and with which token: flags, then `BULKHEAD_SERVER` /
//! `BULKHEAD_TOKEN`, then the config file that `bulkhead login` writes
//! (`~/.config/bulkhead/config`, mode 0600).
//!
//! Each setting is taken from the first place that has it, with one exception that keeps
//! tokens from leaking: the file's token is used only with the file's server. If the
//! server comes from a flag or the environment and differs from the file's, the file's
//! token is not sent to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Environment variable naming the server.
pub const ENV_SERVER: &str = "BULKHEAD_SERVER";
/// Environment variable holding the token.
pub const ENV_TOKEN: &str = "BULKHEAD_TOKEN";
/// Environment variable overriding the config file's path.
pub const ENV_CONFIG: &str = "BULKHEAD_CONFIG";

/// The config file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server URL (`http://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The config file.
    File,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server URL.
    pub server: String,
    /// Where the server came from.
    pub server_from: Origin,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Where the token came from.
    pub token_from: Option<Origin>,
}

impl Config {
    /// Resolves the settings from the flags, the process environment and the config file.
    pub fn resolve(flag_server: Option<&str>, flag_token: Option<&str>) -> Result<Config, Error> {
        let file = match config_path() {
            Some(path) => load_file(&path)?,
            None => None,
        };
        Config::resolve_from(
            flag_server,
            flag_token,
            |name| std::env::var(name).ok(),
            file.as_ref(),
        )
    }

    /// Resolves from explicit sources: flags, an environment lookup, the file's contents.
    /// Empty values count as absent.
    pub fn resolve_from(
        flag_server: Option<&str>,
        flag_token: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        file: Option<&FileConfig>,
    ) -> Result<Config, Error> {
        let present = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let file_server = present(file.and_then(|f| f.server.clone()));
        let (server, server_from) = if let Some(s) = present(flag_server.map(str::to_string)) {
            (s, Origin::Flag)
        } else if let Some(s) = present(env(ENV_SERVER)) {
            (s, Origin::Env)
        } else if let Some(s) = file_server.clone() {
            (s, Origin::File)
        } else {
            return Err(Error::Config(format!(
                "no server: pass --server URL, set {ENV_SERVER}, or run `bulkhead login --server URL --token TOKEN`"
            )));
        };
        let server = normalize_server(&server)?;
        let same_server = file_server
            .as_deref()
            .and_then(|s| normalize_server(s).ok())
            .is_some_and(|s| s == server);
        let (token, token_from) = if let Some(t) = present(flag_token.map(str::to_string)) {
            (Some(t), Some(Origin::Flag))
        } else if let Some(t) = present(env(ENV_TOKEN)) {
            (Some(t), Some(Origin::Env))
        } else if let Some(t) = present(file.and_then(|f| f.token.clone())).filter(|_| same_server)
        {
            (Some(t), Some(Origin::File))
        } else {
            (None, None)
        };
        Ok(Config {
            server,
            server_from,
            token,
            token_from,
        })
    }
}

/// Checks a server URL and drops a trailing `/`.
pub fn normalize_server(server: &str) -> Result<String, Error> {
    let s = server.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('/') => Ok(s.to_string()),
        Some(_) => Err(Error::Config(format!(
            "server {server:?}: expected http://HOST:PORT or https://HOST:PORT, without a path"
        ))),
        None => Err(Error::Config(format!(
            "server {server:?}: expected a URL starting with http:// or https://"
        ))),
    }
}

/// The config file's path: `$BULKHEAD_CONFIG`, else `$XDG_CONFIG_HOME/bulkhead/config`,
/// else `$HOME/.config/bulkhead/config`.
pub fn config_path() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = env(ENV_CONFIG) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("bulkhead").join("config"));
    }
    env("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("bulkhead")
            .join("config")
    })
}

/// Reads the config file; `Ok(None)` if it does not exist.
pub fn load_file(path: &Path) -> Result<Option<FileConfig>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Config(format!("{}: {e}", path.display()))),
    };
    if text.trim().is_empty() {
        return Ok(Some(FileConfig::default()));
    }
    bulkhead_api::yaml::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.without_snippet())))
}

/// Writes the config file with mode 0600 (its directory 0700 if created), replacing it
/// atomically.
pub fn save_file(path: &Path, config: &FileConfig) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    let text = serde_saphyr::to_string(config)
        .map_err(|e| Error::Config(format!("cannot write the config: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_private(&tmp, text.as_bytes()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn file(server: &str, token: &str) -> FileConfig {
        FileConfig {
            server: Some(server.into()),
            token: Some(token.into()),
        }
    }

    #[test]
    fn flags_win_over_env_over_file() {
        let f = file("http://file:1", "file-token");
        let e = env(&[(ENV_SERVER, "http://env:2"), (ENV_TOKEN, "env-token")]);
        let c = Config::resolve_from(Some("http://flag:3/"), Some("flag-token"), &e, Some(&f))
            .expect("resolves");
        assert_eq!(c.server, "http://flag:3");
        assert_eq!(c.token.as_deref(), Some("flag-token"));
        assert_eq!(
            (c.server_from, c.token_from),
            (Origin::Flag, Some(Origin::Flag))
        );

        let c = Config::resolve_from(None, None, &e, Some(&f)).expect("resolves");
        assert_eq!(c.server, "http://env:2");
        assert_eq!(c.token.as_deref(), Some("env-token"));
        assert_eq!(
            (c.server_from, c.token_from),
            (Origin::Env, Some(Origin::Env))
        );

        let c = Config::resolve_from(None, None, env(&[]), Some(&f)).expect("resolves");
        assert_eq!(c.server, "http://file:1");
        assert_eq!(c.token.as_deref(), Some("file-token"));
        assert_eq!(
            (c.server_from, c.token_from),
            (Origin::File, Some(Origin::File))
        );

        // Mixed: server from a flag, token from the environment.
        let c = Config::resolve_from(
            Some("http://flag:3"),
            None,
            env(&[(ENV_TOKEN, "env-token")]),
            None,
        )
        .expect("resolves");
        assert_eq!(c.token.as_deref(), Some("env-token"));
        // Empty values are absent.
        let c = Config::resolve_from(Some(""), Some(""), env(&[(ENV_SERVER, "")]), Some(&f))
            .expect("resolves");
        assert_eq!(c.server, "http://file:1");
    }

    #[test]
    fn the_file_token_goes_only_to_the_file_server() {
        let f = file("http://file:1/", "file-token");
        let c = Config::resolve_from(Some("http://other:9"), None, env(&[]), Some(&f))
            .expect("resolves");
        assert_eq!(c.token, None);
        let c = Config::resolve_from(Some("http://file:1"), None, env(&[]), Some(&f))
            .expect("resolves");
        assert_eq!(c.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn no_server_is_an_error_that_says_what_to_do() {
        let e = Config::resolve_from(None, Some("t"), env(&[]), None).expect_err("no server");
        assert!(e.to_string().contains("bulkhead login"), "{e}");
        let e = Config::resolve_from(Some("example.com:80"), None, env(&[]), None)
            .expect_err("not a URL");
        assert!(e.to_string().contains("http://"), "{e}");
        assert!(Config::resolve_from(Some("http://h:1/api"), None, env(&[]), None).is_err());
    }

    #[test]
    fn the_file_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("bulkhead-client-cfg-{}", std::process::id()));
        let path = dir.join("sub").join("config");
        let f = file("http://127.0.0.1:8080", "s3cret");
        save_file(&path, &f).expect("saves");
        assert_eq!(load_file(&path).expect("loads"), Some(f));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(path.parent().expect("dir"))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert_eq!(load_file(&dir.join("absent")).expect("ok"), None);
        std::fs::write(&path, "server: http://x:1\nbogus: 1\n").expect("write");
        assert!(load_file(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
