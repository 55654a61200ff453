//! Property-based fuzzing (proptest) of the two inputs dockwatch takes from
//! outside: the `POST /images/create` stream (parsed by `PullEvent::parse`
//! and folded by `Progress::apply`) and the configuration file
//! (`checks::load`, what `check-config` runs).
//!
//! Every property runs `DW_FUZZ_CASES` cases (default 200: a few seconds in
//! the normal `cargo test`). The long run, a million cases of each property:
//!
//!     DW_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --test-threads=2
//!
//! A failing case is shrunk and saved in `tests/fuzz.proptest-regressions`,
//! which is replayed first on every later run; keep it in the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dockwatch::config;
use dockwatch::folds::progress::{
    ErrorDetail, Finish, Layer, LayerStatus, MAX_LAYERS, Progress, ProgressDetail, PullEvent,
    Totals,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

/// Longest layer id or message the fold keeps, plus the "…" it appends.
const MAX_KEPT: usize = 512 + '…'.len_utf8();

fn cases() -> u32 {
    std::env::var("DW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(200)
}

fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_iters: 10_000,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ the fold

/// The layer statuses that name a layer, without "Already exists".
const FETCH_STATUSES: &[&str] = &[
    "Pulling fs layer",
    "Waiting",
    "Downloading",
    "Verifying Checksum",
    "Download complete",
    "Extracting",
    "Pull complete",
];

/// Every status dockerd and Podman send, and a few that they do not: the
/// `FETCH_STATUSES`, then these.
const OTHER_STATUSES: &[&str] = &[
    "Already exists",
    "Pulling from dwtest/multi",
    "Retrying in 5 seconds",
    "Digest: sha256:14af9c97a6b2d8b05a5e6e0e5c1d8f3c4b0d1f5c2a7a0c1f2b6b8e4d1c3a5b7",
    "Digest: ",
    "Status: Downloaded newer image for 127.0.0.1:5000/dwtest/multi:1",
    "Status: Image is up to date for busybox:latest",
    "Status: something new",
    "Status: ",
    "",
    "downloading",
    "Copying blob 29a62c316671",
];

/// Byte counts as the daemon might send them: absent, small, negative
/// ("unknown"), huge, anything.
fn number() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        2 => Just(None),
        2 => (-3_i64..=3).prop_map(Some),
        4 => (0_i64..=50_000_000).prop_map(Some),
        1 => prop::sample::select(vec![
            i64::MAX,
            i64::MAX - 1,
            i64::MIN,
            -1,
            1 << 32,
            1 << 53,
            1 << 62,
        ])
        .prop_map(Some),
        1 => any::<i64>().prop_map(Some),
    ]
}

fn detail() -> impl Strategy<Value = Option<ProgressDetail>> {
    prop::option::weighted(0.8, (number(), number()))
        .prop_map(|d| d.map(|(current, total)| ProgressDetail { current, total }))
}

/// Layer ids: a small pool (so events of one layer meet), odd ones, and ids
/// around the 512-byte limit (ASCII and multi-byte).
fn any_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => prop::sample::select(vec!["b5bb2653a176", "29a62c316671", "7e14fc045699", "a", "b"])
            .prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => ".{0,16}".prop_map(Some),
        1 => (0..3_usize, 508..=516_usize).prop_map(|(c, n)| Some(["x", "é", "😀"][c].repeat(n / [1, 2, 4][c].max(1)))),
    ]
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,40}",
        1 => (1..3_usize).prop_map(|n| "m".repeat(511 + n)),
        1 => (0..600_usize).prop_map(|n| "é".repeat(n)),
    ]
}

fn any_error() -> impl Strategy<Value = (Option<String>, Option<ErrorDetail>)> {
    prop_oneof![
        20 => Just((None, None)),
        1 => prop::option::of(any_text()).prop_map(|e| (e, None)),
        1 => (prop::option::of(any_text()), prop::option::of(any_text()))
            .prop_map(|(e, m)| (e, Some(ErrorDetail { message: m }))),
    ]
}

fn event_with(
    status: impl Strategy<Value = Option<String>>,
    id: impl Strategy<Value = Option<String>>,
) -> impl Strategy<Value = PullEvent> {
    (status, id, detail(), any_error()).prop_map(
        |(status, id, progress_detail, (error, error_detail))| PullEvent {
            status,
            id,
            progress_detail,
            error,
            error_detail,
        },
    )
}

/// Any well-formed event: real and made-up statuses, any ids, any numbers.
fn any_event() -> impl Strategy<Value = PullEvent> {
    let statuses = [FETCH_STATUSES, OTHER_STATUSES].concat();
    let status = prop_oneof![
        6 => prop::sample::select(statuses).prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
        1 => ".{0,24}".prop_map(Some),
    ];
    event_with(status, any_id())
}

