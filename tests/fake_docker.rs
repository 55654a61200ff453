//! A fake Docker Engine API over plain HTTP on 127.0.0.1, for what a real
//! dockerd will not do on demand: a pull stream that is cut, garbage, one
//! that never ends, a single enormous JSON line, and an answer that never
//! starts. Everything else (`/_ping`, `/version`, `/info`, the lists,
//! `/events`) is answered as a quiet dockerd would.
//!
//! Each fault is driven through `dockwatch pull` (exit code 1, "failed
//! (REASON)", bounded time, bounded resident memory, no panic) and all of
//! them at once through `dockwatch run` with pre-pulls (/metrics keeps
//! answering fast, the daemon stays up, every pull ends classified, and no
//! pull connection is left open behind a finished pull).
#![allow(clippy::cast_precision_loss)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{Dockwatch, Scratch, TimedScrapes, http_get, proc_status, reap};

/// `[prepull]` limits used throughout.
const STALL: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(20);
/// Resident memory a pull (or a whole `dockwatch run`) must stay under.
const MAX_RSS_KB: u64 = 100 * 1024;
/// Size of the one JSON line without a newline.
const HUGE_LINE_BYTES: u64 = 200 * 1024 * 1024;

/// What the fake answers to `POST /images/create`, picked by the image's
/// repository name (`fake/<mode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// A few valid lines, then the connection is cut in the middle of a
    /// chunk: the chunked body never gets its last chunk.
    Truncated,
    /// dockerd's first lines, then a close-delimited body ends cleanly,
    /// without a final `Status:` line.
    Ended,
    /// Podman's wording (no `Pulling from`, no final status, as its
    /// successful streams are), but the body ends cleanly while a layer is
    /// still at 1000 of 10 MB: a pull that did not finish.
    PodmanCut,
    /// Binary noise (with newlines), then the connection is held open.
    Garbage,
    /// The same `Downloading` line every 100 ms, forever: no progress.
    Endless,
    /// `Downloading` one more byte every 500 ms: progress, but never done.
    Trickle,
    /// One JSON line of 200 MiB, streamed, with no newline.
    Huge,
    /// The request is read, and nothing is ever sent back.
    Silent,
}

impl Mode {
    const ALL: [Self; 8] = [
        Self::Truncated,
        Self::Ended,
        Self::PodmanCut,
        Self::Garbage,
        Self::Endless,
        Self::Trickle,
        Self::Huge,
        Self::Silent,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Ended => "ended",
            Self::PodmanCut => "podman-cut",
            Self::Garbage => "garbage",
            Self::Endless => "endless",
            Self::Trickle => "trickle",
            Self::Huge => "huge",
            Self::Silent => "silent",
        }
    }

    fn image(self) -> String {
        format!("fake/{}:1", self.name())
    }

    /// The failure reasons that describe this fault truthfully.
    fn reasons(self) -> &'static [&'static str] {
        match self {
            // The daemon's stream broke or ended without a result.
            Self::Truncated | Self::Ended | Self::PodmanCut | Self::Garbage => &["daemon"],
            // Nothing new for stall_timeout.
            Self::Endless | Self::Silent => &["stalled"],
            // Progress, but the whole pull is over prepull.timeout.
            Self::Trickle => &["timeout"],
            // Cut for a line that is too long, or for no progress.
            Self::Huge => &["daemon", "stalled"],
        }
    }

    /// How long the pull may take before it must have ended.
    fn bound(self) -> Duration {
        match self {
            Self::Trickle => TIMEOUT + Duration::from_secs(8),
            _ => STALL + Duration::from_secs(6),
        }
    }

    /// What a wrong result would mean, for the failure message.
    fn note(self) -> &'static str {
        match self {
            Self::PodmanCut => {
                "Podman's streams carry no final status, so dockwatch takes a clean end of a \
                 Podman-shaped stream for success (Progress::ending_without_status); but here a layer \
                 never said `Download complete`, so the pull did not finish"
            }
            _ => "",
        }
    }

    fn from_image(from_image: &str) -> Option<Self> {
        let repo = from_image.rsplit('/').next()?;
        let repo = repo.split([':', '@']).next()?;
        Self::ALL.into_iter().find(|m| m.name() == repo)
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Stats {
    requests: Mutex<Vec<String>>,
    /// Pull connections open now and at most, per mode.
    open: Mutex<BTreeMap<Mode, (u32, u32)>>,
    pulls: Mutex<BTreeMap<Mode, u32>>,
    /// Bytes of the huge line the client took (written into the socket).
    huge_sent: AtomicU64,
}

impl Stats {
    fn open_pull(&self, mode: Mode) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let e = open.entry(mode).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        *self
            .pulls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(mode)
            .or_default() += 1;
    }

    fn close_pull(&self, mode: Mode) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let e = open.entry(mode).or_default();
        e.0 = e.0.saturating_sub(1);
    }

    /// Pull connections of `mode` open now, and at most so far.
    fn open_counts(&self, mode: Mode) -> (u32, u32) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&mode)
            .copied()
            .unwrap_or_default()
    }

    fn open_now(&self, mode: Mode) -> u32 {
        self.open_counts(mode).0
    }

    fn max_open(&self, mode: Mode) -> u32 {
        self.open_counts(mode).1
    }

    fn pulls(&self, mode: Mode) -> u32 {
        self.pulls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&mode)
            .copied()
            .unwrap_or(0)
    }
}

