//! `/sandbox/denied?path=P` from inside real sessions: the agent asks the facade why a path
//! is out of reach and gets the rule and the profile line that would allow it, over the
//! Unix socket and over $OMAC_BASE, in each network mode; and the answers match what the
//! agent meets when it tries the path.

mod sessionkit;

use sessionkit::*;

/// Asks about each path from inside a session of `profile` and tries to read it.
fn ask(h: &Host, profile: &str, paths: &[String]) -> std::process::Output {
    let mut script = String::new();
    for (i, p) in paths.iter().enumerate() {
        script.push_str(&format!(
            "echo code{i}=$(curl -s -o $TMPDIR/a{i} -w '%{{http_code}}' --unix-socket \"$OMAC_SOCKET\" \
               'http://omac/sandbox/denied?path={q}'); \
             echo body{i}=$(tr -d '\\n' < $TMPDIR/a{i}); \
             echo base{i}=$(curl -s -o /dev/null -w '%{{http_code}}' \"${{OMAC_BASE}}sandbox/denied?path={q}\"); \
             echo read{i}=$(head -1 '{p}' 2>/dev/null); ",
            q = p.replace('/', "%2F"),
        ));
    }
    script.push_str(
        "echo missing=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket \"$OMAC_SOCKET\" http://omac/sandbox/denied); \
         echo relative=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket \"$OMAC_SOCKET\" 'http://omac/sandbox/denied?path=a/b'); \
         echo post=$(curl -s -o /dev/null -w '%{http_code}' -X POST --unix-socket \"$OMAC_SOCKET\" 'http://omac/sandbox/denied?path=/x')",
    );
    h.omac()
        .args(["start", "--profile", profile, "--inner", "sh", "--", "-c"])
        .arg(script)
        .output()
        .unwrap()
}

#[test]
fn the_agent_learns_why_a_path_is_out_of_reach() {
    let h = Host::new();
    std::fs::write(h.work.join(".env"), "TOKEN=1\n").unwrap();
    std::fs::write(h.work.join("main.rs"), "fn main() {}\n").unwrap();
    let outside = h.root.join("elsewhere.txt");
    std::fs::write(&outside, "elsewhere\n").unwrap();
    h.profile(
        "blocked",
        r#"{"extends": "default", "network": {"mode": "blocked"}}"#,
    );
    let key = h.home.join(".ssh/id_rsa").display().to_string();
    let env = h.work.join(".env").display().to_string();
    let src = h.work.join("main.rs").display().to_string();
    let far = outside.display().to_string();
    for profile in ["default", "blocked", "open"] {
        let o = ask(
            &h,
            profile,
            &[key.clone(), env.clone(), far.clone(), src.clone()],
        );
        assert_eq!(o.status.code(), Some(0), "{profile}: {}", text(&o));
        let r = report(&o);
        let body = |i: usize| -> serde_json::Value {
            serde_json::from_str(&r[&format!("body{i}")])
                .unwrap_or_else(|e| panic!("{profile} body{i}: {e}: {}", text(&o)))
        };
        // The key: not visible at all (the sandbox's home is a scratch filesystem).
        assert_eq!(r["code0"], "200", "{profile}: {}", text(&o));
        assert_eq!(body(0)["denied"], true);
        assert_eq!(body(0)["path"], key.as_str());
        assert!(
            body(0)["note"]
                .as_str()
                .unwrap()
                .contains("filesystem.read"),
            "{}",
            body(0)
        );
        assert_eq!(r["read0"], "", "the key's content");
        // The .env in the workdir: masked, lifted by override_deny.
        assert_eq!(r["code1"], "200");
        assert_eq!(body(1)["rule"], "env-file", "{}", body(1));
        assert!(body(1)["note"].as_str().unwrap().contains("override_deny"));
        assert_eq!(r["read1"], "", "masked: empty inside");
        // A file outside every grant.
        assert_eq!(r["code2"], "200");
        assert_eq!(body(2)["denied"], true, "{}", body(2));
        assert_eq!(r["read2"], "");
        // A workdir file: granted, 404 with denied false, and readable indeed.
        assert_eq!(r["code3"], "404");
        assert_eq!(body(3)["denied"], false, "{}", body(3));
        assert_eq!(body(3)["rule"], "granted");
        assert_eq!(r["read3"], "fn main() {}");
        // Over $OMAC_BASE too (the bridge, or the token's loopback port in open mode).
        for i in 0..4 {
            assert_eq!(r[&format!("base{i}")], r[&format!("code{i}")], "{profile}");
        }
        assert_eq!(r["missing"], "400");
        assert_eq!(r["relative"], "400");
        assert_eq!(r["post"], "405");
    }
    // Outside the sandbox the same files hold their content: the empty reads above are
    // the sandbox's doing.
    for p in [&key, &env, &far, &src] {
        assert!(!std::fs::read(p).unwrap().is_empty(), "{p}");
    }
}

#[test]
fn without_a_sandbox_the_endpoint_says_it_is_disabled() {
    let h = Host::new();
    let o = h
        .omac()
        .args(["start", "--no-sandbox", "--inner", "sh", "--", "-c"])
        .arg(
            "echo code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket \"$OMAC_SOCKET\" \
             'http://omac/sandbox/denied?path=/etc/shadow')",
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report(&o)["code"], "404", "{}", text(&o));
}