/// Events of a well-behaved pull: each layer has one size, every
/// "Downloading" says it, and `0 <= current <= size`. Sizes stay below
/// 2^40, so no sum can overflow.
fn honest_events() -> impl Strategy<Value = Vec<PullEvent>> {
    let sizes = prop::collection::vec(1_u64..(1 << 40), 4);
    sizes.prop_flat_map(|sizes| {
        let ev = (
            0..4_usize,
            prop::sample::select(FETCH_STATUSES),
            0.0..=1.0_f64,
            any::<bool>(),
        )
            .prop_map(move |(layer, status, frac, cached)| {
                let size = sizes[layer];
                let (status, id) = if cached && layer == 3 {
                    ("Already exists", "c3".to_owned())
                } else {
                    (status, format!("l{layer}"))
                };
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let current = ((size as f64) * frac) as u64;
                let progress_detail = match status {
                    "Downloading" | "Extracting" => Some(ProgressDetail {
                        current: Some(i64::try_from(current.min(size)).expect("< 2^40")),
                        total: Some(i64::try_from(size).expect("< 2^40")),
                    }),
                    _ => Some(ProgressDetail::default()),
                };
                PullEvent {
                    status: Some(status.to_owned()),
                    id: Some(id),
                    progress_detail,
                    ..PullEvent::default()
                }
            });
        prop::collection::vec(ev, 0..60)
    })
}

/// What the fold shows, without the event counter.
type Visible = (Vec<Layer>, Option<String>, Option<Finish>, Option<String>);

fn visible(p: &Progress) -> Visible {
    (
        p.layers.clone(),
        p.digest.clone(),
        p.finish,
        p.error.clone(),
    )
}

fn field_by_field_ge(after: &Totals, before: &Totals) -> bool {
    after.layers >= before.layers
        && after.layers_downloaded >= before.layers_downloaded
        && after.layers_already_exist >= before.layers_already_exist
        && after.downloaded_bytes >= before.downloaded_bytes
        && after.expected_bytes >= before.expected_bytes
        && after.extracted_bytes >= before.extracted_bytes
}

/// Invariants that hold after any sequence of events.
fn check_state(p: &Progress, applied: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(p.events, applied);
    prop_assert!(p.layers.len() <= MAX_LAYERS, "{} layers", p.layers.len());
    let mut ids = BTreeSet::new();
    for l in &p.layers {
        prop_assert!(!l.id.is_empty(), "empty layer id");
        prop_assert!(l.id.len() <= MAX_KEPT, "layer id of {} bytes", l.id.len());
        prop_assert!(ids.insert(&l.id), "layer id {:?} twice", l.id);
        for b in [&l.download, &l.extract] {
            prop_assert!(b.total != Some(0), "a total of 0 is unknown, not 0");
        }
        if l.status.fetched()
            && let Some(t) = l.download.total
        {
            prop_assert!(l.download.current >= t, "fetched layer short: {l:?}");
        }
        if l.status == LayerStatus::Complete
            && let Some(t) = l.extract.total
        {
            prop_assert!(l.extract.current >= t, "complete layer short: {l:?}");
        }
    }
    if let Some(e) = &p.error {
        prop_assert!(e.len() <= MAX_KEPT, "error of {} bytes", e.len());
    }
    if let Some(d) = &p.digest {
        prop_assert!(d.len() <= MAX_KEPT, "digest of {} bytes", d.len());
    }
    let t = p.totals();
    prop_assert_eq!(t.layers, p.layers.len() as u64);
    prop_assert!(
        t.layers_downloaded + t.layers_already_exist <= t.layers,
        "{t:?}"
    );
    let fetched = p.layers.iter().filter(|l| l.status.fetched()).count() as u64;
    let cached = p
        .layers
        .iter()
        .filter(|l| l.status == LayerStatus::AlreadyExists)
        .count() as u64;
    prop_assert_eq!(t.layers_downloaded, fetched);
    prop_assert_eq!(t.layers_already_exist, cached);
    Ok(())
}

/// Folds `events` one by one, checking after each: the invariants; that a
/// layer's status only moves forward and its byte counts and totals only
/// grow; that `apply` says "moved forward" exactly when what the fold shows
/// changed (stall detection relies on it); and that the same event again
/// changes nothing.
///
/// The pull totals themselves can go down in a stream whose "Downloading"
/// and "Extracting" totals disagree (a layer's size is the download total,
/// else the extract total), so only well-behaved streams check that.
fn fold_checked(events: &[PullEvent]) -> Result<Progress, TestCaseError> {
    fold_checked_every(events, 1, false)
}

