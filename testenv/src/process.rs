//! Child processes that cannot outlive the test process.
//!
//! Every control-plane process is spawned with `PR_SET_PDEATHSIG = SIGKILL`, so even a test binary
//! killed by a signal leaves no orphan etcd or API server behind. The kernel delivers that signal
//! when the *thread* that forked the child exits, so all spawning happens on one dedicated thread
//! that lives as long as the process.

use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the testenv spawner thread");
        Mutex::new(requests)
    })
}

/// Spawns `command` so that it dies with this process.
#[allow(unsafe_code)]
pub fn spawn_tied(mut command: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = channel();
    spawner()
        .lock()
        .map_err(|_| std::io::Error::other("testenv spawner poisoned"))?
        .send((command, reply))
        .map_err(|_| std::io::Error::other("testenv spawner gone"))?;
    answer.recv().map_err(|_| std::io::Error::other("testenv spawner gone"))?
}

/// Sends SIGTERM, waits a moment, then SIGKILL, and reaps the child.
pub fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a pid we own and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