/// Closes the pull's count when its connection handler ends, however.
struct PullGuard<'a>(&'a Stats, Mode);

impl Drop for PullGuard<'_> {
    fn drop(&mut self) {
        self.0.close_pull(self.1);
    }
}

/// The fake daemon: a listener thread and one thread per connection.
#[derive(Debug)]
struct FakeDocker {
    port: u16,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl FakeDocker {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake daemon");
        let port = listener.local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&stats), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    // A client that went away is the normal end of a stream.
                    let _ = serve(conn, &s);
                });
            }
        });
        Self { port, stats, stop }
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.stats
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    query: String,
}

/// Reads one request head and discards its body; `None` at a clean end.
fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut length = 0_usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        if k == "content-length" {
            length = v.parse().unwrap_or(0);
        } else if k == "transfer-encoding" && v.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut skip = vec![0; n + 2];
            r.read_exact(&mut skip)?;
            if n == 0 {
                break;
            }
        }
    } else if length > 0 {
        let mut skip = vec![0; length];
        r.read_exact(&mut skip)?;
    }
    Ok(Some(Request {
        method,
        path,
        query,
    }))
}

fn respond(w: &mut impl Write, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status}\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nServer: Docker/20.10.99-fake (linux)\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

/// The head of a 200 stream, as dockerd sends it.
fn stream_head(w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.99-fake (linux)\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    w.flush()
}

fn chunk(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

/// Blocks until the client closes the connection.
fn hold(r: &mut impl Read) {
    let mut buf = [0_u8; 4096];
    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
}

const VERSION: &str = r#"{"Platform":{"Name":"Fake Docker Engine"},"Version":"20.10.99-fake","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"fake","GoVersion":"go1.19","Os":"linux","Arch":"amd64","KernelVersion":"6.1.0","BuildTime":"2023-01-01T00:00:00.000000000+00:00"}"#;
const INFO: &str = r#"{"ID":"FAKE:FAKE","Containers":0,"ContainersRunning":0,"ContainersPaused":0,"ContainersStopped":0,"Images":0,"Driver":"overlay2","Name":"fake","ServerVersion":"20.10.99-fake","OSType":"linux","Architecture":"x86_64","NCPU":2,"MemTotal":1073741824}"#;
const DF: &str = r#"{"LayersSize":0,"Images":[],"Containers":[],"Volumes":[],"BuildCache":[]}"#;

fn serve(conn: TcpStream, stats: &Stats) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    while let Some(req) = read_request(&mut r)? {
        stats
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{} {}?{}", req.method, req.path, req.query));
        // As dockerd: a /vX.Y prefix names the version the client speaks.
        let path = match req.path.strip_prefix("/v") {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                &rest[rest.find('/').unwrap_or(rest.len())..]
            }
            _ => req.path.as_str(),
        };
        match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/_ping") => {
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nOK"
                )?;
                w.flush()?;
            }
            ("GET", "/version") => respond(&mut w, "200 OK", VERSION)?,
            ("GET", "/info") => respond(&mut w, "200 OK", INFO)?,
            ("GET", "/images/json" | "/containers/json") => respond(&mut w, "200 OK", "[]")?,
            ("GET", "/system/df") => respond(&mut w, "200 OK", DF)?,
            ("GET", "/events") => {
                // A quiet daemon: a stream that never says anything.
                stream_head(&mut w)?;
                hold(&mut r);
                return Ok(());
            }
            ("POST", "/images/create") => {
                let from = req
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fromImage="))
                    .unwrap_or_default()
                    .replace("%2F", "/")
                    .replace("%2f", "/");
                let Some(mode) = Mode::from_image(&from) else {
                    respond(
                        &mut w,
                        "404 Not Found",
                        r#"{"message":"manifest unknown: fake daemon"}"#,
                    )?;
                    continue;
                };
                stats.open_pull(mode);
                let _guard = PullGuard(stats, mode);
                // Errors here are the client hanging up: the end of the pull.
                let _ = pull(mode, &mut r, &mut w, stats);
                return Ok(());
            }
            ("GET", p) if p.starts_with("/images/") && p.ends_with("/json") => respond(
                &mut w,
                "404 Not Found",
                r#"{"message":"No such image: fake"}"#,
            )?,
            _ => respond(&mut w, "404 Not Found", r#"{"message":"page not found"}"#)?,
        }
    }
    Ok(())
}

