//! What the user sees while a session starts: nothing when it is quick; when the sidecars
//! take longer than a moment to become healthy, a line saying which ones omac waits for
//! (updated in place on a terminal). Also the prompter used when no dialog may be shown.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omac_egress::prompt::{AskFuture, Availability, Prompter, Question};
use omac_facade::{SidecarEvent, Supervisor};

/// How long start-up stays silent.
const QUIET: Duration = Duration::from_millis(400);

/// The start-up progress display; [`Progress::finish`] ends it.
pub struct Progress {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    waiting: Vec<String>,
    shown: bool,
    tty: bool,
    started: Instant,
}

impl State {
    fn line(&self) -> String {
        format!(
            "omac: starting sidecars, waiting for {} to become healthy ({:.1} s)",
            self.waiting.join(", "),
            self.started.elapsed().as_secs_f64()
        )
    }

    fn show(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", self.line());
        } else if !self.shown {
            let _ = writeln!(err, "{}", self.line());
        }
        let _ = err.flush();
        self.shown = true;
    }
}

impl Progress {
    /// Watches `sup` starting `skills`.
    pub fn start(sup: &Supervisor, skills: Vec<String>) -> Progress {
        let state = Arc::new(Mutex::new(State {
            waiting: skills,
            shown: false,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }));
        let mut rx = sup.events();
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + QUIET,
                Duration::from_millis(250),
            );
            loop {
                tokio::select! {
                    e = rx.recv() => match e {
                        Ok(SidecarEvent::Healthy { skill, .. }) => {
                            let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                            s.waiting.retain(|w| *w != skill);
                            if s.shown && s.tty && !s.waiting.is_empty() {
                                s.show();
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = tick.tick() => {
                        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                        if !s.waiting.is_empty() {
                            s.show();
                        }
                    }
                }
            }
        });
        Progress { state, task }
    }

    /// Ends the display: says how long the sidecars took, or just ends the line when they
    /// failed (the error follows).
    pub fn finish(self, ok: bool) {
        self.task.abort();
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.shown {
            return;
        }
        let mut err = std::io::stderr().lock();
        let clear = if s.tty { "\r\x1b[K" } else { "" };
        if ok {
            let _ = writeln!(
                err,
                "{clear}omac: sidecars ready after {:.1} s",
                s.started.elapsed().as_secs_f64()
            );
        } else if s.tty {
            let _ = writeln!(err);
        }
    }
}

/// The prompter of a headless session: no dialog is ever shown, so the profile's
/// `network_prompt.on_unavailable` decides.
pub struct NoDialogs;

impl Prompter for NoDialogs {
    fn availability(&self) -> Availability {
        Availability::Unavailable("omac runs headless (stdin is not a terminal)".into())
    }

    fn ask<'a>(&'a self, _q: &'a Question) -> AskFuture<'a> {
        Box::pin(async { Err("no dialog in a headless session".to_string()) })
    }
}
