//! `omac connect` against a real egress proxy: git over SSH (a real sshd, run as the
//! invoking user on loopback) with `omac connect` as ssh's ProxyCommand, a refusal with its
//! explanation on stderr, and an unreachable proxy. Until `omac run` exists the proxy runs
//! in this test process and `omac connect` finds it through OMAC_EGRESS_SOCKET; the
//! in-sandbox version of this test goes through init's bridge instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use omac_bundle::ext::{NetworkPolicy, Prompt};
use omac_egress::audit::MemoryAudit;
use omac_egress::resolve::StaticResolver;
use omac_egress::{Builder, Handle, ProfileRef};
use tokio::process::Command;

const OMAC: &str = env!("CARGO_BIN_EXE_omac");

fn policy(allow: &[&str]) -> NetworkPolicy {
    NetworkPolicy {
        mode: "filtered".into(),
        enforcement: "kernel".into(),
        allow_domains: allow.iter().map(|s| s.to_string()).collect(),
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
    }
}

fn proxy(
    dir: &Path,
    allow: &[&str],
    names: &[(&str, &str)],
    exempt: &[SocketAddr],
) -> (Handle, Arc<MemoryAudit>) {
    let resolver = Arc::new(StaticResolver::new());
    for (h, a) in names {
        resolver.answer(h, &[a.parse().unwrap()]);
    }
    let audit = Arc::new(MemoryAudit::default());
    let mut b = Builder::new(
        policy(allow),
        ProfileRef {
            name: "work".into(),
            file: Some(dir.join("work.json")),
            user_dir: None,
        },
    )
    .resolver(resolver)
    .audit(audit.clone())
    .environment(Default::default());
    for e in exempt {
        b = b.exempt_for_tests(*e);
    }
    (b.bind(&dir.join("egress.sock")).unwrap().spawn(), audit)
}

async fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().await.expect("the command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn env_cmd(program: &str, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .kill_on_drop(true);
    c
}

async fn ok(cmd: &mut Command) -> String {
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{cmd:?}\nstdout: {out}\nstderr: {err}");
    out
}

struct Sshd {
    _child: tokio::process::Child,
    port: u16,
    client_key: PathBuf,
}

