//! `/metrics` and `/healthz` over plain HTTP/1.1: two read-only endpoints need no framework.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// Serves the endpoints on `listener` until the process ends (one thread per connection,
/// short timeouts).
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    for stream in listener.incoming().flatten() {
        let metrics = Arc::clone(&metrics);
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &metrics) {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

/// Binds `addr` and serves in a background thread; returns the bound address.
pub fn spawn(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("agent-http".into())
        .spawn(move || serve(listener, metrics))?;
    Ok(bound)
}

fn handle(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body, kind) = match path {
        "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
        "/healthz" if metrics.is_healthy() => ("200 OK", "ok\n".to_string(), "text/plain"),
        "/healthz" => (
            "503 Service Unavailable",
            "the last change could not be programmed\n".to_string(),
            "text/plain",
        ),
        _ => (
            "404 Not Found",
            "try /metrics or /healthz\n".to_string(),
            "text/plain",
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