/// [`fold_checked`], checking only every `stride`-th event and the last
/// (for long streams, where checking every event costs quadratic time),
/// and, if `monotonic_totals`, that no field of the totals goes down.
fn fold_checked_every(
    events: &[PullEvent],
    stride: usize,
    monotonic_totals: bool,
) -> Result<Progress, TestCaseError> {
    let mut p = Progress::default();
    let mut before = p.totals();
    for (n, ev) in events.iter().enumerate() {
        if n % stride != 0 && n + 1 != events.len() {
            p.apply(ev);
            continue;
        }
        let shown = visible(&p);
        let moved = p.apply(ev);
        let applied = n as u64 + 1;
        check_state(&p, applied)?;
        prop_assert_eq!(
            moved,
            visible(&p) != shown,
            "apply returned {} for {:?}",
            moved,
            ev
        );
        // A layer's status only moves forward and its byte counts only grow.
        for (was, now) in shown.0.iter().zip(&p.layers) {
            prop_assert_eq!(&was.id, &now.id, "layers reordered");
            prop_assert!(
                now.status >= was.status,
                "{:?} went back to {:?}",
                was,
                now.status
            );
            for (b0, b1) in [(&was.download, &now.download), (&was.extract, &now.extract)] {
                prop_assert!(
                    b1.current >= b0.current,
                    "bytes went down: {:?} -> {:?}",
                    was,
                    now
                );
                prop_assert!(
                    b1.total >= b0.total,
                    "total went down: {:?} -> {:?}",
                    was,
                    now
                );
            }
        }
        let after = p.totals();
        if monotonic_totals {
            prop_assert!(
                field_by_field_ge(&after, &before),
                "totals went down on {:?}: {:?} -> {:?}",
                ev,
                before,
                after
            );
        }
        before = after;
        let mut again = p.clone();
        prop_assert!(
            !again.apply(ev),
            "the same event twice counted as progress: {:?}",
            ev
        );
        prop_assert_eq!(
            visible(&again),
            visible(&p),
            "repeat changed the fold: {:?}",
            ev
        );
    }
    Ok(p)
}

/// One event as the JSON line dockerd would send.
fn to_json(ev: &PullEvent) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    if let Some(s) = &ev.status {
        m.insert("status".into(), s.clone().into());
    }
    if let Some(s) = &ev.id {
        m.insert("id".into(), s.clone().into());
    }
    if let Some(d) = &ev.progress_detail {
        let mut pd = serde_json::Map::new();
        if let Some(c) = d.current {
            pd.insert("current".into(), c.into());
        }
        if let Some(t) = d.total {
            pd.insert("total".into(), t.into());
        }
        m.insert("progressDetail".into(), pd.into());
    }
    if let Some(e) = &ev.error {
        m.insert("error".into(), e.clone().into());
    }
    if let Some(d) = &ev.error_detail {
        let mut ed = serde_json::Map::new();
        if let Some(msg) = &d.message {
            ed.insert("message".into(), msg.clone().into());
        }
        m.insert("errorDetail".into(), ed.into());
    }
    serde_json::to_vec(&serde_json::Value::Object(m)).expect("serializes")
}

/// How a line gets damaged on the way.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Splice(usize, &'static str),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        1 => (any::<usize>(), prop::sample::select(vec![
            "null", "[]", "{}", "-1", "1e999", "18446744073709551616", "\"x\"", "true",
            ",\"extra\":1", "\\u0000", "\\ud800", "{\"current\":", "9223372036854775808",
        ])).prop_map(|(i, s)| Damage::Splice(i, s)),
    ]
}

fn apply_damage(mut line: Vec<u8>, d: &Damage) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match d {
        Damage::None => {}
        Damage::Truncate(i) => line.truncate(at(*i, line.len())),
        Damage::Flip(i, b) => {
            if !line.is_empty() {
                let i = *i % line.len();
                line[i] = *b;
            }
        }
        Damage::Insert(i, bytes) => {
            let i = at(*i, line.len());
            line.splice(i..i, bytes.iter().copied());
        }
        Damage::Splice(i, s) => {
            let i = at(*i, line.len());
            line.splice(i..i, s.bytes());
        }
    }
    line
}