fn line(status: &str, id: &str, detail: &str) -> Vec<u8> {
    format!("{{\"status\":\"{status}\",\"progressDetail\":{{{detail}}},\"id\":\"{id}\"}}\r\n")
        .into_bytes()
}

/// 64 KiB of binary noise (with a few newlines) that starts like a PNG.
fn noise() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let mut noise = b"\x89PNG\r\n\x1a\n\0\xff garbage\n".to_vec();
    while noise.len() < 64 * 1024 {
        // xorshift: cheap, deterministic noise.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x.to_le_bytes()[0]);
    }
    noise
}

/// Answers one `POST /images/create` the way `mode` says.
fn pull(
    mode: Mode,
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    stats: &Stats,
) -> std::io::Result<()> {
    let layer = "0123456789ab";
    let begin = |w: &mut TcpStream| -> std::io::Result<()> {
        stream_head(w)?;
        chunk(
            w,
            format!(
                "{{\"status\":\"Pulling from fake/{}\",\"id\":\"1\"}}\r\n",
                mode.name()
            )
            .as_bytes(),
        )?;
        chunk(w, &line("Pulling fs layer", layer, ""))?;
        chunk(
            w,
            &line("Downloading", layer, "\"current\":1000,\"total\":10000000"),
        )
    };
    match mode {
        Mode::Truncated => {
            begin(w)?;
            // Half a chunk, then the connection is cut.
            w.write_all(b"40\r\n{\"status\":\"Downloading\",\"progre")?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(100));
            w.shutdown(Shutdown::Both)?;
        }
        Mode::Ended | Mode::PodmanCut => {
            w.write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")?;
            if mode == Mode::Ended {
                w.write_all(b"{\"status\":\"Pulling from fake/ended\",\"id\":\"1\"}\r\n")?;
            } else {
                // A second layer that did finish, as Podman words it.
                w.write_all(&line("Pulling fs layer", "ba9876543210", ""))?;
                w.write_all(&line("Download complete", "ba9876543210", ""))?;
            }
            w.write_all(&line("Pulling fs layer", layer, ""))?;
            w.write_all(&line(
                "Downloading",
                layer,
                "\"current\":1000,\"total\":10000000",
            ))?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(100));
            w.shutdown(Shutdown::Both)?;
        }
        Mode::Garbage => {
            stream_head(w)?;
            let noise = noise();
            for _ in 0..16 {
                chunk(w, &noise)?;
            }
            hold(r);
        }
        Mode::Endless => {
            begin(w)?;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                chunk(
                    w,
                    &line("Downloading", layer, "\"current\":1000,\"total\":10000000"),
                )?;
            }
        }
        Mode::Trickle => {
            begin(w)?;
            for current in 1001.. {
                std::thread::sleep(Duration::from_millis(500));
                chunk(
                    w,
                    &line(
                        "Downloading",
                        layer,
                        &format!("\"current\":{current},\"total\":10000000"),
                    ),
                )?;
            }
        }
        Mode::Huge => {
            begin(w)?;
            chunk(
                w,
                b"{\"status\":\"Downloading\",\"progressDetail\":{},\"id\":\"",
            )?;
            let block = vec![b'a'; 64 * 1024];
            let mut sent = 0;
            while sent < HUGE_LINE_BYTES {
                chunk(w, &block)?;
                sent += block.len() as u64;
                stats.huge_sent.store(sent, Ordering::SeqCst);
            }
            chunk(w, b"\"}\r\n")?;
            hold(r);
        }
        Mode::Silent => hold(r),
    }
    Ok(())
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    proc_status(pid, "VmRSS")?.first()?.parse().ok()
}

