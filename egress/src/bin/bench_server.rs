//! The egress proxy as a standalone process for `bench/egress.sh`: listens on a Unix socket
//! and allows exactly one loopback sink (through the test-only exemption, hence the
//! `test-support` feature this binary requires). Usage: `omac-egress-bench SOCKET SINK_ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;

use omac_bundle::ext::{NetworkPolicy, Prompt};
use omac_egress::{Builder, ProfileRef};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(sink)) = (args.next(), args.next()) else {
        eprintln!("usage: omac-egress-bench SOCKET SINK_ADDR");
        std::process::exit(2);
    };
    let sink: SocketAddr = sink.parse().expect("SINK_ADDR is ip:port");
    let network = NetworkPolicy {
        mode: "filtered".into(),
        enforcement: "kernel".into(),
        allow_domains: vec![sink.ip().to_string()],
        deny_domains: vec![],
        listen_ports: vec![],
        allow_tcp_connect: vec![],
        open_ports: vec![],
        publish_ports: vec![],
        prompt: Prompt {
            enabled: false,
            timeout_secs: 60,
            on_unavailable: "deny".into(),
        },
        upstream_proxy: None,
        no_proxy: vec![],
        proxy_injection: vec![],
        allow_private: vec![],
    };
    let profile = ProfileRef {
        name: "bench".into(),
        file: None,
        user_dir: None,
    };
    let handle = Builder::new(network, profile)
        .pages_file(None)
        .environment(Default::default())
        .exempt_for_tests(sink)
        .bind(&PathBuf::from(socket))
        .expect("bind the socket")
        .spawn();
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
}