/// Runs `test` on `DW_FUZZ_CASES` values of `strategy`; failures are
/// shrunk, saved in `tests/fuzz.proptest-regressions` and replayed first on
/// later runs.
fn fuzz<S>(name: &'static str, strategy: &S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let mut config = fuzz_config();
    config.source_file = Some(file!());
    config.test_name = Some(name);
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    let result = runner.run(strategy, test);
    eprintln!(
        "fuzz {name}: {} cases in {:.2} s",
        cases(),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// Any bytes: parse gives an event or an error, never a panic; an event
/// folds.
#[test]
fn parse_any_bytes() {
    fuzz(
        "parse_any_bytes",
        &prop::collection::vec(any::<u8>(), 0..256),
        |line| {
            if let Ok(ev) = PullEvent::parse(&line) {
                fold_checked(&[ev])?;
            }
            Ok(())
        },
    );
}

/// Where a parse error says the line broke: (line, column) from "... at
/// line L column C".
fn error_position(message: &str) -> Option<(usize, usize)> {
    let (_, at) = message.rsplit_once(" at line ")?;
    let (line, column) = at.split_once(" column ")?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// Real-looking JSON lines, some damaged: an undamaged line parses back to
/// its event; a line that does not parse was damaged, and the error says
/// where in it the damage is; whatever still parses folds with every
/// invariant.
#[test]
fn parse_damaged_json() {
    fuzz(
        "parse_damaged_json",
        &prop::collection::vec((any_event(), damage()), 0..24),
        |events| {
            let mut parsed = Vec::new();
            for (ev, d) in &events {
                let line = apply_damage(to_json(ev), d);
                match PullEvent::parse(&line) {
                    Ok(back) => {
                        if matches!(d, Damage::None) {
                            prop_assert_eq!(&back, ev, "round trip");
                        }
                        parsed.push(back);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        prop_assert!(
                            !matches!(d, Damage::None),
                            "an undamaged line did not parse ({}): {}",
                            message,
                            String::from_utf8_lossy(&line)
                        );
                        // Within the line: columns count bytes, and a line
                        // the damage split in two has a second line.
                        let lines = line.split(|&b| b == b'\n').count();
                        let position = error_position(&message);
                        prop_assert!(
                            position.is_some_and(|(l, c)| l >= 1 && l <= lines && c <= line.len()),
                            "the error does not say where in the {}-byte line it broke: {:?}",
                            line.len(),
                            message
                        );
                    }
                }
            }
            fold_checked(&parsed)?;
            Ok(())
        },
    );
}

/// Any events in any order: no panic, and every invariant after every
/// event.
#[test]
fn fold_any_events() {
    fuzz(
        "fold_any_events",
        &prop::collection::vec(any_event(), 0..80),
        |events| {
            fold_checked(&events)?;
            Ok(())
        },
    );
}

/// More layer ids than the fold keeps: bounded, and ids past the limit are
/// ignored however often they come.
#[test]
fn fold_many_layers() {
    fuzz(
        "fold_many_layers",
        &(
            (MAX_LAYERS - 4)..(MAX_LAYERS + 40),
            prop::collection::vec(0..(MAX_LAYERS + 40), 0..40),
        ),
        |(n, repeat)| {
            let mut events: Vec<PullEvent> = (0..n)
                .map(|i| PullEvent {
                    status: Some(
                        if i % 3 == 0 {
                            "Already exists"
                        } else {
                            "Downloading"
                        }
                        .to_owned(),
                    ),
                    id: Some(format!("{i:012x}")),
                    progress_detail: Some(ProgressDetail {
                        current: Some(5),
                        total: Some(10),
                    }),
                    ..PullEvent::default()
                })
                .collect();
            events.extend(repeat.iter().map(|&i| PullEvent {
                status: Some("Pull complete".to_owned()),
                id: Some(format!("{i:012x}")),
                ..PullEvent::default()
            }));
            let p = fold_checked_every(&events, 127, true)?;
            // The first MAX_LAYERS distinct ids, in order of appearance.
            let mut want: Vec<String> = Vec::new();
            for ev in &events {
                let id = ev.id.clone().expect("id");
                if want.len() < MAX_LAYERS && !want.contains(&id) {
                    want.push(id);
                }
            }
            let got: Vec<&str> = p.layers.iter().map(|l| l.id.as_str()).collect();
            prop_assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
            Ok(())
        },
    );
}

/// The same events in another order, or each twice, give the same totals,
/// the same layers (status and bytes) and the same "has an error / a digest
/// / a final status / dockerd's opening line", also for contradictory
/// streams (a layer both downloaded and "Already exists").
#[test]
fn fold_is_order_independent() {
    // A layer's bytes; for a layer that is "already there" only its status:
    // its byte counts are never shown or summed... except extracted bytes,
    // which the totals compare.
    let layers = |p: &Progress| {
        p.layers
            .iter()
            .map(|l| {
                let bytes =
                    (l.status != LayerStatus::AlreadyExists).then_some((l.download, l.extract));
                (l.id.clone(), (l.status, bytes))
            })
            .collect::<BTreeMap<_, _>>()
    };
    fuzz(
        "fold_is_order_independent",
        &prop::collection::vec(any_event(), 0..60)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        |(events, shuffled)| {
            let a = fold_checked(&events)?;
            let b = fold_checked(&shuffled)?;
            prop_assert_eq!(a.totals(), b.totals());
            prop_assert_eq!(layers(&a), layers(&b));
            prop_assert_eq!(a.error.is_some(), b.error.is_some());
            prop_assert_eq!(a.digest.is_some(), b.digest.is_some());
            prop_assert_eq!(a.finish.is_some(), b.finish.is_some());
            prop_assert_eq!(a.dockerd_style, b.dockerd_style);
            let twice: Vec<PullEvent> = shuffled
                .iter()
                .flat_map(|e| [e.clone(), e.clone()])
                .collect();
            let c = fold_checked(&twice)?;
            prop_assert_eq!(a.totals(), c.totals());
            prop_assert_eq!(layers(&a), layers(&c));
            Ok(())
        },
    );
}

/// The smallest contradictory stream `fold_is_order_independent` found: a
/// layer extracted and complete, and also "Already exists". Its totals must
/// not depend on the order.
#[test]
fn contradictory_layer_totals_do_not_depend_on_order() {
    let ev = |status: &str, total: Option<i64>| PullEvent {
        status: Some(status.to_owned()),
        id: Some("a".to_owned()),
        progress_detail: total.map(|t| ProgressDetail {
            current: None,
            total: Some(t),
        }),
        ..PullEvent::default()
    };
    let extracting = ev("Extracting", Some(5));
    let complete = ev("Pull complete", None);
    let cached = ev("Already exists", None);
    let fold = |order: [&PullEvent; 3]| {
        let mut p = Progress::default();
        for e in order {
            p.apply(e);
        }
        p.totals()
    };
    let first = fold([&extracting, &complete, &cached]);
    let last = fold([&cached, &extracting, &complete]);
    assert_eq!(
        first, last,
        "extracted, complete, then already there vs. the reverse"
    );
}

/// A well-behaved pull never shows more downloaded than expected (bars
/// stay at or below 100%), and a layer that ended downloaded counts exactly
/// its size.
#[test]
fn honest_pull_stays_within_expected() {
    fuzz(
        "honest_pull_stays_within_expected",
        &honest_events(),
        |events| {
            let p = fold_checked(&events)?;
            let t = p.totals();
            prop_assert!(
                t.downloaded_bytes <= t.expected_bytes,
                "{:?} {:?}",
                t,
                p.layers
            );
            for l in &p.layers {
                if l.status.fetched()
                    && let Some(size) = l.size()
                {
                    prop_assert_eq!(l.downloaded(), size);
                }
            }
            Ok(())
        },
    );
}

// ------------------------------------------------------------------ the config

/// Stands for the scratch directory in generated configs.
const SCRATCH: &str = "@SCRATCH@";

/// A directory of one test, with the files generated configs may point at:
/// a directory, an empty file, garbage, a PEM-ish file, a secret, docker
/// config.json files good and bad. Removed when dropped.
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dw-fuzz-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a-directory")).expect("scratch dir");
        for (name, body) in [
            ("empty", &b""[..]),
            ("garbage", b"\xff\xfe not a pem \0\n"),
            (
                "fake.pem",
                b"-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
            ),
            ("secret", b"hunter2\n"),
            ("config.json", br#"{"auths":{"r.example":{"auth":"dTpw"}}}"#),
            ("bad-config.json", br#"{"auths":{"r":{"auth":"!!"}}}"#),
        ] {
            std::fs::write(dir.join(name), body).expect("write scratch file");
        }
        let file = dir.join("config.toml");
        Self { dir, file }
    }

    /// Writes `text` (with the scratch directory filled in) as the config.
    fn write(&self, text: &str) -> &Path {
        let text = text.replace(SCRATCH, &self.dir.display().to_string());
        std::fs::write(&self.file, text).expect("write config");
        &self.file
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Loads `text` as a config file: never a panic, and an error names, for
/// every problem, a key and what is wrong.
fn load_checked(
    scratch: &Scratch,
    text: &str,
    env: &[(String, String)],
) -> Result<(), TestCaseError> {
    let path = scratch.write(text);
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.replace(SCRATCH, &scratch.dir.display().to_string()))
    };
    let result = dockwatch::config::load::load_with_env(Some(path), &lookup);
    match result {
        Ok((c, _)) => {
            prop_assert!(c.validate().is_empty());
            prop_assert!(!c.daemons.is_empty(), "no daemon after load");
        }
        Err(e) => {
            prop_assert!(!e.0.is_empty(), "an error without a problem");
            // What check-config prints: every problem, on a line of its own
            // that starts with its key.
            let report = e.to_string();
            for p in &e.0 {
                prop_assert!(!p.key.trim().is_empty(), "problem without a key: {p:?}");
                prop_assert!(
                    !p.message.trim().is_empty(),
                    "problem without a message: {p:?}"
                );
                prop_assert!(
                    report.contains(&format!("\n  {}: {}\n", p.key, p.message)),
                    "problem {:?} is not reported as `  KEY: MESSAGE`:\n{}",
                    p,
                    report
                );
            }
        }
    }
    Ok(())
}

const TABLES: &[&str] = &[
    "[server]",
    "[poll]",
    "[prepull]",
    "[[daemons]]",
    "[daemons.tls]",
    "[[image_filters]]",
    "[[prepull.images]]",
    "[[registries]]",
    "[bogus]",
    "[[server]]",
    "[poll.interval]",
    "[daemons]",
];

const KEYS: &[&str] = &[
    "listen",
    "interval",
    "timeout",
    "images_interval",
    "disk_interval",
    "stall_timeout",
    "concurrency",
    "jitter",
    "docker_config",
    "images",
    "name",
    "host",
    "tls",
    "ca",
    "cert",
    "key",
    "filters",
    "image",
    "daemons",
    "server",
    "username",
    "password_file",
    "password_env",
    "identity_token_file",
    "tls_cert",
    "tls_key",
    "basic_auth_users",
    "enable_reload",
    "password",
    "bogus",
    "\"quoted key\"",
    "a.b",
];

/// Scalar and compound TOML values, good and bad.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "\"15s\"",
            "\"0\"",
            "\"1h30m\"",
            "\"500ms\"",
            "\"0s\"",
            "\"-1s\"",
            "\"1.5s\"",
            "\"99999999999999999999d\"",
            "\"18446744073709551615ms\"",
            "\"213503982334601d\"",
            "\"fast\"",
            "\"\"",
            "\"127.0.0.1:9779\"",
            "\"[::1]:0\"",
            "\"unix:///var/run/docker.sock\"",
            "\"unix://relative\"",
            "\"tcp://127.0.0.1:2376\"",
            "\"tcp://h:0\"",
            "\"tcp://:1\"",
            "\"ftp://x\"",
            "\"busybox\"",
            "\"Bad Name\"",
            "\"a@sha256:x\"",
            "\"r.example:5000/x/y:1\"",
            "\"/nonexistent/x.pem\"",
            "\"/\"",
            "\"é\"",
            "\"\\u0000\"",
            "\"a\\nb\"",
            "0",
            "1",
            "-1",
            "16",
            "17",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            "nan",
            "inf",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "'literal'",
            "\"\"\"multi\nline\"\"\"",
            "[]",
            "{}",
            "[\"a\"]",
            "{ \"true\" = true }",
            "{ reference = [\"ci/*\"] }",
            "{ dangling = 3 }",
            "[1, \"a\"]",
        ])
        .prop_map(str::to_owned),
        "\"[ -~]{0,20}\"".prop_map(|s| s.replace('\\', "/")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|v| {
                let body: Vec<String> = v.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// A line of TOML-ish text.
fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(TABLES).prop_map(str::to_owned),
        6 => (prop::sample::select(KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => ".{0,30}",
        1 => "[\\[\\]={}\",.a-z0-9 #'\\n]{0,30}",
        1 => (1..200_usize).prop_map(|n| format!("x = {}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1..200_usize).prop_map(|n| format!("x = {}1{}", "{ a = ".repeat(n), " }".repeat(n))),
    ]
}

/// Paths a generated config may name.
fn a_path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "/nonexistent/file",
        "a-directory",
        "empty",
        "garbage",
        "fake.pem",
        "secret",
        "config.json",
        "bad-config.json",
        "",
    ])
    .prop_map(|p| {
        if p.is_empty() || p.starts_with('/') {
            p.to_owned()
        } else {
            format!("{SCRATCH}/{p}")
        }
    })
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0_u64..4000, prop::sample::select(vec!["ms", "s", "m", "h", "d"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        1 => prop::sample::select(vec!["0", "", "1h30m", "1x", "-5s", "999999999999999999d", "5"])
            .prop_map(str::to_owned),
    ]
}

fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "local", "build-01", "a.b_c"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "a b", "é", "x/y", "<script>"]).prop_map(str::to_owned),
        1 => (60..70_usize).prop_map(|n| "n".repeat(n)),
    ]
}

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "unix:///var/run/docker.sock", "unix:///nonexistent.sock", "tcp://127.0.0.1:2376",
            "tcp://h:2375/", "tcp://h:0", "tcp://h", "unix://rel", "http://x:1", "", "tcp://[::1]:2376",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,24}".prop_map(|s| s.replace(['\\', '"'], "/")),
    ]
}

