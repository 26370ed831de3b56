//! The desktop dialogs: `zenity --list --radiolist`, then `kdialog --radiolist` on Linux;
//! `osascript` "choose from list" on macOS; a desktop notification beside it (`notify-send`,
//! `osascript display notification`). Programs are found on the `PATH` of the environment
//! the prompter was made with, and run with that environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{truthy, AskFuture, Availability, Choice, Prompter, Question};

/// The title of every dialog.
const TITLE: &str = "omac: network access";

/// A prompter that shows native dialogs.
#[derive(Debug, Clone)]
pub struct DialogPrompter {
    env: HashMap<String, String>,
}

fn find(env: &HashMap<String, String>, name: &str) -> Option<PathBuf> {
    let path = env
        .get("PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |p| p.as_str());
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn text(q: &Question) -> String {
    format!(
        "A program in the omac sandbox wants to connect to\n\n    {}:{}\n\nNo rule of the profile decides this host. What should omac do?",
        q.host, q.port
    )
}

enum Backend {
    Zenity(PathBuf),
    Kdialog(PathBuf),
    Osascript(PathBuf),
}

impl DialogPrompter {
    /// Dialogs shown with `env` (DISPLAY, WAYLAND_DISPLAY, PATH, DBUS_SESSION_BUS_ADDRESS...).
    pub fn from_env(env: &HashMap<String, String>) -> DialogPrompter {
        DialogPrompter { env: env.clone() }
    }

    fn backend(&self) -> Result<Backend, String> {
        if truthy(self.env.get("CI")) {
            return Err("CI is set (no one is there to answer a dialog)".into());
        }
        if cfg!(target_os = "macos") {
            if self.env.contains_key("SSH_CONNECTION") || self.env.contains_key("SSH_TTY") {
                return Err(
                    "this is an SSH session (dialogs would appear on another screen)".into(),
                );
            }
            return find(&self.env, "osascript")
                .map(Backend::Osascript)
                .ok_or_else(|| "osascript is not on PATH".to_string());
        }
        let has = |k: &str| self.env.get(k).is_some_and(|v| !v.is_empty());
        if !has("DISPLAY") && !has("WAYLAND_DISPLAY") {
            return Err("there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set: a headless or SSH session)".into());
        }
        if let Some(z) = find(&self.env, "zenity") {
            return Ok(Backend::Zenity(z));
        }
        if let Some(k) = find(&self.env, "kdialog") {
            return Ok(Backend::Kdialog(k));
        }
        Err("neither zenity nor kdialog is installed".into())
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.env_clear()
            .envs(&self.env)
            .env("GTK_OVERLAY_SCROLLING", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        c
    }

    fn notify(&self, q: &Question) {
        let body = format!("{}:{} wants network access", q.host, q.port);
        let cmd = if cfg!(target_os = "macos") {
            find(&self.env, "osascript").map(|p| {
                let mut c = self.command(&p);
                c.arg("-e").arg(format!(
                    "display notification \"{body}\" with title \"{TITLE}\""
                ));
                c
            })
        } else {
            find(&self.env, "notify-send").map(|p| {
                let mut c = self.command(&p);
                c.arg("--app-name=omac").arg(TITLE).arg(&body);
                c
            })
        };
        if let Some(mut c) = cmd {
            c.stdout(Stdio::null()).kill_on_drop(false);
            match c.spawn() {
                // Waited for in the background so it does not linger as a zombie.
                Ok(mut child) => {
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                Err(e) => tracing::debug!("notification failed: {e}"),
            }
        }
    }
}

async fn run(mut c: tokio::process::Command) -> Result<(bool, String), String> {
    let out = c
        .output()
        .await
        .map_err(|e| format!("the dialog could not start: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

impl Prompter for DialogPrompter {
    fn availability(&self) -> Availability {
        match self.backend() {
            Ok(_) => Availability::Available,
            Err(why) => Availability::Unavailable(why),
        }
    }

    fn ask<'a>(&'a self, q: &'a Question) -> AskFuture<'a> {
        Box::pin(async move {
            let backend = self.backend()?;
            self.notify(q);
            let choices = Choice::all();
            match backend {
                Backend::Zenity(p) => {
                    let mut c = self.command(&p);
                    c.args(["--list", "--radiolist", "--hide-header"])
                        .arg(format!("--title={TITLE}"))
                        .arg(format!("--text={}", text(q)))
                        .args([
                            "--column=",
                            "--column=choice",
                            "--width=520",
                            "--height=640",
                        ]);
                    for ch in choices {
                        c.arg(if ch == Choice::DENY_ONCE {
                            "TRUE"
                        } else {
                            "FALSE"
                        })
                        .arg(ch.label(&q.suffix));
                    }
                    let (ok, out) = run(c).await?;
                    if !ok || out.is_empty() {
                        return Ok(Choice::DENY_ONCE);
                    }
                    Choice::from_label(&out, &q.suffix)
                        .ok_or_else(|| format!("zenity answered {out:?}, which is not a choice"))
                }
                Backend::Kdialog(p) => {
                    let mut c = self.command(&p);
                    c.arg("--title").arg(TITLE).arg("--radiolist").arg(text(q));
                    for ch in choices {
                        c.arg(ch.token())
                            .arg(ch.label(&q.suffix))
                            .arg(if ch == Choice::DENY_ONCE { "on" } else { "off" });
                    }
                    let (ok, out) = run(c).await?;
                    if !ok || out.is_empty() {
                        return Ok(Choice::DENY_ONCE);
                    }
                    Choice::from_token(&out)
                        .ok_or_else(|| format!("kdialog answered {out:?}, which is not a choice"))
                }
                Backend::Osascript(p) => {
                    let list = choices
                        .iter()
                        .map(|c| format!("\"{}\"", c.label(&q.suffix)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let script = format!(
                        "choose from list {{{list}}} with title \"{TITLE}\" with prompt \"{}\" default items {{\"{}\"}}",
                        text(q).replace('"', "'"),
                        Choice::DENY_ONCE.label(&q.suffix)
                    );
                    let mut c = self.command(&p);
                    c.arg("-e").arg(script);
                    let (ok, out) = run(c).await?;
                    if !ok || out.is_empty() || out == "false" {
                        return Ok(Choice::DENY_ONCE);
                    }
                    Choice::from_label(&out, &q.suffix)
                        .ok_or_else(|| format!("osascript answered {out:?}, which is not a choice"))
                }
            }
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(path: &Path, display: bool) -> HashMap<String, String> {
        let mut e = HashMap::new();
        e.insert(
            "PATH".to_string(),
            format!("{}:/usr/bin:/bin", path.display()),
        );
        if display {
            e.insert("DISPLAY".to_string(), ":9".to_string());
        }
        e
    }

    fn q() -> Question {
        Question {
            host: "api.example.com".into(),
            port: 443,
            suffix: "example.com".into(),
        }
    }

    #[test]
    fn headless_ci_and_missing_programs_are_unavailable() {
        let d = tempfile::tempdir().unwrap();
        let p = DialogPrompter::from_env(&env(d.path(), false));
        assert!(matches!(p.availability(), Availability::Unavailable(w) if w.contains("DISPLAY")));
        let mut e = env(d.path(), true);
        e.insert("PATH".into(), d.path().display().to_string());
        let p = DialogPrompter::from_env(&e);
        assert!(matches!(p.availability(), Availability::Unavailable(w) if w.contains("zenity")));
        e.insert("CI".into(), "true".into());
        let p = DialogPrompter::from_env(&e);
        assert!(matches!(p.availability(), Availability::Unavailable(w) if w.contains("CI")));
    }

    // zenity and kdialog cannot run without a display here; these stand-ins check the
    // arguments omac passes and that their answers are read back.
    #[tokio::test]
    async fn zenity_then_kdialog_with_a_notification() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        script(
            d.path(),
            "zenity",
            &format!(
                "printf '%s\\n' \"$@\" > {}; echo \"GTK=$GTK_OVERLAY_SCROLLING\" >> {0}; echo 'Allow for this session (*.example.com)'",
                log.display()
            ),
        );
        script(
            d.path(),
            "notify-send",
            &format!("echo \"$@\" > {}.notify", log.display()),
        );
        let p = DialogPrompter::from_env(&env(d.path(), true));
        assert_eq!(p.availability(), Availability::Available);
        let c = p.ask(&q()).await.unwrap();
        assert_eq!(c.token(), "allow-session-suffix");
        let args = std::fs::read_to_string(&log).unwrap();
        assert!(args.contains("--radiolist"), "{args}");
        assert!(
            args.contains("TRUE\nDeny once\n"),
            "deny once preselected: {args}"
        );
        assert!(args.contains("api.example.com:443"), "{args}");
        assert!(args.contains("GTK=0"), "{args}");
        for _ in 0..50 {
            if std::fs::metadata(format!("{}.notify", log.display())).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let n = std::fs::read_to_string(format!("{}.notify", log.display())).unwrap();
        assert!(n.contains("api.example.com:443"), "{n}");

        // Cancelled: deny once. Nonsense: an error (counted as a refusal by the caller).
        script(d.path(), "zenity", "exit 1");
        assert_eq!(p.ask(&q()).await.unwrap(), Choice::DENY_ONCE);
        script(d.path(), "zenity", "echo Maybe");
        assert!(p.ask(&q()).await.is_err());

        // Without zenity, kdialog answers with the tag of the choice.
        std::fs::remove_file(d.path().join("zenity")).unwrap();
        script(
            d.path(),
            "kdialog",
            &format!(
                "printf '%s\\n' \"$@\" > {}; echo allow-permanent",
                log.display()
            ),
        );
        assert_eq!(p.ask(&q()).await.unwrap().token(), "allow-permanent");
        let args = std::fs::read_to_string(&log).unwrap();
        assert!(args.contains("deny-once\nDeny once\non\n"), "{args}");
    }
}
