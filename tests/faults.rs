//! Faults on real daemons: one frozen with SIGSTOP, one killed and started
//! again, one killed in the middle of a pre-pull, TLS set up wrong in every
//! way an operator can get it wrong, and SIGTERM in the middle of a pull.
//! Every daemon that is stopped, frozen or killed here is one of the test's
//! own; the bed's daemons A and B and its registry are only read from.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Dockwatch, OwnDaemon, Scrape, Scratch, Testbed, Thaw, TimedScrapes, assert_success,
    daemon_toml, free_port, http_get, kill, output_text, own_daemon_with_image, proc_status, reap,
    remove_daemon_dir, running_layers, temp_dir, terminate, tls_daemon_toml, wait_exit, wait_until,
};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(800);
/// Room for a busy two-core machine on top of what the design promises.
const SLACK: Duration = Duration::from_millis(1500);

fn poll_config() -> String {
    format!(
        "[poll]\ninterval = \"{}s\"\ntimeout = \"{}ms\"\n",
        INTERVAL.as_secs(),
        TIMEOUT.as_millis()
    )
}

fn pid_of(own: &OwnDaemon) -> u32 {
    own.child.as_ref().expect("own dockerd runs").id()
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

/// SIGKILLs the test's own dockerd. Its managed containerd dies with it
/// (dockerd starts it with a parent-death signal) and, since PID 1 on these
/// machines reaps orphans only much later, stays a zombie for a while, its
/// pid still in containerd's pidfile: the next dockerd takes that zombie for
/// a running containerd and times out dialing it (seen here: "failed to
/// start containerd: timeout waiting for containerd to start"). So once
/// containerd is dead, its stale pidfile goes, and the next dockerd starts a
/// fresh one.
fn kill_dockerd(own: &mut OwnDaemon) {
    let pidfile = own.dir.join("exec/containerd/containerd.pid");
    let containerd = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let mut child = own.child.take().expect("own dockerd runs");
    child.kill().expect("SIGKILL dockerd");
    child.wait().expect("reap dockerd");
    if let Some(pid) = containerd {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !alive(pid) {
            let _ = std::fs::remove_file(&pidfile);
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn threads(pid: u32) -> usize {
    proc_status(pid, "Threads")
        .and_then(|v| v.first()?.parse().ok())
        .unwrap_or(0)
}

/// Lines of the log that are about daemon `name`.
fn log_lines<'a>(log: &'a str, name: &str, what: &str) -> Vec<&'a str> {
    let field = format!("daemon={name} ");
    log.lines()
        .filter(|l| {
            l.contains(what) && (l.contains(&field) || l.ends_with(&format!("daemon={name}")))
        })
        .collect()
}

// ---------------------------------------------------------------- a. SIGSTOP

#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn frozen_daemon_goes_down_while_metrics_answer_and_nothing_leaks() {
    const FREEZE: Duration = Duration::from_secs(6);
    let bed = Testbed::get();
    let own = OwnDaemon::start(&temp_dir("freeze"));
    let dw = Dockwatch::start(&format!(
        "{}{}{}",
        poll_config(),
        bed.daemon_a("a"),
        daemon_toml("c", &own.host())
    ));
    // With c's numbers there, so their absence during the freeze means
    // something.
    dw.wait_for(
        "a and c up, c's images counted",
        Duration::from_secs(15),
        |s| {
            s.up("a") == Some(1.0)
                && s.up("c") == Some(1.0)
                && s.get("dockwatch_images", &[("daemon", "c")]).is_some()
        },
    );
    let pid = dw.child.id();
    // A few polls first: the connection pools and the runtime's threads
    // reach their steady state; the most seen is the baseline.
    let (mut fds0, mut threads0) = (0, 0);
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(4) {
        dw.scrape();
        fds0 = fds0.max(open_fds(pid));
        threads0 = threads0.max(threads(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = dw.scrape();
    let a_before = before.last_success("a").expect("a has succeeded");

    let dockerd = pid_of(&own);
    kill(dockerd, "STOP");
    let thaw = Thaw(dockerd);
    let frozen = Instant::now();
    let mut scrapes = TimedScrapes::default();
    let mut down_after = None;
    let mut a_values = BTreeSet::new();
    let (mut fds_max, mut threads_max) = (0, 0);
    while frozen.elapsed() < FREEZE {
        let s = scrapes.scrape(dw.port, || {
            format!("{:?} into the freeze", frozen.elapsed())
        });
        let c_down = s.up("c") == Some(0.0);
        match down_after {
            None if c_down => down_after = Some(frozen.elapsed()),
            Some(at) if !c_down => panic!(
                "c went down {at:?} into the freeze but is not down {:?} into it:\n{}",
                frozen.elapsed(),
                s.text
            ),
            _ => {}
        }
        assert_eq!(
            s.up("a"),
            Some(1.0),
            "a went down while c was frozen:\n{}",
            dw.log()
        );
        if let Some(v) = s.last_success("a") {
            a_values.insert(v.to_bits());
        }
        fds_max = fds_max.max(open_fds(pid));
        threads_max = threads_max.max(threads(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = dw.scrape();
    let (fds_end, threads_end) = (open_fds(pid), threads(pid));
    let TimedScrapes {
        worst,
        count: scrapes,
    } = scrapes;
    let a_after = s.last_success("a").expect("a has succeeded");
    eprintln!(
        "freeze: {scrapes} scrapes in {FREEZE:?}, worst /metrics latency {worst:?}; c down {down_after:?} after SIGSTOP; \
         a's last success moved {:.1} s ({} distinct values); fds {fds0} before, {fds_max} at most, {fds_end} at the end; \
         threads {threads0} before, {threads_max} at most, {threads_end} at the end",
        a_after - a_before,
        a_values.len()
    );
    assert!(
        worst < Duration::from_millis(500),
        "worst /metrics latency {worst:?} during the freeze (poll timeout {TIMEOUT:?})"
    );
    let down_after = down_after.unwrap_or_else(|| {
        panic!(
            "c never showed up 0 during a {FREEZE:?} freeze:\n{}\nlog:\n{}",
            s.text,
            dw.log()
        )
    });
    assert!(
        down_after <= TIMEOUT + INTERVAL + SLACK,
        "c showed up 0 only {down_after:?} after SIGSTOP (timeout {TIMEOUT:?} + interval {INTERVAL:?})"
    );
    assert_eq!(s.up("c"), Some(0.0));
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", "c")]),
        None,
        "stale numbers for c"
    );
    assert!(
        a_after >= a_before + FREEZE.as_secs_f64() - 2.5 && a_values.len() >= 4,
        "a stopped updating while c was frozen: last success {a_before} -> {a_after}, {} values",
        a_values.len()
    );
    let timeouts = s.sum(
        "dockwatch_api_request_errors_total",
        &[("daemon", "c"), ("reason", "timeout")],
    );
    assert!(timeouts >= 3.0, "c's calls should time out:\n{}", s.text);
    assert!(
        fds_max <= fds0 + 8 && fds_end <= fds0 + 4,
        "open fds grew over the freeze: {fds0} before, {fds_max} at most, {fds_end} at the end"
    );
    assert!(
        threads_max <= threads0 + 4,
        "threads grew over the freeze: {threads0} before, {threads_max} at most"
    );

    drop(thaw);
    let resumed = Instant::now();
    dw.wait_for("c up again", Duration::from_secs(15), |s| {
        s.up("c") == Some(1.0)
    });
    let back = resumed.elapsed();
    eprintln!("c up again {back:?} after SIGCONT");
    assert!(
        back <= INTERVAL + SLACK,
        "c came back only {back:?} after SIGCONT (interval {INTERVAL:?})"
    );
    // Nothing left behind by the freeze once things settle.
    std::thread::sleep(Duration::from_secs(3));
    let fds_settled = open_fds(pid);
    eprintln!(
        "fds {fds_settled}, threads {} 3 s after SIGCONT",
        threads(pid)
    );
    assert!(
        fds_settled <= fds0 + 2,
        "fds after the freeze: {fds_settled}, before: {fds0}"
    );
    let log = dw.log();
    assert_eq!(log_lines(&log, "c", "daemon is down").len(), 1, "{log}");
    assert_eq!(log_lines(&log, "c", "daemon is up").len(), 2, "{log}");
}

// ---------------------------------------------------------------- b. SIGKILL

#[test]
fn killed_daemon_comes_back_without_restarting_dockwatch() {
    let bed = Testbed::get();
    let (_dir, mut own, cli) = own_daemon_with_image(&bed, "killed", "dwtest/faults:1");
    let mut dw = Dockwatch::start(&format!(
        "{}{}",
        poll_config(),
        daemon_toml("c", &own.host())
    ));
    let first = dw.wait_for("c up with one image", Duration::from_secs(15), |s| {
        s.up("c") == Some(1.0) && s.get("dockwatch_images", &[("daemon", "c")]) == Some(1.0)
    });
    let started_at = first
        .get("process_start_time_seconds", &[])
        .expect("process_start_time_seconds");

    let old = pid_of(&own);
    kill_dockerd(&mut own);
    let killed = Instant::now();
    dw.wait_for("c down", Duration::from_secs(10), |s| {
        s.up("c") == Some(0.0)
    });
    eprintln!("c down {:?} after SIGKILL", killed.elapsed());

    // The same socket, a new process.
    own.restart();
    let new = pid_of(&own);
    assert_ne!(old, new);
    let restarted = Instant::now();
    let s = dw.wait_for("c up again", Duration::from_secs(15), |s| {
        s.up("c") == Some(1.0)
    });
    eprintln!(
        "c up {:?} after the new dockerd answered /_ping",
        restarted.elapsed()
    );
    assert_eq!(s.get("dockwatch_images", &[("daemon", "c")]), Some(1.0));
    assert!(
        dw.child.try_wait().expect("wait").is_none(),
        "dockwatch exited:\n{}",
        dw.log()
    );
    // The process answering /metrics is the one that answered before the kill.
    assert_eq!(
        s.get("process_start_time_seconds", &[]),
        Some(started_at),
        "another dockwatch process answers /metrics:\n{}",
        dw.log()
    );

    // The event stream is back too: tags on the new process get counted
    // (one every 2 s, since the stream reconnects with a backoff).
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 2.. {
        cli.run(&["tag", "dwtest/faults:1", &format!("dwtest/faults:{n}")]);
        std::thread::sleep(Duration::from_secs(2));
        if tags(&dw.scrape()) >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event stream did not come back within 60 s:\n{}",
            dw.log()
        );
    }
    eprintln!(
        "event stream counting again {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(
        dw.scrape().get("dockwatch_images", &[("daemon", "c")]),
        Some(1.0)
    );
    let log = dw.log();
    assert_eq!(log_lines(&log, "c", "daemon is down").len(), 1, "{log}");
    assert_eq!(log_lines(&log, "c", "daemon is up").len(), 2, "{log}");
}

fn tags(s: &Scrape) -> f64 {
    s.get(
        "dockwatch_events_total",
        &[("daemon", "c"), ("type", "image"), ("action", "tag")],
    )
    .unwrap_or(0.0)
}

/// The README promises that events the daemon still holds are not lost
/// across a reconnect or a daemon restart. Here no event came before the
/// kill, and the tag is made on the new daemon while dockwatch's event
/// stream is still waiting out its reconnect backoff (1 s, 2 s, 4 s: the
/// daemon stays down for 4 s, so the next attempt is about 7 s after the
/// kill). The new daemon holds the event; a resume from the time the stream
/// was last connected gets it.
#[test]
fn events_made_while_the_stream_is_reconnecting_are_counted() {
    let bed = Testbed::get();
    let (_dir, mut own, cli) = own_daemon_with_image(&bed, "evgap", "dwtest/faults:1");
    let dw = Dockwatch::start(&format!(
        "{}{}",
        poll_config(),
        daemon_toml("c", &own.host())
    ));
    dw.wait_for("c up", Duration::from_secs(15), |s| s.up("c") == Some(1.0));
    // Let the event stream connect.
    std::thread::sleep(Duration::from_secs(2));
    kill_dockerd(&mut own);
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    own.restart();
    cli.run(&["tag", "dwtest/faults:1", "dwtest/faults:gap"]);
    let tagged = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(45);
    while tags(&dw.scrape()) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the image tag made {tagged:?} after the kill, on the restarted daemon (which still holds the \
             event), was never counted: the event stream resumed without `since` because no event had \
             been seen before the kill, so it only takes events from the moment it reconnected\n\
             (events of containers a daemon restarts at start-up are lost the same way)\nlog:\n{}",
            dw.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "tag made {tagged:?} after the kill counted {:?} after the kill",
        killed.elapsed()
    );
}

// ---------------------------------------------------------------- c. killed mid-pull

/// Layer statuses of a pull that is moving bytes: between a layer's first
/// `Downloading` and its `Pull complete`.
const MOVING: [&str; 4] = ["downloading", "verifying", "downloaded", "extracting"];

/// Waits until a layer of the running pull of `image` on `daemon` is in one
/// of the `statuses`; returns the layers' statuses.
fn wait_for_running_pull(
    dw: &Dockwatch,
    daemon: &str,
    image: &str,
    statuses: &[&str],
) -> Vec<String> {
    let entry = dw.wait_for_pull(
        daemon,
        image,
        "the pull never started",
        Duration::from_secs(60),
        |entry| {
            if running_layers(entry)
                .iter()
                .any(|s| statuses.contains(&s.as_str()))
            {
                return true;
            }
            assert!(
                entry["last"].is_null(),
                "the pull ended before it could be interrupted: {}",
                entry["last"]
            );
            false
        },
    );
    running_layers(&entry)
}

/// dockwatch pre-pulling `image` on `own` (daemon `c`), started without
/// waiting for readiness: the pull starts with the first round.
fn prepulling(own: &OwnDaemon, image: &str) -> Dockwatch {
    Dockwatch::spawn(
        &format!(
            "{}{}[prepull]\ninterval = \"20s\"\njitter = \"0s\"\nstall_timeout = \"5s\"\ntimeout = \"2m\"\n[[prepull.images]]\nimage = \"{image}\"\n",
            poll_config(),
            daemon_toml("c", &own.host()),
        ),
        &[],
    )
}

#[test]
fn daemon_killed_during_a_prepull_fails_as_daemon_and_the_next_round_succeeds() {
    let bed = Testbed::get();
    let big = bed.var("IMAGE_BIG");
    let mut own = OwnDaemon::start(&temp_dir("killpull"));
    let cli = bed.cli_at(&own.host());
    let dw = prepulling(&own, big);
    let layers = wait_for_running_pull(&dw, "c", big, &MOVING);
    kill_dockerd(&mut own);
    let killed = Instant::now();
    eprintln!("dockerd killed with the pull's layers at {layers:?}");

    // The first failure, as /pulls tells it.
    let last = dw.wait_for_pull(
        "c",
        big,
        "no pull result after the kill",
        Duration::from_secs(30),
        |entry| !entry["last"].is_null(),
    )["last"]
        .clone();
    eprintln!("pull ended {:?} after the kill: {last}", killed.elapsed());
    assert_eq!(last["result"], "failed", "{last}");
    assert_eq!(last["reason"], "daemon", "{last}");
    let s = dw.wait_for("the failure counted", Duration::from_secs(10), |s| {
        s.pull_failures("c", big, "daemon") >= 1.0
    });
    assert!(
        s.pulls("c", big, "updated") < 1.0,
        "the pull ended well before the kill:\n{}",
        s.text
    );
    assert_eq!(
        s.get("dockwatch_image_pulls_in_progress", &[("daemon", "c")]),
        Some(0.0),
        "{}",
        s.text
    );
    assert!(
        !s.text
            .contains("\ndockwatch_image_pull_progress_bytes{daemon=\"c\""),
        "progress series left behind:\n{}",
        s.text
    );
    let mut other_reasons = s.pull_failure_reasons("c", big);
    other_reasons.remove("daemon");
    assert!(other_reasons.is_empty(), "{other_reasons:?}");

    own.restart();
    let restarted = Instant::now();
    let s = dw.wait_for("the next round to succeed", Duration::from_secs(90), |s| {
        s.pulls("c", big, "updated") >= 1.0
    });
    eprintln!("pull succeeded {:?} after the restart", restarted.elapsed());
    assert_eq!(
        s.get("dockwatch_image_pulls_in_progress", &[("daemon", "c")]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "dockwatch_image_present",
            &[("daemon", "c"), ("image", big)]
        ),
        Some(1.0)
    );
    assert!(cli.has_image(big), "docker image inspect {big} on c");
}

// ---------------------------------------------------------------- e. SIGTERM mid-pull

#[test]
fn sigterm_during_a_pull_exits_quickly_and_cancels_it() {
    let bed = Testbed::get();
    let big = bed.var("IMAGE_BIG");
    let own = OwnDaemon::start(&temp_dir("termpull"));
    let cli = bed.cli_at(&own.host());
    let mut dw = prepulling(&own, big);
    // While bytes are downloaded (dockerd stops a download on a closed
    // connection; whether it stops an extraction already under way is
    // dockerd's business, not dockwatch's).
    let layers = wait_for_running_pull(&dw, "c", big, &["downloading"]);
    dw.signal("TERM");
    let termed = Instant::now();
    let status = dw
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("dockwatch still running 5 s after SIGTERM:\n{}", dw.log()));
    let exited = termed.elapsed();
    eprintln!(
        "SIGTERM with the pull's layers at {layers:?}; exited {exited:?} later with {status}"
    );
    assert_eq!(status.code(), Some(0), "{}", dw.log());
    let log = dw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pull failed") && l.contains("canceled")),
        "no canceled pull in the log:\n{log}"
    );
    // Undisturbed, this pull takes about a second: had the daemon gone on
    // with it, the image would be there within 5 s.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        assert!(
            !cli.has_image(big),
            "{big} appeared on the daemon {:?} after dockwatch exited: the pull was not canceled",
            watch.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dockerd_log = std::fs::read_to_string(own.dir.join("dockerd.log")).unwrap_or_default();
    let cancel: Vec<_> = dockerd_log
        .lines()
        // What dockerd 20.10 logs when the client of a pull goes away.
        .filter(|l| l.contains("Not continuing with pull after error: context canceled"))
        .collect();
    eprintln!("dockerd's log on the cancel: {cancel:#?}");
    assert!(
        !cancel.is_empty(),
        "dockerd's log does not show the pull canceled:\n{dockerd_log}"
    );
}

// ---------------------------------------------------------------- d. TLS

/// Extra certificates made for these tests, signed by the bed's CA.
struct Certs {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert_success(&out, &format!("openssl {args:?}"));
}

const CA_CNF: &str = "\
[ca]
default_ca = ca_default
[ca_default]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[policy_any]
commonName = supplied
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
[other_server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example,IP:10.9.9.9
";

impl Certs {
    fn make(bed: &Testbed) -> Self {
        let dir = temp_dir("certs");
        let ca = Path::new(bed.var("TLS_CA"));
        let ca_key = ca.with_file_name("ca-key.pem");
        assert!(
            ca_key.exists(),
            "the bed's CA key {} is missing",
            ca_key.display()
        );
        std::fs::write(dir.join("ca.cnf"), CA_CNF).expect("write ca.cnf");
        std::fs::write(dir.join("index.txt"), "").expect("write index");
        std::fs::write(dir.join("serial"), "1000\n").expect("write serial");
        let ca = ca.to_string_lossy().into_owned();
        let ca_key = ca_key.to_string_lossy().into_owned();
        let sign = |name: &str, cn: &str, ext: &str, dates: &[&str]| {
            openssl(
                &dir,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}-key.pem"),
                    "-subj",
                    &format!("/CN={cn}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            let mut args = vec![
                "ca",
                "-batch",
                "-notext",
                "-config",
                "ca.cnf",
                "-cert",
                &ca,
                "-keyfile",
                &ca_key,
                "-extensions",
                ext,
            ];
            args.extend_from_slice(dates);
            let out = format!("{name}-cert.pem");
            let csr = format!("{name}.csr");
            args.extend_from_slice(&["-in", &csr, "-out", &out]);
            openssl(&dir, &args);
        };
        // Valid in 2020 only.
        sign(
            "expired",
            "dockwatch-expired-client",
            "client_ext",
            &[
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20210101000000Z",
            ],
        );
        sign(
            "other",
            "other.example",
            "other_server_ext",
            &["-days", "30"],
        );
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// dockwatch against one badly set-up TLS daemon `x`: it is `up 0`, its
/// errors are counted with a reason in `reasons`, and it logs one line for
/// it. Returns that line.
fn down_with_tls_error(daemon_toml: &str, reasons: &[&str]) -> (Dockwatch, String) {
    let dw = Dockwatch::start(&format!("{}{daemon_toml}", poll_config()));
    let s = dw.wait_for("a few polls of x", Duration::from_secs(20), |s| {
        s.sum("dockwatch_api_request_errors_total", &[("daemon", "x")]) >= 6.0
    });
    assert_eq!(s.up("x"), Some(0.0), "{}", s.text);
    let errors: Vec<(String, String, f64)> = s
        .samples
        .iter()
        .filter(|(n, l, v)| {
            n == "dockwatch_api_request_errors_total"
                && l.get("daemon").is_some_and(|d| d == "x")
                && *v > 0.0
        })
        .map(|(_, l, v)| (l["endpoint"].clone(), l["reason"].clone(), *v))
        .collect();
    eprintln!("errors: {errors:?}");
    assert!(
        errors.iter().all(|(_, r, _)| reasons.contains(&r.as_str())),
        "error reasons {errors:?}, expected only {reasons:?}"
    );
    let log = dw.log();
    let lines = log_lines(&log, "x", "daemon is down");
    assert_eq!(lines.len(), 1, "one log line for the change:\n{log}");
    let line = lines[0].to_owned();
    eprintln!("log: {line}");
    (dw, line)
}

/// The `error=` field of a "daemon is down" line: what dockwatch says is
/// wrong. The fields before it (`daemon=`, `host=`, `reason="tls"`) are on
/// every such line.
fn error_of(line: &str) -> &str {
    line.split_once(" error=").map_or_else(
        || panic!("no error= field in the log line:\n{line}"),
        |(_, e)| e,
    )
}

/// The log line's error says what is wrong (one of `what`, in any case)
/// and names the setting to fix (one of `settings`, as written: a config
/// key or a file path). Both are looked for in the error only: "tls" and
/// "host" are in the fields of every such line.
fn assert_names(line: &str, what: &[&str], settings: &[&str]) {
    let error = error_of(line);
    assert!(
        what.iter()
            .any(|w| error.to_lowercase().contains(&w.to_lowercase())),
        "the log line's error should say {what:?}:\n{line}"
    );
    assert!(
        settings.iter().any(|f| error.contains(f)),
        "the log line's error should name one of {settings:?}:\n{line}"
    );
}

#[test]
fn tls_wrong_ca() {
    let bed = Testbed::get();
    let (_dw, line) = down_with_tls_error(
        &tls_daemon_toml(
            "x",
            bed.var("DOCKER_B"),
            bed.var("WRONG_CA"),
            bed.var("TLS_CERT"),
            bed.var("TLS_KEY"),
        ),
        &["tls"],
    );
    assert_names(&line, &["not signed by"], &["tls.ca", bed.var("WRONG_CA")]);
}

#[test]
fn tls_expired_client_certificate() {
    let bed = Testbed::get();
    let certs = Certs::make(&bed);
    let cert = certs.path("expired-cert.pem");
    let (_dw, line) = down_with_tls_error(
        &tls_daemon_toml(
            "x",
            bed.var("DOCKER_B"),
            bed.var("TLS_CA"),
            &cert,
            &certs.path("expired-key.pem"),
        ),
        &["tls"],
    );
    // The certificate's own file name has "expired" in it: look past it.
    assert!(
        error_of(&line).replace(&cert, "").contains("expired"),
        "dockwatch does not say what is wrong: the client certificate {cert} (tls.cert) expired on \
         2021-01-01, but the log line blames the CA instead (dockerd only answers `bad certificate`; \
         dockwatch can read tls.cert's notAfter itself, at start and when a handshake fails):\n{line}"
    );
    assert_names(&line, &["expired on", "has expired"], &["tls.cert", &cert]);
}

/// A dockerd of the test's own serving mutual TLS on a free port with the
/// given server certificate.
struct TlsDaemon {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl TlsDaemon {
    fn start(bed: &Testbed, cert: &str, key: &str, name: &str) -> Self {
        let dir = temp_dir("tlsd");
        let port = free_port();
        std::fs::write(dir.join("daemon.json"), "{}\n").expect("daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &format!("tcp://127.0.0.1:{port}"), "--tlsverify"])
            .arg(format!("--tlscacert={}", bed.var("TLS_CA")))
            .arg(format!("--tlscert={cert}"))
            .arg(format!("--tlskey={key}"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let d = Self {
            dir,
            child: Some(child),
            port,
        };
        // It answers, with the name its certificate is for.
        wait_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let out = Command::new("curl")
                    .args(["-sf", "--max-time", "2", "--cacert", bed.var("TLS_CA")])
                    .args(["--cert", bed.var("TLS_CERT"), "--key", bed.var("TLS_KEY")])
                    .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
                    .arg(format!("https://{name}:{port}/_ping"))
                    .output()
                    .expect("curl");
                out.status.success() && out.stdout == b"OK"
            },
            || {
                format!(
                    "TLS dockerd did not answer /_ping as {name} within 60 s; log:\n{}",
                    std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
                )
            },
        );
        d
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
        remove_daemon_dir(&self.dir);
    }
}

/// Daemon "x" at 127.0.0.1:`port` over TLS, with the bed's client
/// certificate, key and CA.
fn tls_x_at(bed: &Testbed, port: u16) -> String {
    tls_daemon_toml(
        "x",
        &format!("tcp://127.0.0.1:{port}"),
        bed.var("TLS_CA"),
        bed.var("TLS_CERT"),
        bed.var("TLS_KEY"),
    )
}

#[test]
fn tls_server_certificate_for_another_name() {
    let bed = Testbed::get();
    let certs = Certs::make(&bed);
    let other = TlsDaemon::start(
        &bed,
        &certs.path("other-cert.pem"),
        &certs.path("other-key.pem"),
        "other.example",
    );
    let (_dw, line) = down_with_tls_error(&tls_x_at(&bed, other.port), &["tls"]);
    // The setting is the `host` key (the name in it is what the certificate
    // does not cover).
    assert_names(&line, &["not valid for"], &["`host`"]);
}

#[test]
fn tls_key_that_does_not_match_its_certificate_is_a_config_error() {
    // rustls checks that the key belongs to the certificate when the client
    // config is built, so `check-config` (and `run`, which validates first)
    // refuse it before any connection is made.
    let bed = Testbed::get();
    let dir = Scratch::new("badkey");
    let config = dir.0.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n{}",
            free_port(),
            tls_daemon_toml(
                "x",
                bed.var("DOCKER_B"),
                bed.var("TLS_CA"),
                bed.var("TLS_CERT"),
                bed.var("WRONG_KEY"),
            )
        ),
    )
    .expect("config");
    for cmd in ["check-config", "run"] {
        let mut child = Command::new(common::binary())
            .args(["--config"])
            .arg(&config)
            .arg(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dockwatch");
        if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
            reap(&mut child);
            panic!("dockwatch {cmd} with a mismatched key still runs after 10 s");
        }
        let out = child.wait_with_output().expect("output");
        let text = output_text(&out);
        eprintln!("dockwatch {cmd}: {}\n{text}", out.status);
        assert_eq!(out.status.code(), Some(2), "dockwatch {cmd}:\n{text}");
        assert!(
            text.contains("daemons[0].tls.key"),
            "dockwatch {cmd}:\n{text}"
        );
        assert!(
            text.contains(bed.var("WRONG_KEY")),
            "dockwatch {cmd}:\n{text}"
        );
    }
}

/// A plain-HTTP server (Python's http.server) on a free port.
struct PlainHttp {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PlainHttp {
    fn start() -> Self {
        let dir = temp_dir("plainhttp");
        let port = free_port();
        let log = std::fs::File::create(dir.join("http.log")).expect("log");
        let child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .arg(port.to_string())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("python3 -m http.server");
        let server = Self { child, dir, port };
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || http_get(port, "/").is_ok_and(|(s, _)| s == 200),
            || format!("http.server did not answer within 20 s:\n{}", server.log()),
        );
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("http.log")).unwrap_or_default()
    }
}

impl Drop for PlainHttp {
    fn drop(&mut self) {
        reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tls_daemon_url_pointing_at_a_plain_http_server() {
    let bed = Testbed::get();
    let server = PlainHttp::start();
    // Our own GET / above is the only request it may ever log.
    let before = server.log();
    let (dw, line) = down_with_tls_error(&tls_x_at(&bed, server.port), &["tls", "connect"]);
    drop(dw);
    let log = server.log();
    let after = log.strip_prefix(before.as_str()).unwrap_or(&log);
    eprintln!("http.server saw:\n{after}");
    assert!(
        !after.is_empty(),
        "the plain-HTTP server saw no connection at all"
    );
    for method in ["\"GET ", "\"HEAD ", "\"POST "] {
        assert!(
            !after.contains(method),
            "dockwatch sent a plain-text request to a TLS daemon:\n{after}"
        );
    }
    // "TLS" alone would match the "TLS failed:" every TLS error starts with.
    // What to fix is the port in `host`.
    assert_names(&line, &["plain", "does not speak TLS"], &["port"]);
}
