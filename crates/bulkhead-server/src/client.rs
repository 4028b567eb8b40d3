//! A minimal blocking HTTP/1.1 client for plain `http://` servers: one connection per
//! request, chunked and length-delimited bodies, watch streams as an iterator of events.
//!
//! It exists for the server's own tests and benchmarks, the `bulkhead server` kill test and
//! `bulkhead audit list`, which need raw control over requests (malformed bodies, odd
//! content types). Applications use `bulkhead-client`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://host:port`.
    #[error("unsupported server URL {0:?}: expected http://host:port")]
    Url(String),
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server's answer is not HTTP/1.1 as expected.
    #[error("bad response: {0}")]
    Protocol(String),
    /// The server answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The body (a Kubernetes `Status`).
        body: String,
    },
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Protocol(format!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    authority: String,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client for `url` (`http://host:port`), sending `token` as a bearer token.
    pub fn new(url: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_string()))?
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(ClientError::Url(url.to_string()));
        }
        Ok(Client {
            authority: authority.to_string(),
            token: token.map(str::to_string),
            timeout: Duration::from_secs(60),
        })
    }

    /// The same client with another token (`None`: none).
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        read_timeout: Option<Duration>,
    ) -> Result<BufReader<TcpStream>, ClientError> {
        let stream = TcpStream::connect(&self.authority)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(read_timeout)?;
        stream.set_write_timeout(Some(self.timeout))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.authority,
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        let mut writer = &stream;
        writer.write_all(head.as_bytes())?;
        // A server that refuses a large body may close before reading it all; its answer
        // is still worth reading.
        let _ = writer.write_all(body);
        let _ = writer.flush();
        Ok(BufReader::new(stream))
    }

    /// Sends a request and reads the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let mut reader = self.send(method, path, content_type, body, Some(self.timeout))?;
        let (status, headers) = read_head(&mut reader)?;
        let mut body = Vec::new();
        body_reader(reader, &headers)?.read_to_end(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// GET.
    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, None, b"")
    }

    /// A JSON body with `method`.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Response, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.request(method, path, Some("application/json"), &bytes)
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request("DELETE", path, None, b"")
    }

    /// Opens a watch (`path` includes `?watch=1…`). Non-200 answers are errors.
    pub fn watch(
        &self,
        path: &str,
        idle_timeout: Option<Duration>,
    ) -> Result<WatchEvents, ClientError> {
        let mut reader = self.send("GET", path, None, b"", idle_timeout)?;
        let (status, headers) = read_head(&mut reader)?;
        let mut body = body_reader(reader, &headers)?;
        if status != 200 {
            let mut text = String::new();
            let _ = body.read_to_string(&mut text);
            return Err(ClientError::Status { status, body: text });
        }
        Ok(WatchEvents {
            lines: BufReader::new(body),
        })
    }
}

/// The events of a watch, one JSON value per line.
pub struct WatchEvents {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Iterator for WatchEvents {
    type Item = Result<Value, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.lines.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return Some(serde_json::from_str(&line).map_err(|e| {
                        ClientError::Protocol(format!("watch event is not JSON ({e}): {line}"))
                    }));
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> Result<(u16, Vec<(String, String)>), ClientError> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(ClientError::Protocol(
            "connection closed before a response".into(),
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn body_reader(
    reader: BufReader<TcpStream>,
    headers: &[(String, String)],
) -> Result<Box<dyn Read + Send>, ClientError> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(Box::new(Chunked {
            inner: reader,
            remaining: 0,
            done: false,
        }));
    }
    match header("content-length") {
        Some(n) => {
            let n: u64 = n
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad Content-Length {n:?}")))?;
            Ok(Box::new(reader.take(n)))
        }
        None => Ok(Box::new(reader)),
    }
}

/// Decodes `Transfer-Encoding: chunked`.
struct Chunked<R> {
    inner: R,
    remaining: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    if self.inner.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
            self.remaining = size;
        }
        let want = buf.len().min(self.remaining);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n;
        if self.remaining == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}
