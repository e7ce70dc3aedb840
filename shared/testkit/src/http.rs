//! A bare HTTP/1.1 GET for the services' health and metrics endpoints, so tests need no
//! HTTP client crate.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `127.0.0.1:port`; the whole response (status line, headers, body), or the
/// connection error as text (a service not listening yet is a normal state in a test).
pub async fn http_get(port: u16, path: &str) -> String {
    let mut stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(e) => return format!("connection failed: {e}"),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return format!("request failed: {e}");
    }
    let mut response = String::new();
    match stream.read_to_string(&mut response).await {
        Ok(_) => response,
        Err(e) => format!("response failed: {e}"),
    }
}
