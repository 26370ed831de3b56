//! Streaming through the facade: SSE frame by frame, WebSocket and other upgrades spliced
//! both ways (the sidecar's 101 checked), and the per-route idle timeout.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use omac_facade::RouteState;
use sha1::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_frames_arrive_one_by_one() {
    let h = Harness::start(Options::default()).await;
    let mut c = Client::connect(&h.socket()).await;
    let gap = Duration::from_millis(250);
    let req = Request::get("/echo/tick?n=5&gap_ms=250")
        .header("host", "omac")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut events: Vec<(Instant, String)> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("stream intact");
        if let Some(d) = frame.data_ref() {
            text.push_str(std::str::from_utf8(d).unwrap());
            while let Some(end) = text.find("\n\n") {
                let ev: String = text.drain(..end + 2).collect();
                events.push((Instant::now(), ev));
            }
        }
    }
    let names: Vec<&str> = events
        .iter()
        .map(|(_, e)| {
            e.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
        })
        .collect();
    assert_eq!(names, ["tick", "tick", "tick", "tick", "tick", "done"]);
    // The sidecar sleeps `gap` between events: delivered as they come, they arrive spread
    // out; batched, they would arrive together.
    let spread = events.last().unwrap().0 - events[0].0;
    assert!(
        spread >= gap * 5 / 2,
        "all events within {spread:?}: batched"
    );
    let spaced = events
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 >= gap / 2)
        .count();
    assert!(
        spaced >= 3,
        "only {spaced} of 5 gaps between events: frames were coalesced"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_both_ways() {
    let h = Harness::start(Options::default()).await;
    let stream = UnixStream::connect(h.socket()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://omac/echo/ws", stream)
        .await
        .expect("WebSocket handshake through the facade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello through the facade"))
        .await
        .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"p1")))
        .await
        .unwrap();
    for i in 0..20 {
        ws.send(Message::text(format!("burst {i}"))).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 23 {
        match ws.next().await.expect("message").expect("frame") {
            Message::Text(t) => got.push(format!("text:{t}")),
            Message::Binary(b) => {
                assert_eq!(b.as_ref(), big.as_slice(), "binary message intact");
                got.push("binary".into());
            }
            Message::Pong(p) => {
                assert_eq!(p.as_ref(), b"p1");
                got.push("pong".into());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got[0], "text:hello through the facade");
    assert_eq!(got[1], "binary");
    assert_eq!(got[2], "pong");
    assert_eq!(got[22], "text:burst 19");
    ws.close(None).await.unwrap();
    // The sidecar answers the close and the facade closes the spliced connection.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the spliced connection closed after the close handshake"
    );
    h.stop().await;
}

/// A fake sidecar that answers one upgrade with `answer(key)` and then echoes raw bytes.
async fn fake_upgrader(answer: fn(&str) -> String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("sec-websocket-key")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                s.write_all(answer(&key).as_bytes()).await.unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if s.write_all(&out).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

fn accept_of(key: &str) -> String {
    let mut h = sha1::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_checked_then_spliced() {
    let h = Harness::start(Options::default()).await;
    let sock = h.socket();
    let ws_request = "GET /echo/ws HTTP/1.1\r\nHost: omac\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    // A sidecar whose 101 carries a wrong Sec-WebSocket-Accept: refused with 502.
    let bad = fake_upgrader(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n"
            .to_string()
    })
    .await;
    h.routes.set_state("echo", RouteState::Ready { port: bad });
    let answer = raw(&sock, ws_request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("x-omac-reason: bad-upgrade"));

    // A 101 to a protocol nobody asked for: refused too.
    let other = fake_upgrader(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
            .to_string()
    })
    .await;
    h.routes
        .set_state("echo", RouteState::Ready { port: other });
    let answer = raw(&sock, ws_request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");

    // Control: the same fake with the right accept value goes through and is spliced.
    let good = fake_upgrader(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_of(key)
        )
    })
    .await;
    h.routes.set_state("echo", RouteState::Ready { port: good });
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(ws_request.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s.write_all(b"raw bytes after the switch").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"echo:raw bytes after the switch");

    // Another protocol than WebSocket is spliced the same way.
    let custom = fake_upgrader(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-omac-test/1\r\nConnection: upgrade\r\n\r\n"
            .to_string()
    })
    .await;
    h.routes
        .set_state("echo", RouteState::Ready { port: custom });
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"GET /echo/tunnel HTTP/1.1\r\nHost: omac\r\nConnection: upgrade\r\nUpgrade: x-omac-test/1\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"one"[..], b"two"] {
        s.write_all(msg).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], [&b"echo:"[..], msg].concat().as_slice());
    }
    h.stop().await;
}

async fn read_head(s: &mut UnixStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("head in time")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_idle_timeout_is_enforced() {
    let h = Harness::start(Options {
        idle: Duration::from_millis(800),
        ..Options::default()
    })
    .await;
    let sock = h.socket();
    // An answer slower than the idle timeout: 504.
    let (st, hd, _) = get(&sock, "/echo/slow?ms=4000").await;
    assert_eq!((st, reason(&hd).as_str()), (504, "timeout"));
    // Control: a quicker one passes.
    assert_eq!(get(&sock, "/echo/slow?ms=50").await.0, 200);

    // A stream that goes quiet for longer than the timeout is cut after its first event.
    let mut c = Client::connect(&sock).await;
    let req = Request::get("/echo/tick?n=3&gap_ms=4000")
        .header("host", "omac")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut body = c.send(req).await.unwrap().into_body();
    let first = body.frame().await.expect("a frame").expect("first event");
    assert!(String::from_utf8_lossy(first.data_ref().unwrap()).contains("event: tick"));
    let rest = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match body.frame().await {
                None => return "ended",
                Some(Err(_)) => return "cut",
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(rest, Ok("cut"), "the quiet stream was cut, not completed");

    // A silent WebSocket is closed too.
    let stream = UnixStream::connect(&sock).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://omac/echo/ws", stream)
        .await
        .unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle WebSocket was closed");
    h.stop().await;
}
