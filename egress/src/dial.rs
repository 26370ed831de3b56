//! Connecting to the pinned addresses: attempts start 250 ms apart (RFC 8305 style, at most
//! eight), the first to connect wins, the others are dropped. Sockets get TCP_NODELAY so
//! small writes through a tunnel (an ssh keystroke) are not held back by Nagle.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Delay before the next address is tried while earlier attempts are still pending.
const STAGGER: Duration = Duration::from_millis(250);
/// Addresses tried at most.
const MAX_ATTEMPTS: usize = 8;
/// Connect budget, separate from the time a prompt took.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to one of `addrs` (in order, staggered) within [`CONNECT_TIMEOUT`].
pub async fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, race(addrs)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

async fn one(a: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(a).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn race(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    if let [a] = addrs {
        // One address: no race, no extra task.
        return one(*a).await;
    }
    let mut queue = addrs.iter().take(MAX_ATTEMPTS).copied();
    let mut set: JoinSet<io::Result<TcpStream>> = JoinSet::new();
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    let start = |set: &mut JoinSet<_>, a: SocketAddr| {
        set.spawn(one(a));
    };
    match queue.next() {
        Some(a) => start(&mut set, a),
        None => return Err(last_err),
    }
    loop {
        tokio::select! {
            done = set.join_next() => match done {
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    last_err = e;
                    if let Some(a) = queue.next() {
                        start(&mut set, a);
                    } else if set.is_empty() {
                        return Err(last_err);
                    }
                }
                Some(Err(join)) => {
                    last_err = io::Error::other(join.to_string());
                    if set.is_empty() && queue.len() == 0 {
                        return Err(last_err);
                    }
                }
                None => match queue.next() {
                    Some(a) => start(&mut set, a),
                    None => return Err(last_err),
                },
            },
            _ = tokio::time::sleep(STAGGER), if queue.len() > 0 => {
                if let Some(a) = queue.next() {
                    start(&mut set, a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reachable_address_wins() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = l.local_addr().unwrap();
        // A port nothing listens on: refused at once, then the next address is tried.
        let closed = {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let s = connect_any(&[closed, good]).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), good);
        assert!(s.nodelay().unwrap());
        assert!(connect_any(&[closed]).await.is_err());
        assert!(connect_any(&[]).await.is_err());
    }
}
