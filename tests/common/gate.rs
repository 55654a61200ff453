//! A gate in front of a real daemon's unix socket: it forwards every byte
//! both ways, and holds `DELETE` requests past the first `pass` until the
//! test releases them. The answers are the real daemon's; the gate only
//! lets a test act at a chosen point of a prune round (create a container,
//! remove an image, freeze the daemon, stop dockwatch) instead of racing it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct GateState {
    /// DELETEs let through before the gate holds.
    pass: usize,
    open: bool,
    /// Request lines of every DELETE seen, in order.
    deletes: Vec<String>,
    /// The DELETE held now.
    held: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a DELETE and waits while the gate holds it.
    fn delete(&self, line: String) {
        let mut s = self.lock();
        s.deletes.push(line.clone());
        if s.open || s.deletes.len() <= s.pass {
            return;
        }
        s.held = Some(line);
        self.changed.notify_all();
        while !s.open {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.held = None;
    }
}

/// The gate: listens on `socket`, forwards to `upstream`.
#[derive(Debug)]
pub struct Gate {
    pub socket: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    /// Starts forwarding `socket` to `upstream`, letting `pass` DELETEs
    /// through before holding the next.
    pub fn start(socket: &Path, upstream: &Path, pass: usize) -> Self {
        let listener = UnixListener::bind(socket).expect("bind the gate's socket");
        let shared = Arc::new(Shared::default());
        shared.lock().pass = pass;
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st, up) = (Arc::clone(&shared), Arc::clone(&stop), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (sh, up) = (Arc::clone(&sh), up.clone());
                std::thread::spawn(move || forward(client, &up, &sh));
            }
        });
        Self {
            socket: socket.to_owned(),
            shared,
            stop,
        }
    }

    /// The host URL dockwatch is given.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Waits until a DELETE is held; returns its request line.
    pub fn wait_held(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut s = self.shared.lock();
        loop {
            if let Some(line) = &s.held {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no DELETE reached the gate within {within:?} (seen: {:?})",
                s.deletes
            );
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets the held DELETE, and every later one, through.
    pub fn release(&self) {
        self.shared.lock().open = true;
        self.shared.changed.notify_all();
    }

    /// The request lines of every DELETE that reached the gate.
    pub fn deletes(&self) -> Vec<String> {
        self.shared.lock().deletes.clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Copies one client connection both ways; the client's DELETEs pass
/// through the gate. hyper writes each request head in one piece, so a
/// request starts a read.
fn forward(client: UnixStream, upstream: &Path, shared: &Shared) {
    let Ok(up) = UnixStream::connect(upstream) else {
        return;
    };
    let (Ok(mut up_read), Ok(mut client_write)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut client_read, mut up_write) = (client, up);
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if chunk.starts_with(b"DELETE ") {
            let line = String::from_utf8_lossy(chunk)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            shared.delete(line);
        }
        if up_write.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = up_write.shutdown(std::net::Shutdown::Write);
}
