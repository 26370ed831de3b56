//! Prompt flows with the file-driven stub: once, session, permanent (persisted to the
//! profile's .pages.json and used by the next session), coalescing of concurrent requests
//! into one dialog, timeout, the headless default, a broken pages file, and the order of
//! learned, session and profile rules.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use omac_egress::audit::{Scope, Source};
use omac_egress::prompt::dialog::DialogPrompter;
use serde_json::json;

async fn ok(p: &Proxy, target: &str) -> bool {
    let (status, head, body, _) = connect(&p.socket, target).await;
    assert!(status == 200 || status == 403, "{head}{body}");
    status == 200
}

async fn rule(p: &Proxy, target: &str) -> String {
    let (status, head, _, _) = connect(&p.socket, target).await;
    assert_eq!(status, 403, "{target}");
    header(&head, "x-omac-rule").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_and_session_choices() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let p = Setup::new(net(&["listed.test"], &[], true))
        .exempt(echo.addr)
        .name("once.test", &["127.0.0.1"])
        .name("sess.test", &["127.0.0.1"])
        .name("a.sfx.test", &["127.0.0.1"])
        .name("b.sfx.test", &["127.0.0.1"])
        .name("no.test", &["127.0.0.1"])
        .name("listed.test", &["127.0.0.1"])
        .decisions(json!({
            "once.test": "allow-once",
            "sess.test": "allow-session",
            "a.sfx.test": "allow-session-suffix",
            "no.test": "deny-session",
        }))
        .start()
        .await;
    let t = |h: &str| format!("{h}:{port}");
    // Once: asked every time.
    assert!(ok(&p, &t("once.test")).await);
    assert!(ok(&p, &t("once.test")).await);
    // Session: asked once, then remembered.
    assert!(ok(&p, &t("sess.test")).await);
    assert!(ok(&p, &t("sess.test")).await);
    // Session for the suffix: covers a sibling without asking.
    assert!(ok(&p, &t("a.sfx.test")).await);
    assert!(ok(&p, &t("b.sfx.test")).await);
    // Deny for the session: asked once; the next refusal comes from the session rule.
    assert_eq!(rule(&p, &t("no.test")).await, "prompt declined");
    assert_eq!(rule(&p, &t("no.test")).await, "session");
    // The allowlist never asks.
    assert!(ok(&p, &t("listed.test")).await);
    let asked: Vec<String> = p.stub.asked().into_iter().map(|q| q.host).collect();
    assert_eq!(
        asked,
        [
            "once.test",
            "once.test",
            "sess.test",
            "a.sfx.test",
            "no.test"
        ]
    );
    assert_eq!(p.stub.asked()[3].suffix, "sfx.test");
    let ev = p.events();
    let kinds: Vec<(bool, Source, Scope)> =
        ev.iter().map(|e| (e.allow, e.source, e.scope)).collect();
    assert_eq!(
        kinds,
        [
            (true, Source::Prompt, Scope::Once),
            (true, Source::Prompt, Scope::Once),
            (true, Source::Prompt, Scope::Session),
            (true, Source::Session, Scope::Session),
            (true, Source::Prompt, Scope::Session),
            (true, Source::Session, Scope::Session),
            (false, Source::Prompt, Scope::Session),
            (false, Source::Session, Scope::Session),
            (true, Source::Allowlist, Scope::Policy),
        ]
    );
    assert!(ev.iter().all(|e| !e.persisted));
    assert!(!p.pages.exists(), "no permanent choice, no file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_choices_persist_for_the_next_session() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let names = |s: Setup| {
        s.exempt(echo.addr)
            .name("keep.test", &["127.0.0.1"])
            .name("api.evil.test", &["127.0.0.1"])
            .name("cdn.evil.test", &["127.0.0.1"])
    };
    let p = names(Setup::new(net(&[], &[], true)))
        .decisions(json!({
            "keep.test": "allow-permanent",
            "api.evil.test": {"allow": false, "persist": true, "scope": "suffix"},
        }))
        .start()
        .await;
    let t = |h: &str| format!("{h}:{port}");
    assert!(ok(&p, &t("keep.test")).await);
    assert_eq!(rule(&p, &t("api.evil.test")).await, "prompt declined");
    assert_eq!(rule(&p, &t("cdn.evil.test")).await, "learned");
    let ev = p.events();
    assert!(ev[0].persisted && ev[0].scope == Scope::Permanent);
    assert!(ev[1].persisted && !ev[1].allow);
    let text = std::fs::read_to_string(&p.pages).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"schema": 1, "entries": [
            {"host": "keep.test", "scope": "host", "decision": "allow"},
            {"host": "evil.test", "scope": "suffix", "decision": "deny"},
        ]})
    );
    assert!(
        text.starts_with("{\n  \"schema\": 1,"),
        "pretty-printed: {text}"
    );
    assert_eq!(p.pages, p.dir.path().join("work.pages.json"));

    // The next session (same profile) decides from the file without asking, and the
    // learned deny explains itself.
    let dir = p.stop().await;
    let mut s =
        names(Setup::new(net(&["cdn.evil.test"], &[], true))).decisions(json!({"*": "allow-once"}));
    s.dir = Some(dir);
    let p2 = s.start().await;
    assert!(ok(&p2, &t("keep.test")).await);
    let (status, _, body, _) = connect(&p2.socket, &t("cdn.evil.test")).await;
    assert_eq!(status, 403, "a learned deny beats allow_domain");
    assert!(body.contains("rule: learned"), "{body}");
    assert!(
        body.contains(&format!("from {}", p2.pages.display())),
        "{body}"
    );
    assert!(p2.stub.asked().is_empty());
    let ev = p2.events();
    assert_eq!(
        (ev[0].source, ev[0].scope),
        (Source::Learned, Scope::Permanent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_dialog() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let p = Arc::new(
        Setup::new(net(&[], &[], true))
            .exempt(echo.addr)
            .name("busy.test", &["127.0.0.1"])
            .decisions(json!({"busy.test": {"choice": "allow-once", "delay_ms": 400}}))
            .start()
            .await,
    );
    let mut tasks = Vec::new();
    for i in 0..12 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                ok(&p, &format!("busy.test:{port}")).await
            } else {
                socks(&p.socket, 3, "busy.test", port).await.0 == 0
            }
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(p.stub.asked().len(), 1, "one dialog for twelve requests");
    assert_eq!(p.events().len(), 12);
    assert!(p
        .events()
        .iter()
        .all(|e| e.allow && e.source == Source::Prompt));
    // Once means once: the next request asks again.
    assert!(ok(&p, &format!("busy.test:{port}")).await);
    assert_eq!(p.stub.asked().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dialog_at_a_time_and_a_suffix_choice_answers_the_queue() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let p = Arc::new(
        Setup::new(net(&[], &[], true))
            .exempt(echo.addr)
            .name("a.q.test", &["127.0.0.1"])
            .name("b.q.test", &["127.0.0.1"])
            .name("c.test", &["127.0.0.1"])
            .decisions(json!({
                "a.q.test": {"choice": "allow-session-suffix", "delay_ms": 300},
                "c.test": {"choice": "deny-once", "delay_ms": 100},
                "*": "deny-once",
            }))
            .start()
            .await,
    );
    let first = {
        let p = p.clone();
        tokio::spawn(async move { ok(&p, &format!("a.q.test:{port}")).await })
    };
    // Wait until the first dialog is on screen.
    for _ in 0..1000 {
        if !p.stub.asked().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut rest = Vec::new();
    for h in ["b.q.test", "c.test"] {
        let p = p.clone();
        rest.push(tokio::spawn(
            async move { ok(&p, &format!("{h}:{port}")).await },
        ));
    }
    assert!(first.await.unwrap());
    let b = rest.remove(0).await.unwrap();
    let c = rest.remove(0).await.unwrap();
    assert!(
        b,
        "b.q.test is covered by the *.q.test choice made while it waited"
    );
    assert!(!c);
    let asked: Vec<String> = p.stub.asked().into_iter().map(|q| q.host).collect();
    assert_eq!(
        asked,
        ["a.q.test", "c.test"],
        "b.q.test never got its own dialog"
    );
    let b_event = p
        .events()
        .into_iter()
        .find(|e| e.host == "b.q.test")
        .unwrap();
    assert_eq!(
        (b_event.source, b_event.scope),
        (Source::Session, Scope::Session)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_dialog_times_out_as_a_refusal() {
    let echo = Echo::start("127.0.0.1", None).await;
    let mut n = net(&["fast.test"], &[], true);
    n.prompt.timeout_secs = 1;
    let p = Setup::new(n)
        .exempt(echo.addr)
        .name("slow.test", &["127.0.0.1"])
        .decisions(json!({"slow.test": {"choice": "allow-permanent", "delay_ms": 30000}}))
        .start()
        .await;
    let (status, head, body, _) =
        connect(&p.socket, &format!("slow.test:{}", echo.addr.port())).await;
    assert_eq!(status, 403);
    assert_eq!(
        header(&head, "x-omac-rule").as_deref(),
        Some("prompt timeout")
    );
    assert!(body.contains("no answer within 1 s"), "{body}");
    assert!(
        body.contains("add \"slow.test\" to network.allow_domain"),
        "{body}"
    );
    assert!(!p.pages.exists(), "the late answer is not applied");
    assert_eq!(echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_sessions_follow_on_unavailable() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    // The real dialog backend with no DISPLAY and no WAYLAND_DISPLAY.
    let env: HashMap<String, String> = [("PATH".to_string(), "/usr/bin:/bin".to_string())].into();
    let mut s = Setup::new(net(&["listed.test"], &[], true))
        .exempt(echo.addr)
        .name("new.test", &["127.0.0.1"]);
    s.prompter = Some(Arc::new(DialogPrompter::from_env(&env)));
    let p = s.start().await;
    let (status, head, body, _) = connect(&p.socket, &format!("new.test:{port}")).await;
    assert_eq!(status, 403);
    assert_eq!(header(&head, "x-omac-rule").as_deref(), Some("no display"));
    assert!(body.contains("DISPLAY"), "{body}");
    assert!(body.contains("on_unavailable is \"deny\""), "{body}");
    assert!(p.resolver.lookups().is_empty(), "refused before any lookup");
    assert_eq!(p.events()[0].source, Source::Unavailable);

    // on_unavailable: allow lets it through, reported as such.
    let mut n = net(&["listed.test"], &[], true);
    n.prompt.on_unavailable = "allow".into();
    let mut s = Setup::new(n)
        .exempt(echo.addr)
        .name("new.test", &["127.0.0.1"]);
    s.prompter = Some(Arc::new(DialogPrompter::from_env(&env)));
    let p = s.start().await;
    assert!(ok(&p, &format!("new.test:{port}")).await);
    assert_eq!(p.events()[0].source, Source::Unavailable);

    // The stub can play a machine without a display too (for end-to-end tests).
    let p = Setup::new(net(&[], &[], true))
        .exempt(echo.addr)
        .name("new.test", &["127.0.0.1"])
        .decisions(json!({"@available": false, "*": "allow-once"}))
        .start()
        .await;
    assert_eq!(rule(&p, &format!("new.test:{port}")).await, "no display");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_prompt_off_the_allowlist_decides() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let p = Setup::new(net(&[], &["deny.test"], false))
        .exempt(echo.addr)
        .name("any.test", &["127.0.0.1"])
        .start()
        .await;
    assert!(
        ok(&p, &format!("any.test:{port}")).await,
        "empty allowlist: allow"
    );
    assert_eq!(rule(&p, &format!("deny.test:{port}")).await, "deny_domain");
    assert_eq!(p.events()[0].source, Source::Default);
    let p = Setup::new(net(&["only.test"], &[], false))
        .exempt(echo.addr)
        .name("any.test", &["127.0.0.1"])
        .start()
        .await;
    assert_eq!(
        rule(&p, &format!("any.test:{port}")).await,
        "not in allowlist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_pages_file_is_reported_and_left_untouched() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("work.pages.json");
    let broken = "{\"schema\": 1, \"entries\": [ {\"host\": \"x\"";
    std::fs::write(&pages, broken).unwrap();
    let mut s = Setup::new(net(&[], &[], true))
        .exempt(echo.addr)
        .name("perm.test", &["127.0.0.1"])
        .decisions(json!({"perm.test": "allow-permanent"}));
    s.dir = Some(dir);
    let p = s.start().await;
    assert!(p
        .handle
        .as_ref()
        .unwrap()
        .policy()
        .pages()
        .broken()
        .is_some());
    assert!(ok(&p, &format!("perm.test:{port}")).await);
    // Not persisted, but remembered for the session: no second dialog.
    assert!(ok(&p, &format!("perm.test:{port}")).await);
    assert_eq!(p.stub.asked().len(), 1);
    assert!(!p.events()[0].persisted);
    assert_eq!(std::fs::read_to_string(&pages).unwrap(), broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_order_learned_deny_session_deny_deny_domain_allow_domain_learned_allow() {
    let echo = Echo::start("127.0.0.1", None).await;
    let port = echo.addr.port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("work.pages.json"),
        json!({"schema": 1, "entries": [
            {"host": "learned-deny.test", "scope": "host", "decision": "deny"},
            {"host": "both.test", "scope": "host", "decision": "allow"},
            {"host": "both.test", "scope": "host", "decision": "deny"},
            {"host": "learned-allow.test", "scope": "host", "decision": "allow"},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut s = Setup::new(net(
        &[
            "learned-deny.test",
            "session-deny.test",
            "denied-and-allowed.test",
        ],
        &["denied-and-allowed.test", "learned-allow.test"],
        true,
    ))
    .exempt(echo.addr)
    .name("unlisted.test", &["127.0.0.1"])
    .decisions(json!({"*": "deny-session"}));
    s.dir = Some(dir);
    let p = s.start().await;
    let t = |h: &str| format!("{h}:{port}");
    assert_eq!(rule(&p, &t("learned-deny.test")).await, "learned");
    assert_eq!(rule(&p, &t("both.test")).await, "learned");
    assert_eq!(rule(&p, &t("denied-and-allowed.test")).await, "deny_domain");
    assert_eq!(rule(&p, &t("learned-allow.test")).await, "deny_domain");
    assert_eq!(rule(&p, &t("unlisted.test")).await, "prompt declined");
    // A session deny for a suffix, chosen in a dialog about a sibling, beats allow_domain.
    let p2 = Setup::new(net(&["a.sd.test"], &[], true))
        .exempt(echo.addr)
        .name("a.sd.test", &["127.0.0.1"])
        .name("x.sd.test", &["127.0.0.1"])
        .decisions(json!({"x.sd.test": "deny-session-suffix"}))
        .start()
        .await;
    assert!(
        ok(&p2, &t("a.sd.test")).await,
        "listed: allowed without a prompt"
    );
    assert_eq!(rule(&p2, &t("x.sd.test")).await, "prompt declined");
    assert_eq!(rule(&p2, &t("a.sd.test")).await, "session");
    assert_eq!(p2.stub.asked().len(), 1);
}