fn image_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "busybox", "busybox:latest", "127.0.0.1:5000/dwtest/multi:1", "r.example/x/y:1.0",
            "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "",
            "Bad Name", "x:", ":tag", "x@sha256:12", "localhost/x", "a//b", "/x", "x/",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9:/@._-]{0,40}",
        1 => (500..520_usize).prop_map(|n| "a".repeat(n)),
    ]
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key = "value"` lines for the keys that have a value.
fn write_strings<const N: usize>(t: &mut String, keys: [(&str, Option<String>); N]) {
    for (k, v) in keys {
        if let Some(v) = v {
            // Writing to a String cannot fail.
            let _ = writeln!(t, "{k} = {}", toml_string(&v));
        }
    }
}

/// A structured config: every table, plausible values, some bad.
#[allow(clippy::too_many_lines)]
fn structured_config() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    let server = prop::option::of((
        prop::sample::select(vec![
            "127.0.0.1:0",
            "0.0.0.0:9779",
            "[::1]:9779",
            "nowhere",
            "127.0.0.1:99999",
        ]),
        prop::option::of(a_path()),
        prop::option::of(a_path()),
        prop::collection::vec(
            (
                prop_oneof![name_text(), Just("a:b".to_owned())],
                prop_oneof![
                    Just("$2y$05$abcdefghijklmnopqrstuu5Fq4l9b4J3n8QxR2iY0o1m7e8s9H9Vq".to_owned()),
                    Just("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned()),
                    Just("$2y$".to_owned()),
                    "\\$2[abxy]\\$[0-9]{2}\\$[./A-Za-z0-9]{0,60}",
                    ".{0,30}",
                ],
            ),
            0..3,
        ),
        prop::option::of(prop::sample::select(vec!["true", "false", "1", "\"yes\""])),
    ));
    let poll = prop::option::of((
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
    ));
    let tls = prop::option::of((a_path(), a_path(), a_path(), any::<bool>()));
    let daemon = (name_text(), host_text(), tls);
    let daemons = prop::collection::vec(daemon, 0..4);
    let filter_values = prop_oneof![
        prop::collection::vec("[a-z*/:=.-]{0,12}", 0..3).prop_map(|v| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        Just("{ \"true\" = true, \"false\" = false }".to_owned()),
        Just("3".to_owned()),
        Just("{ x = \"y\" }".to_owned()),
    ];
    let filter = (
        name_text(),
        prop::collection::vec(
            (
                prop::sample::select(vec!["reference", "dangling", "label", "before", "bogus"]),
                filter_values,
            ),
            0..3,
        ),
    );
    let filters = prop::collection::vec(filter, 0..3);
    let prepull = prop::option::of((
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
        prop::option::of(duration_text()),
        prop::option::of(prop_oneof![(0_i64..20).boxed(), any::<i64>().boxed()]),
        prop::option::of(a_path()),
    ));
    let images = prop::collection::vec(
        (
            image_text(),
            prop::option::of(prop::collection::vec(name_text(), 0..3)),
        ),
        0..4,
    );
    let registry = (
        prop::sample::select(vec![
            "r.example",
            "127.0.0.1:5000",
            "",
            "https://r.example/",
            "docker.io",
        ]),
        prop::option::of(name_text()),
        prop::option::of(a_path()),
        prop::option::of(prop::sample::select(vec![
            "DW_FUZZ_UNSET_VAR",
            "PATH",
            "HOME",
            "",
        ])),
        prop::option::of(a_path()),
    );
    let registries = prop::collection::vec(registry, 0..3);
    let env = prop::collection::vec(
        (
            prop::sample::select(vec![
                "DOCKER_HOST",
                "DOCKER_TLS_VERIFY",
                "DOCKER_CERT_PATH",
                "HOME",
            ]),
            prop_oneof![
                host_text(),
                a_path(),
                Just("1".to_owned()),
                Just(String::new())
            ],
        ),
        0..4,
    );
    (
        server, poll, daemons, filters, prepull, images, registries, env,
    )
        .prop_map(
            |(server, poll, daemons, filters, prepull, images, registries, env)| {
                let q = toml_string;
                let mut t = String::new();
                if let Some((listen, cert, key, users, reload)) = server {
                    let _ = writeln!(t, "[server]\nlisten = {}", q(listen));
                    if let Some(c) = cert {
                        let _ = writeln!(t, "tls_cert = {}", q(&c));
                    }
                    if let Some(k) = key {
                        let _ = writeln!(t, "tls_key = {}", q(&k));
                    }
                    if let Some(r) = reload {
                        let _ = writeln!(t, "enable_reload = {r}");
                    }
                    if !users.is_empty() {
                        let body: Vec<String> = users
                            .iter()
                            .map(|(u, h)| format!("{} = {}", q(u), q(h)))
                            .collect();
                        let _ = writeln!(t, "basic_auth_users = {{ {} }}", body.join(", "));
                    }
                }
                if let Some((i, to, ii, di)) = poll {
                    t += "[poll]\n";
                    write_strings(
                        &mut t,
                        [
                            ("interval", i),
                            ("timeout", to),
                            ("images_interval", ii),
                            ("disk_interval", di),
                        ],
                    );
                }
                for (name, host, tls) in &daemons {
                    let _ = writeln!(t, "[[daemons]]\nname = {}\nhost = {}", q(name), q(host));
                    if let Some((ca, cert, key, all)) = tls {
                        let _ = writeln!(t, "[daemons.tls]\nca = {}\ncert = {}", q(ca), q(cert));
                        if *all {
                            let _ = writeln!(t, "key = {}", q(key));
                        }
                    }
                }
                for (name, fs) in &filters {
                    let body: Vec<String> = fs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    let _ = writeln!(
                        t,
                        "[[image_filters]]\nname = {}\nfilters = {{ {} }}",
                        q(name),
                        body.join(", ")
                    );
                }
                if let Some((i, to, st, j, c, dc)) = prepull {
                    t += "[prepull]\n";
                    write_strings(
                        &mut t,
                        [
                            ("interval", i),
                            ("timeout", to),
                            ("stall_timeout", st),
                            ("jitter", j),
                        ],
                    );
                    if let Some(c) = c {
                        let _ = writeln!(t, "concurrency = {c}");
                    }
                    if let Some(dc) = dc {
                        let _ = writeln!(t, "docker_config = {}", q(&dc));
                    }
                }
                for (image, ds) in &images {
                    let _ = writeln!(t, "[[prepull.images]]\nimage = {}", q(image));
                    if let Some(ds) = ds {
                        let list: Vec<String> = ds.iter().map(|d| q(d)).collect();
                        let _ = writeln!(t, "daemons = [{}]", list.join(", "));
                    }
                }
                for (server, user, pf, pe, tf) in &registries {
                    let _ = writeln!(t, "[[registries]]\nserver = {}", q(server));
                    if let Some(u) = user {
                        let _ = writeln!(t, "username = {}", q(u));
                    }
                    if let Some(p) = pf {
                        let _ = writeln!(t, "password_file = {}", q(p));
                    }
                    if let Some(p) = pe {
                        let _ = writeln!(t, "password_env = {}", q(p));
                    }
                    if let Some(p) = tf {
                        let _ = writeln!(t, "identity_token_file = {}", q(p));
                    }
                }
                let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                (t, env)
            },
        )
}

/// Any text at all as a config file.
#[test]
fn config_any_text() {
    let scratch = Scratch::new("any-text");
    fuzz("config_any_text", &".{0,300}", |text| {
        load_checked(&scratch, &text, &[])
    });
}

/// TOML-ish text: real tables and keys, good and bad values, deep nesting.
#[test]
fn config_tomlish() {
    let scratch = Scratch::new("tomlish");
    fuzz(
        "config_tomlish",
        &prop::collection::vec(toml_line(), 0..24),
        |lines| load_checked(&scratch, &lines.join("\n"), &[]),
    );
}

/// Well-formed TOML of the config's shape with random (often bad) values,
/// and the docker CLI's variables for the default daemon.
#[test]
fn config_structured() {
    let scratch = Scratch::new("structured");
    fuzz("config_structured", &structured_config(), |(text, env)| {
        load_checked(&scratch, &text, &env)
    });
}

/// The generators' own TOML quoting reads back as the string it quoted
/// (else the structured configs would mostly be syntax errors).
#[test]
fn toml_quoting_round_trips() {
    fuzz("toml_quoting_round_trips", &".{0,40}", |text| {
        let doc = format!("x = {}", toml_string(&text));
        let back: String = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&doc),
        )
        .extract_inner("x")
        .map_err(|e| TestCaseError::fail(format!("{doc:?}: {e}")))?;
        prop_assert_eq!(back, text);
        Ok(())
    });
}

/// The duration parser on its own: never a panic, and what it accepts it
/// accepts the same after trimming.
#[test]
fn durations_any_text() {
    fuzz("durations_any_text", &"[0-9a-z ]{0,12}|.{0,12}", |text| {
        if let Ok(d) = config::parse_duration(&text) {
            prop_assert_eq!(config::parse_duration(text.trim()), Ok(d));
        }
        Ok(())
    });
}

/// The host URL parser on its own: never a panic.
#[test]
fn hosts_any_text() {
    fuzz(
        "hosts_any_text",
        &"(unix|tcp|http)://[ -~]{0,24}|.{0,24}",
        |text| {
            let _ = config::parse_host(&text);
            Ok(())
        },
    );
}