/// CPU seconds (user + system) a process used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

#[derive(Debug)]
struct PullRun {
    code: Option<i32>,
    output: String,
    elapsed: Duration,
    max_rss_kb: u64,
    cpu: f64,
}

/// Kills the child if the test fails half-way.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        reap(&mut self.0);
    }
}

/// Runs `dockwatch pull` against the fake for `mode`, sampling its memory.
fn dockwatch_pull(fake: &FakeDocker, mode: Mode) -> PullRun {
    let scratch = Scratch::new(&format!("fake-{}", mode.name()));
    let dir = &scratch.0;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[daemons]]\nname = \"fake\"\nhost = \"{}\"\n[prepull]\nstall_timeout = \"{}s\"\ntimeout = \"{}s\"\n",
            fake.host(),
            STALL.as_secs(),
            TIMEOUT.as_secs()
        ),
    )
    .expect("write config");
    let out = std::fs::File::create(dir.join("out")).expect("out file");
    let err = out.try_clone().expect("clone file");
    let started = Instant::now();
    let child = Command::new(common::binary())
        .args(["pull", "--config"])
        .arg(&config)
        .arg(mode.image())
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn dockwatch pull");
    let pid = child.id();
    let mut child = Reap(child);
    let mut max_rss_kb = 0;
    let mut cpu = 0.0;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        max_rss_kb = max_rss_kb.max(rss_kb(pid).unwrap_or(0));
        cpu = cpu_seconds(pid).unwrap_or(cpu);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "dockwatch pull of {} still running after 90 s (a stuck pull); output so far:\n{}",
            mode.image(),
            std::fs::read_to_string(dir.join("out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let output = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    PullRun {
        code: status.code(),
        output,
        elapsed,
        max_rss_kb,
        cpu,
    }
}

/// One fault through `dockwatch pull`: a classified failure, in time, in
/// bounded memory, without a panic.
fn pull_fails_cleanly(mode: Mode) -> PullRun {
    let fake = FakeDocker::start();
    let run = dockwatch_pull(&fake, mode);
    eprintln!(
        "{}: exit {:?} after {:.2} s, max RSS {} KiB, CPU {:.2} s, huge line bytes taken {}; output:\n{}",
        mode.name(),
        run.code,
        run.elapsed.as_secs_f64(),
        run.max_rss_kb,
        run.cpu,
        fake.stats.huge_sent.load(Ordering::SeqCst),
        run.output
    );
    assert!(
        !run.output.contains("panicked"),
        "dockwatch pull panicked on the {} stream:\n{}",
        mode.name(),
        run.output
    );
    assert_eq!(
        run.code,
        Some(1),
        "dockwatch pull of the {} stream should exit 1 (a failed pull). {}\n{}",
        mode.name(),
        mode.note(),
        run.output
    );
    assert!(
        mode.reasons()
            .iter()
            .any(|r| run.output.contains(&format!("failed ({r})"))),
        "the {} stream should fail with one of {:?}:\n{}",
        mode.name(),
        mode.reasons(),
        run.output
    );
    assert!(
        run.elapsed <= mode.bound(),
        "the {} pull took {:?}, more than {:?}",
        mode.name(),
        run.elapsed,
        mode.bound()
    );
    assert!(
        run.max_rss_kb > 0 && run.max_rss_kb < MAX_RSS_KB,
        "dockwatch pull of the {} stream reached {} KiB resident (limit {MAX_RSS_KB} KiB)",
        mode.name(),
        run.max_rss_kb
    );
    assert!(
        fake.stats.pulls(mode) == 1,
        "the fake saw {} pulls of {}; requests: {:?}",
        fake.stats.pulls(mode),
        mode.name(),
        fake.requests()
    );
    run
}

