//! The proxy environment a filtered bundle carries in config.json, and `allow_private` in
//! omac.json, through `omac bundle create`.

use std::path::Path;
use std::process::Command;

const OMAC: &str = env!("CARGO_BIN_EXE_omac");

fn create(dir: &Path, profile: &str) -> (serde_json::Value, serde_json::Value) {
    let out = dir.join(format!("bundle-{profile}"));
    let r = Command::new(OMAC)
        .args(["--workdir"])
        .arg(dir)
        .args(["bundle", "create", "--profile", profile, "--out"])
        .arg(&out)
        .args(["--", "/bin/true"])
        .env_clear()
        .env("HOME", dir)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let read =
        |f: &str| serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap();
    (read("config.json"), read("omac.json"))
}

fn env(config: &serde_json::Value) -> Vec<String> {
    config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn filtered_bundles_point_every_client_at_the_bridge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profiles = dir.join(".omac/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("jvm.json"),
        r#"{"extends": "default", "network": {"proxy_injection": ["jvm"], "allow_private": ["10.20.0.0/16", "192.168.1.7"]}}"#,
    )
    .unwrap();
    std::fs::write(
        profiles.join("wide.json"),
        r#"{"network": {"mode": "open"}}"#,
    )
    .unwrap();

    let (config, ext) = create(dir, "default");
    let e = env(&config);
    for want in [
        "HTTP_PROXY=http://127.0.0.1:29171",
        "HTTPS_PROXY=http://127.0.0.1:29171",
        "http_proxy=http://127.0.0.1:29171",
        "https_proxy=http://127.0.0.1:29171",
        "ALL_PROXY=socks5h://127.0.0.1:29171",
        "NO_PROXY=localhost,127.0.0.1,::1",
        "no_proxy=localhost,127.0.0.1,::1",
        "npm_config_proxy=http://127.0.0.1:29171",
        "YARN_HTTPS_PROXY=http://127.0.0.1:29171",
        "PIP_PROXY=http://127.0.0.1:29171",
        "NODE_USE_ENV_PROXY=1",
        "GIT_SSH_COMMAND=ssh -o ProxyCommand=\"/run/omac/bin/omac connect %h %p\"",
    ] {
        assert!(e.contains(&want.to_string()), "{want} missing from {e:?}");
    }
    assert!(!e.iter().any(|v| v.starts_with("JAVA_TOOL_OPTIONS=")));
    assert!(
        ext["network"].get("allowPrivate").is_none(),
        "absent when empty"
    );
    let bridge = ext["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "egress")
        .unwrap();
    assert_eq!(bridge["listen"], "127.0.0.1:29171");

    let (config, ext) = create(dir, "jvm");
    let e = env(&config);
    assert!(
        e.iter().any(|v| v
            .starts_with("JAVA_TOOL_OPTIONS=-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=29171")),
        "{e:?}"
    );
    assert_eq!(
        ext["network"]["allowPrivate"],
        serde_json::json!(["10.20.0.0/16", "192.168.1.7/32"])
    );

    let (config, _) = create(dir, "wide");
    assert!(
        !env(&config).iter().any(|v| v.contains("PROXY")),
        "open mode has no proxy"
    );
}
