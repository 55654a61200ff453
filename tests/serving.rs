//! Serving over HTTP and HTTPS, seen from the wire: on SIGTERM a request in
//! progress still gets its 200 while new connections are refused and idle
//! ones are closed, and the process exits 0; a TLS client that never
//! finishes its handshake is dropped.
//!
//! "In progress" is a request whose head has arrived only in part. The test
//! sends the signal only once the kernel says dockwatch has accepted the
//! connection and read every byte sent so far (`/proc/net/tcp`), so nothing
//! here hangs on how fast a busy machine schedules it; the only bounds are
//! generous deadlines.

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Dockwatch, Testbed, wait_until};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// Deadline for anything that should happen "at once": far above what an
/// idle machine needs, so only a broken server reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// A client connection, plain or TLS, and its local port (to find it in
/// `/proc/net/tcp`).
struct Client {
    stream: Box<dyn ReadWrite>,
    port: u16,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The test bed's CA, which signed the server certificate for 127.0.0.1.
fn tls_client_config(bed: &Testbed) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(bed.var("TLS_CA")).expect("read the test bed CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl Client {
    /// Connects, and for HTTPS finishes the handshake.
    fn connect(scheme: Scheme, port: u16, tls: &Arc<rustls::ClientConfig>) -> io::Result<Self> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        tcp.set_read_timeout(Some(PATIENCE))?;
        let local = tcp.local_addr()?.port();
        let stream: Box<dyn ReadWrite> = match scheme {
            Scheme::Http => Box::new(tcp),
            Scheme::Https => {
                let conn = rustls::ClientConnection::new(
                    Arc::clone(tls),
                    ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
                )
                .map_err(io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Box::new(s)
            }
        };
        Ok(Self {
            stream,
            port: local,
        })
    }

    fn send(&mut self, bytes: &str) {
        self.stream
            .write_all(bytes.as_bytes())
            .and_then(|()| self.stream.flush())
            .expect("send");
    }

    /// Reads one response: (status, head, body), the body by its
    /// Content-Length so a keep-alive connection can stay open.
    fn response(&mut self) -> (u16, String, String) {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte).expect("read the response head");
            assert!(n == 1, "connection closed in the response head: {raw:?}");
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length in {head}"));
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).expect("read the body");
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }

    /// True if the server closed the connection (EOF or reset) without
    /// sending anything; false if it is still open at the deadline.
    fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!(
                "expected the connection closed, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            // Reset, or TLS without close_notify: closed all the same.
            Err(_) => true,
        }
    }
}

/// One TCP socket as the kernel lists it: (`tx_queue`, `rx_queue`, inode).
fn socket(local_port: u16, remote_port: u16) -> Option<(u64, u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port_of = |addr: &str| {
        addr.split_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || port_of(f[1]) != Some(local_port) || port_of(f[2]) != Some(remote_port) {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
            f[9].parse().ok()?,
        ))
    })
}