/// sshd on 127.0.0.1, run as the invoking user, accepting one key.
async fn sshd(dir: &Path) -> Sshd {
    let exe = "/usr/sbin/sshd";
    assert!(
        Path::new(exe).exists(),
        "sshd is needed (Debian package openssh-server, listed in .ci/apt-packages)"
    );
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        // sshd refuses to start as root without its privilege-separation directory (the
        // Debian service creates it at boot); create it as the service would.
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let keygen = |name: &str| {
        let mut c = Command::new("ssh-keygen");
        c.args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(name));
        c
    };
    ok(&mut keygen("hostkey")).await;
    ok(&mut keygen("client")).await;
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n"
        ),
    )
    .unwrap();
    let child = Command::new(exe)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Sshd {
                _child: child,
                port,
                client_key: dir.join("client"),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "sshd did not start: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

fn user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        assert!(!pw.is_null());
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_ssh_through_omac_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sshd = sshd(dir).await;
    let (handle, audit) = proxy(
        dir,
        &["git.test"],
        &[("git.test", "127.0.0.1")],
        &[SocketAddr::from(([127, 0, 0, 1], sshd.port))],
    );

    // A repository with one commit, served over SSH.
    let repo = dir.join("repo.git");
    ok(env_cmd("git", dir)
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&repo))
    .await;
    let seed = dir.join("seed");
    ok(env_cmd("git", dir)
        .args(["init", "-q", "-b", "main"])
        .arg(&seed))
    .await;
    std::fs::write(seed.join("README"), "through the egress proxy\n").unwrap();
    ok(env_cmd("git", dir)
        .current_dir(&seed)
        .args(["add", "README"]))
    .await;
    ok(env_cmd("git", dir)
        .current_dir(&seed)
        .args(["commit", "-q", "-m", "one"]))
    .await;
    ok(env_cmd("git", dir)
        .current_dir(&seed)
        .arg("push")
        .arg("-q")
        .arg(&repo)
        .arg("main"))
    .await;

    let ssh = format!(
        "ssh -F /dev/null -o ProxyCommand=\"{OMAC} connect %h %p\" -i {} -o IdentitiesOnly=yes \
         -o UserKnownHostsFile={}/known_hosts -o StrictHostKeyChecking=accept-new -o BatchMode=yes",
        sshd.client_key.display(),
        dir.display()
    );
    let url = format!("ssh://{}@git.test:{}{}", user(), sshd.port, repo.display());
    let clone = dir.join("clone");
    let git = |args: &[&str]| {
        let mut c = env_cmd("git", dir);
        c.env("GIT_SSH_COMMAND", &ssh)
            .env("OMAC_EGRESS_SOCKET", handle.path())
            .args(args);
        c
    };
    ok(&mut git(&["clone", "-q", &url, clone.to_str().unwrap()])).await;
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "through the egress proxy\n"
    );
    // And back: a push through the same path.
    std::fs::write(clone.join("NEW"), "pushed\n").unwrap();
    ok(git(&["add", "NEW"]).current_dir(&clone)).await;
    ok(git(&["commit", "-q", "-m", "two"]).current_dir(&clone)).await;
    ok(git(&["push", "-q", "origin", "main"]).current_dir(&clone)).await;
    let log = ok(env_cmd("git", dir)
        .arg("--git-dir")
        .arg(&repo)
        .args(["log", "--format=%s"]))
    .await;
    assert_eq!(log, "two\none\n");

    let ev = audit.events();
    assert!(ev.len() >= 2);
    assert!(ev.iter().all(|e| e.allow
        && e.host == "git.test"
        && e.port == sshd.port
        && e.via == "http-connect"));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_an_unreachable_proxy_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (handle, _) = proxy(dir, &["git.test"], &[], &[]);
    let (code, out, err) = run(env_cmd(OMAC, dir)
        .args(["connect", "github.com", "22"])
        .env("OMAC_EGRESS_SOCKET", handle.path()))
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("github.com:22 was refused"), "{err}");
    assert!(err.contains("rule: not in allowlist"), "{err}");
    assert!(
        err.contains(&format!(
            "add \"github.com\" to network.allow_domain in {}",
            dir.join("work.json").display()
        )),
        "{err}"
    );
    let (code, _, err) = run(env_cmd(OMAC, dir)
        .args(["connect", "127.0.0.1", "22"])
        .env("OMAC_EGRESS_SOCKET", handle.path()))
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("rule: loopback"), "{err}");
    let (code, _, err) = run(env_cmd(OMAC, dir)
        .args(["connect", "git.test", "22"])
        .env("OMAC_EGRESS_SOCKET", dir.join("nothing.sock")))
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach omac's egress proxy"), "{err}");
    let (code, _, _) = run(env_cmd(OMAC, dir).args(["connect", "git.test", "0"])).await;
    assert_eq!(code, 2);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omac_connect_relays_both_ways_with_half_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A server that speaks first, then echoes until the client half-closes.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    let (handle, _) = proxy(dir, &["echo.test"], &[("echo.test", "127.0.0.1")], &[addr]);
    let mut child = env_cmd(OMAC, dir)
        .args(["connect", "echo.test", &addr.port().to_string()])
        .env("OMAC_EGRESS_SOCKET", handle.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let p2 = payload.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&p2).await.unwrap();
        drop(stdin);
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    writer.await.unwrap();
    let status = child.wait().await.unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(&out[..14], b"SSH-2.0-test\r\n");
    assert!(out[14..] == payload[..], "{} bytes back", out.len());
    handle.shutdown().await;
}
