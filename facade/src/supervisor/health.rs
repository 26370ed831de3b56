//! The health probe: `GET http://127.0.0.1:PORT<path>` until a 2xx, as omac.yaml says.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{self, HeaderValue};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One probe; Ok carries the status code (2xx or not), Err why no answer came.
pub(crate) async fn probe(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let attempt = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, format!("127.0.0.1:{port}"))
            .header(header::CONNECTION, HeaderValue::from_static("close"))
            .header(header::USER_AGENT, HeaderValue::from_static("omac-health"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("health path {path:?}: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"));
        driver.abort();
        Ok(resp?.status().as_u16())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "GET {path}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}
