//! A registry behind a slow link: a TCP relay on 127.0.0.1 that passes what
//! the client sends at once and what the registry answers at a fixed rate
//! per connection, like a registry across a network rather than on the
//! same host.
//!
//! Why: Docker on the containerd image store tells a layer's bytes only in
//! the `Downloading` lines it sends every 100 ms while a download runs; a
//! layer fetched from the local registry within 100 ms never says its size
//! (see tests/streams/README.md). Across a link of this speed every layer
//! takes several of those 100 ms, as on a real network, so the pull tests
//! can compare downloaded bytes with the registry's manifest on both stores.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The relay; it stops (and its connections with it) when dropped.
#[derive(Debug)]
pub struct SlowLink {
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SlowLink {
    /// Relays 127.0.0.1:`port` to `upstream` (`HOST:PORT`), answers at
    /// `bytes_per_second` per connection.
    pub fn start(upstream: &str, bytes_per_second: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the slow link");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        // The registry is down: the client sees a reset.
                        continue;
                    };
                    relay(client, server, bytes_per_second, &stop);
                }
            })
        };
        Self {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, the registry's name through this link.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Two threads per connection: requests pass unchanged, answers are paced.
fn relay(client: TcpStream, server: TcpStream, rate: u64, stop: &Arc<AtomicBool>) {
    let (Ok(client_w), Ok(server_r)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(client, server, None));
    let stop = Arc::clone(stop);
    std::thread::spawn(move || copy(server_r, client_w, Some((rate, &stop))));
}

/// Copies until either side closes; with a rate, no chunk goes before the
/// ones ahead of it have had their time on the link (so an idle keep-alive
/// connection saves up no burst).
fn copy(mut from: TcpStream, mut to: TcpStream, pace: Option<(u64, &AtomicBool)>) {
    let mut buf = [0_u8; 8192];
    let mut free_at = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((rate, stop)) = pace {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            let bytes = u64::try_from(n).unwrap_or(u64::MAX);
            free_at = free_at.max(now) + Duration::from_nanos(bytes * 1_000_000_000 / rate);
            std::thread::sleep(free_at - now);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