common::test_cases!(pull_fails_cleanly {
    truncated_stream_fails_as_daemon(Mode::Truncated);
    stream_ending_without_a_status_fails_as_daemon(Mode::Ended);
    /// A Podman-shaped stream (Podman never sends a final status, so a clean
    /// end means success to dockwatch) that ends with a layer unfinished.
    podman_style_stream_ending_mid_layer_fails_as_daemon(Mode::PodmanCut);
    garbage_stream_fails_as_daemon(Mode::Garbage);
});

#[test]
fn endless_stream_without_progress_stalls() {
    let run = pull_fails_cleanly(Mode::Endless);
    assert!(run.elapsed >= STALL, "{run:?}");
}

#[test]
fn trickling_stream_times_out() {
    let run = pull_fails_cleanly(Mode::Trickle);
    assert!(run.elapsed >= TIMEOUT, "{run:?}");
}

#[test]
fn huge_line_is_bounded() {
    pull_fails_cleanly(Mode::Huge);
}

#[test]
fn answer_that_never_starts_stalls() {
    let run = pull_fails_cleanly(Mode::Silent);
    assert!(run.elapsed >= STALL, "{run:?}");
}

/// The faults run together under `dockwatch run` (all but the Podman-shaped
/// one, which is about classification only).
const UNDER_RUN: [Mode; 7] = [
    Mode::Truncated,
    Mode::Ended,
    Mode::Garbage,
    Mode::Endless,
    Mode::Trickle,
    Mode::Huge,
    Mode::Silent,
];

