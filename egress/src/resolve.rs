//! Name resolution, injectable: the proxy resolves each name once, checks every answer and
//! connects only to those addresses (no second lookup a DNS rebinding could answer
//! differently).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;

/// The future a [`Resolver`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Turns a host name into addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Every address of `host` (an empty list or an error is a resolution failure).
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The system resolver (getaddrinfo in a blocking task, as tokio's `lookup_host`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            let mut out: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !out.contains(&a.ip()) {
                    out.push(a.ip());
                }
            }
            Ok(out)
        })
    }
}

/// A resolver answering from a table, for tests: each name has a queue of answers, served
/// one per lookup, the last one repeating (so a test can play a DNS rebinding).
#[derive(Debug, Default)]
pub struct StaticResolver {
    table: Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>,
    lookups: Mutex<Vec<String>>,
}

impl StaticResolver {
    /// An empty table (every name fails to resolve).
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds an answer for `host` (lower-cased); several calls queue several answers.
    pub fn answer(&self, host: &str, addrs: &[IpAddr]) -> &Self {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push_back(addrs.to_vec());
        self
    }

    /// The names looked up so far, in order.
    pub fn lookups(&self) -> Vec<String> {
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        let key = omac_bundle::domain::normalize_host(host);
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.clone());
        let answer = {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            match t.get_mut(&key) {
                Some(q) if q.len() > 1 => q.pop_front(),
                Some(q) => q.front().cloned(),
                None => None,
            }
        };
        Box::pin(async move {
            answer.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{key}: no such host"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_answers_queue_then_repeat() {
        let r = StaticResolver::new();
        r.answer("a.test", &["203.0.113.1".parse().unwrap()])
            .answer("a.test", &["127.0.0.1".parse().unwrap()]);
        assert_eq!(
            r.resolve("A.test.").await.unwrap()[0].to_string(),
            "203.0.113.1"
        );
        assert_eq!(
            r.resolve("a.test").await.unwrap()[0].to_string(),
            "127.0.0.1"
        );
        assert_eq!(
            r.resolve("a.test").await.unwrap()[0].to_string(),
            "127.0.0.1"
        );
        assert!(r.resolve("b.test").await.is_err());
        assert_eq!(r.lookups().len(), 4);
    }

    #[tokio::test]
    async fn system_resolver_reads_literals() {
        let a = SystemResolver.resolve("127.0.0.1").await.unwrap();
        assert_eq!(a, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }
}
