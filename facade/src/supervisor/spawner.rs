//! Spawning from one long-lived thread. A keeper is started with PR_SET_PDEATHSIG, which
//! fires when the *thread* that forked it exits; tokio forks from whichever worker or
//! blocking thread runs the task, and those come and go. So every keeper is forked by this
//! thread, which lives as long as the process: the signal then means "omac is gone".

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Job {
    cmd: Command,
    handle: Handle,
    reply: oneshot::Sender<std::io::Result<Child>>,
}

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn spawner() -> std::io::Result<mpsc::Sender<Job>> {
    if let Some(s) = SPAWNER.get() {
        return Ok(s.lock().unwrap_or_else(|p| p.into_inner()).clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("omac-spawner".into())
        .spawn(move || {
            while let Ok(mut job) = rx.recv() {
                // The child must be registered with the caller's runtime (for its exit).
                let _guard = job.handle.enter();
                let r = job.cmd.spawn();
                let _ = job.reply.send(r);
            }
        })?;
    let cell = SPAWNER.get_or_init(|| Mutex::new(tx));
    Ok(cell.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Spawns `cmd` from the spawner thread (the caller sets `pre_exec` hooks beforehand).
pub(crate) async fn spawn(cmd: Command) -> std::io::Result<Child> {
    let (reply, rx) = oneshot::channel();
    spawner()?
        .send(Job {
            cmd,
            handle: Handle::current(),
            reply,
        })
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.await
        .map_err(|_| std::io::Error::other("the spawner thread dropped the job"))?
}