/// Every fault at once under `dockwatch run`: /metrics answers throughout,
/// the daemon stays up, each pull ends as a classified failure, no pull
/// connection outlives its pull, and memory stays bounded.
#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn run_keeps_answering_while_pulls_are_stuck() {
    let fake = FakeDocker::start();
    let mut config = format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\ndisk_interval = \"0\"\n[[daemons]]\nname = \"fake\"\nhost = \"{}\"\n[prepull]\ninterval = \"20s\"\njitter = \"0s\"\nstall_timeout = \"{}s\"\ntimeout = \"{}s\"\nconcurrency = {}\n",
        fake.host(),
        STALL.as_secs(),
        TIMEOUT.as_secs(),
        UNDER_RUN.len()
    );
    for mode in UNDER_RUN {
        // Writing to a String cannot fail.
        let _ = writeln!(config, "[[prepull.images]]\nimage = \"{}\"", mode.image());
    }
    let mut dw = Dockwatch::start(&config);
    let pid = dw.child.id();
    let started = Instant::now();
    let mut scrapes = TimedScrapes::default();
    let mut max_rss_kb = 0;
    let mut down = Vec::new();
    let deadline = started + TIMEOUT + Duration::from_secs(40);
    let last = loop {
        let s = scrapes.scrape(dw.port, || format!("after {:?}", started.elapsed()));
        if s.up("fake") != Some(1.0) {
            down.push(started.elapsed());
        }
        max_rss_kb = max_rss_kb.max(rss_kb(pid).unwrap_or(0));
        let done = UNDER_RUN
            .iter()
            .all(|m| !s.pull_failure_reasons("fake", &m.image()).is_empty());
        if done {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "not every fake pull failed within {:?}; last scrape:\n{}\nlog:\n{}",
            deadline - started,
            s.text,
            dw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // A little longer, so the quick failures are retried a few times.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        scrapes.scrape(dw.port, || format!("after {:?}", started.elapsed()));
        max_rss_kb = max_rss_kb.max(rss_kb(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    let TimedScrapes {
        worst,
        count: scrapes,
    } = scrapes;
    eprintln!(
        "run: {scrapes} scrapes in {:.1} s, worst latency {worst:?}, max RSS {max_rss_kb} KiB, huge line bytes taken {}",
        started.elapsed().as_secs_f64(),
        fake.stats.huge_sent.load(Ordering::SeqCst)
    );
    for mode in UNDER_RUN {
        eprintln!(
            "  {}: failures {:?}, pulls {}, open now {}, at most {}",
            mode.name(),
            last.pull_failure_reasons("fake", &mode.image()),
            fake.stats.pulls(mode),
            fake.stats.open_now(mode),
            fake.stats.max_open(mode)
        );
    }
    let log = dw.log();
    assert!(!log.contains("panicked"), "dockwatch panicked:\n{log}");
    assert!(
        dw.child.try_wait().is_ok_and(|s| s.is_none())
            && http_get(dw.port, "/-/healthy").is_ok_and(|(s, _)| s == 200),
        "dockwatch is not healthy any more:\n{log}"
    );
    assert!(
        worst < Duration::from_millis(500),
        "worst /metrics latency {worst:?} while pulls were stuck"
    );
    assert!(
        down.is_empty(),
        "the fake daemon was reported down at {down:?} although it answers every poll:\n{log}"
    );
    for mode in UNDER_RUN {
        let got = last.pull_failure_reasons("fake", &mode.image());
        assert!(
            got.keys().all(|r| mode.reasons().contains(&r.as_str())),
            "{} failed with {got:?}, expected only {:?}",
            mode.name(),
            mode.reasons()
        );
        // One pull of an image at a time: a second open connection means a
        // finished pull left its stream behind.
        assert!(
            fake.stats.max_open(mode) <= 1,
            "{}: {} pull connections were open at once",
            mode.name(),
            fake.stats.max_open(mode)
        );
    }
    assert!(
        max_rss_kb < MAX_RSS_KB,
        "dockwatch run reached {max_rss_kb} KiB resident (limit {MAX_RSS_KB} KiB)"
    );
    // Every failed pull's stream is closed: once dockwatch is told to stop,
    // no pull connection stays open.
    dw.signal("TERM");
    let stop = Instant::now();
    while UNDER_RUN.iter().any(|m| fake.stats.open_now(*m) > 0) {
        assert!(
            stop.elapsed() < Duration::from_secs(10),
            "pull connections still open 10 s after SIGTERM: {:?}",
            UNDER_RUN
                .iter()
                .map(|m| (m.name(), fake.stats.open_now(*m)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README: "A failed image is retried sooner than the interval: after a
/// 32nd of it (at least 1 s), doubling each time". An image whose pulls fail
/// at once must keep being retried on that schedule while another image's
/// pull on the same daemon is stuck (here: trickling until its 20 s
/// timeout), not wait for the stuck one.
#[test]
fn quick_failures_are_retried_while_another_pull_is_stuck() {
    let fake = FakeDocker::start();
    let config = format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\ndisk_interval = \"0\"\n[[daemons]]\nname = \"fake\"\nhost = \"{}\"\n[prepull]\ninterval = \"20s\"\njitter = \"0s\"\nstall_timeout = \"{}s\"\ntimeout = \"{}s\"\nconcurrency = 2\n[[prepull.images]]\nimage = \"{}\"\n[[prepull.images]]\nimage = \"{}\"\n",
        fake.host(),
        STALL.as_secs(),
        TIMEOUT.as_secs(),
        Mode::Trickle.image(),
        Mode::Truncated.image(),
    );
    let dw = Dockwatch::start(&config);
    let started = Instant::now();
    // Backoff 1 s, 2 s, 4 s: attempts at about 0, 1, 3 and 7 s.
    let window = Duration::from_secs(12);
    while started.elapsed() < window && fake.stats.pulls(Mode::Truncated) < 3 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (quick, stuck) = (
        fake.stats.pulls(Mode::Truncated),
        fake.stats.open_now(Mode::Trickle),
    );
    eprintln!(
        "{:?} after start: {quick} pulls of {}, the {} pull open: {stuck}",
        started.elapsed(),
        Mode::Truncated.image(),
        Mode::Trickle.image()
    );
    assert!(
        quick >= 3,
        "in {window:?}, {} was pulled only {quick} time(s) (backoff 1 s, 2 s, 4 s wants 4): its retries \
         wait for the round's slowest pull, {} (open: {stuck}), which only ends at prepull.timeout \
         ({TIMEOUT:?}); log:\n{}",
        Mode::Truncated.image(),
        Mode::Trickle.image(),
        dw.log()
    );
}