/// Waits until dockwatch has accepted the client's connection and read
/// everything the client sent: the client's bytes are acknowledged, and
/// the server's socket has an inode (it was accepted: a socket still in
/// the listen queue has none) and nothing left to read.
fn wait_read_by_server(server_port: u16, client: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sent = socket(client.port, server_port).is_some_and(|(tx, _, _)| tx == 0);
        let read =
            socket(server_port, client.port).is_some_and(|(_, rx, inode)| rx == 0 && inode != 0);
        if sent && read {
            // The read and hyper's parse of it happen in one poll of the
            // connection's task; let that poll end.
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dockwatch did not read the connection from port {}: client {:?}, server {:?}",
            client.port,
            socket(client.port, server_port),
            socket(server_port, client.port)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn config(bed: &Testbed, scheme: Scheme) -> String {
    let tls = match scheme {
        Scheme::Http => String::new(),
        Scheme::Https => {
            let certs = format!("{}/certs", bed.var("TESTBED_DIR"));
            format!(
                "tls_cert = \"{certs}/server-cert.pem\"\ntls_key = \"{certs}/server-key.pem\"\n"
            )
        }
    };
    format!(
        "{tls}[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\n{}",
        bed.daemon_a("a")
    )
}

/// Starts dockwatch and waits until it answers `/-/ready` with 200.
fn start(bed: &Testbed, scheme: Scheme, tls: &Arc<rustls::ClientConfig>) -> Dockwatch {
    let dw = Dockwatch::spawn(&config(bed, scheme), &[]);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            Client::connect(scheme, dw.port, tls).is_ok_and(|mut c| {
                c.send("GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                c.response().0 == 200
            })
        },
        || format!("dockwatch not ready over {scheme:?}:\n{}", dw.log()),
    );
    dw
}

fn still_running(dw: &mut Dockwatch) -> bool {
    dw.child.try_wait().ok().flatten().is_none()
}

fn graceful_shutdown(scheme: Scheme) {
    let bed = Testbed::get();
    let tls = tls_client_config(&bed);
    let mut dw = start(&bed, scheme, &tls);
    let port = dw.port;
    let connect = || Client::connect(scheme, port, &tls).expect("connect");

    // A scrape whose request head is still on its way when the signal comes.
    let mut slow = connect();
    wait_read_by_server(port, &slow);
    slow.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    wait_read_by_server(port, &slow);
    // A keep-alive connection between two requests.
    let mut idle = connect();
    idle.send("GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(
        idle.response().0,
        200,
        "the keep-alive connection's request"
    );
    wait_read_by_server(port, &idle);
    // A client that connected and said nothing: not even a TLS ClientHello.
    let silent = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    silent.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut silent = Client {
        port: silent.local_addr().expect("addr").port(),
        stream: Box::new(silent),
    };
    wait_read_by_server(port, &silent);

    dw.signal("TERM");

    // The listener closes at once: new connections are refused while the
    // slow request still holds the process.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connecting after SIGTERM: {e}"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "still accepting connections {PATIENCE:?} after SIGTERM:\n{}",
            dw.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        idle.closed_by_server(),
        "the idle keep-alive connection stayed open after SIGTERM"
    );
    assert!(
        silent.closed_by_server(),
        "the silent connection stayed open after SIGTERM"
    );
    assert!(
        still_running(&mut dw),
        "dockwatch exited with a request in progress:\n{}",
        dw.log()
    );

    // The rest of the request: it is answered in full, and the connection
    // closes after it.
    slow.send("\r\n");
    let (status, head, body) = slow.response();
    assert_eq!(status, 200, "{head}{body}\nlog:\n{}", dw.log());
    assert!(
        body.contains("dockwatch_daemon_up{daemon=\"a\"} 1"),
        "not a full scrape:\n{body}"
    );
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "the last response should say the connection closes:\n{head}"
    );
    assert!(
        slow.closed_by_server(),
        "the connection stayed open after its last response"
    );

    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = dw.child.try_wait().expect("wait for dockwatch") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "dockwatch still running {PATIENCE:?} after its last request:\n{}",
            dw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = dw.log();
    assert!(status.success(), "dockwatch exited with {status}:\n{log}");
    assert!(
        !log.contains("were cut"),
        "a request was cut at shutdown:\n{log}"
    );
}

common::test_cases!(graceful_shutdown {
    http_shutdown_finishes_the_request_in_progress_and_refuses_new_ones(Scheme::Http);
    https_shutdown_finishes_the_request_in_progress_and_refuses_new_ones(Scheme::Https);
});

/// A client that opens a connection to the HTTPS port and never sends its
/// `ClientHello` is dropped after the handshake timeout (10 s), and the
/// server answers others meanwhile.
#[test]
fn a_tls_handshake_that_never_finishes_is_dropped() {
    let bed = Testbed::get();
    let tls = tls_client_config(&bed);
    let dw = start(&bed, Scheme::Https, &tls);
    let started = Instant::now();
    let stuck = TcpStream::connect((Ipv4Addr::LOCALHOST, dw.port)).expect("connect");
    stuck
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut stuck = Client {
        port: stuck.local_addr().expect("addr").port(),
        stream: Box::new(stuck),
    };
    let mut other = Client::connect(Scheme::Https, dw.port, &tls).expect("connect");
    other.send("GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(other.response().0, 200, "another client meanwhile");
    assert!(
        stuck.closed_by_server(),
        "the connection without a handshake was still open after 60 s"
    );
    // A lower bound only: it is the timeout that closed it, not a refusal.
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed after {:?}, before the handshake timeout",
        started.elapsed()
    );
}
