//! A pure fold of the `POST /images/create` stream into per-layer state and
//! pull totals. The same fold feeds the pull metrics, `/pulls` and the
//! terminal bars, so they cannot disagree.
//!
//! The fold is order- and repetition-proof: a layer's status only moves
//! forward, byte counts only grow, and each layer id is one entry however
//! often it appears.

use std::collections::HashMap;

use serde::Deserialize;

/// At most this many layers are tracked; a stream naming more is not a real
/// pull and the rest are ignored, so a hostile stream cannot grow memory.
pub const MAX_LAYERS: usize = 512;
/// Longest layer id or message kept, in bytes.
const MAX_TEXT: usize = 512;

/// One line of the stream, as dockerd and Podman send it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PullEvent {
    pub status: Option<String>,
    pub id: Option<String>,
    #[serde(rename = "progressDetail")]
    pub progress_detail: Option<ProgressDetail>,
    pub error: Option<String>,
    #[serde(rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProgressDetail {
    pub current: Option<i64>,
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    pub message: Option<String>,
}

/// A line that is not a pull event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a pull event: {0}")]
pub struct BadLine(String);

impl PullEvent {
    /// Parses one JSON line of the stream.
    pub fn parse(line: &[u8]) -> Result<Self, BadLine> {
        serde_json::from_slice(line).map_err(|e| BadLine(e.to_string()))
    }

    /// The error this event carries, if any.
    pub fn error_message(&self) -> Option<&str> {
        self.error_detail
            .as_ref()
            .and_then(|d| d.message.as_deref())
            .or(self.error.as_deref())
    }
}

/// Where a layer is. The order is the order of a normal pull; a layer only
/// moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerStatus {
    Waiting,
    Downloading,
    Verifying,
    Downloaded,
    Extracting,
    Complete,
    /// Already on the daemon; nothing to fetch.
    AlreadyExists,
}

impl LayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Downloading => "downloading",
            Self::Verifying => "verifying",
            Self::Downloaded => "downloaded",
            Self::Extracting => "extracting",
            Self::Complete => "complete",
            Self::AlreadyExists => "already_exists",
        }
    }

    /// Fetched from the registry (as opposed to already there or not yet).
    pub fn fetched(self) -> bool {
        matches!(self, Self::Downloaded | Self::Extracting | Self::Complete)
    }
}

/// Bytes done of a phase; `total` when the daemon said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    pub current: u64,
    pub total: Option<u64>,
}

impl Bytes {
    fn update(&mut self, detail: Option<&ProgressDetail>) -> bool {
        let Some(d) = detail else { return false };
        let before = *self;
        // Negative numbers mean "unknown" to the daemon.
        if let Some(t) = d
            .total
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
        {
            self.total = Some(self.total.map_or(t, |old| old.max(t)));
        }
        if let Some(c) = d.current.and_then(|c| u64::try_from(c).ok()) {
            self.current = self.current.max(c);
        }
        *self != before
    }

    fn finish(&mut self) {
        if let Some(t) = self.total {
            self.current = self.current.max(t);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub id: String,
    pub status: LayerStatus,
    pub download: Bytes,
    pub extract: Bytes,
}

impl Layer {
    /// The compressed size, from whichever phase told it.
    pub fn size(&self) -> Option<u64> {
        self.download.total.or(self.extract.total)
    }

    /// Bytes fetched from the registry so far.
    pub fn downloaded(&self) -> u64 {
        match self.status {
            LayerStatus::AlreadyExists => 0,
            s if s.fetched() => self.size().unwrap_or(0).max(self.download.current),
            _ => self.download.current,
        }
    }
}

/// How a pull ended well, from the stream's final status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// "Status: Downloaded newer image for ..."
    Updated,
    /// "Status: Image is up to date for ..."
    UpToDate,
}

/// Totals over all layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub layers: u64,
    pub layers_downloaded: u64,
    pub layers_already_exist: u64,
    pub downloaded_bytes: u64,
    /// Bytes to fetch, as far as the daemon has told sizes.
    pub expected_bytes: u64,
    pub extracted_bytes: u64,
}

/// The folded state of one pull.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// In order of first appearance.
    pub layers: Vec<Layer>,
    pub digest: Option<String>,
    pub finish: Option<Finish>,
    /// The first error the stream carried.
    pub error: Option<String>,
    /// Events folded so far.
    pub events: u64,
    /// dockerd opens every stream with "Pulling from ..."; Podman never does
    /// (nor sends a final status).
    pub dockerd_style: bool,
    index: HashMap<String, usize>,
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Progress {
    /// Folds one event in. Returns true if the pull moved forward (a new
    /// layer, a later status, more bytes, a final status or an error): what
    /// stall detection counts as progress.
    pub fn apply(&mut self, ev: &PullEvent) -> bool {
        self.events += 1;
        if let Some(msg) = ev.error_message() {
            if self.error.is_none() {
                self.error = Some(clip(msg));
                return true;
            }
            return false;
        }
        let Some(status) = ev.status.as_deref() else {
            return false;
        };
        if status.starts_with("Pulling from ") {
            // Says how the stream will end, nothing about bytes: not progress.
            self.dockerd_style = true;
            return false;
        }
        if let Some(rest) = status.strip_prefix("Status: ") {
            let finish = if rest.starts_with("Downloaded newer image") {
                Finish::Updated
            } else if rest.starts_with("Image is up to date") {
                Finish::UpToDate
            } else {
                return false;
            };
            let changed = self.finish != Some(finish);
            self.finish = Some(finish);
            return changed;
        }
        if let Some(digest) = status.strip_prefix("Digest: ") {
            let changed = self.digest.is_none();
            self.digest.get_or_insert_with(|| clip(digest.trim()));
            return changed;
        }
        let to = match status {
            "Pulling fs layer" | "Waiting" => LayerStatus::Waiting,
            "Downloading" => LayerStatus::Downloading,
            "Verifying Checksum" => LayerStatus::Verifying,
            "Download complete" => LayerStatus::Downloaded,
            "Extracting" => LayerStatus::Extracting,
            "Pull complete" => LayerStatus::Complete,
            "Already exists" => LayerStatus::AlreadyExists,
            // "Pulling from ...", "Retrying in N seconds" and anything new
            // say nothing about a layer's bytes.
            _ => return false,
        };
        let Some(id) = ev.id.as_deref().filter(|id| !id.is_empty()) else {
            return false;
        };
        self.layer_event(id, to, ev.progress_detail.as_ref())
    }

    fn layer_event(&mut self, id: &str, to: LayerStatus, detail: Option<&ProgressDetail>) -> bool {
        let mut changed = false;
        // Kept and looked up in the clipped form, so an overlong id is still
        // one layer however often it comes.
        let id = clip(id);
        let i = if let Some(&i) = self.index.get(&id) {
            i
        } else {
            if self.layers.len() >= MAX_LAYERS {
                return false;
            }
            self.index.insert(id.clone(), self.layers.len());
            self.layers.push(Layer {
                id,
                status: LayerStatus::Waiting,
                download: Bytes::default(),
                extract: Bytes::default(),
            });
            changed = true;
            self.layers.len() - 1
        };
        let layer = &mut self.layers[i];
        let from = layer.status;
        // The later status in the enum's order wins, whatever order the
        // events come in. "Already exists" comes instead of a download in
        // real streams; should a stream say both, it is last in the order so
        // the result does not depend on the order.
        let next = from.max(to);
        changed |= next != from;
        layer.status = next;
        match to {
            LayerStatus::Downloading => changed |= layer.download.update(detail),
            LayerStatus::Extracting => changed |= layer.extract.update(detail),
            _ => {}
        }
        if layer.status.fetched() {
            layer.download.finish();
        }
        if layer.status == LayerStatus::Complete {
            layer.extract.finish();
        }
        changed
    }

    /// How a stream that ended without an error or a final status ended:
    /// for Podman's streams that is success, `UpToDate` when every layer
    /// already existed but the one config blob Podman always fetches.
    pub fn ending_without_status(&self) -> Option<Finish> {
        if self.dockerd_style || self.error.is_some() || self.layers.is_empty() {
            return None;
        }
        // A stream cut in the middle of a layer did not end well.
        let finished = |l: &Layer| l.status.fetched() || l.status == LayerStatus::AlreadyExists;
        if !self.layers.iter().all(finished) {
            return None;
        }
        let t = self.totals();
        Some(if t.layers_already_exist > 0 && t.layers_downloaded <= 1 {
            Finish::UpToDate
        } else {
            Finish::Updated
        })
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for l in &self.layers {
            t.layers += 1;
            match l.status {
                LayerStatus::AlreadyExists => t.layers_already_exist += 1,
                s if s.fetched() => t.layers_downloaded += 1,
                _ => {}
            }
            // A hostile stream can claim any size: saturate, never overflow.
            t.downloaded_bytes = t.downloaded_bytes.saturating_add(l.downloaded());
            if l.status != LayerStatus::AlreadyExists {
                t.expected_bytes = t.expected_bytes.saturating_add(l.size().unwrap_or(0));
            }
            if l.status != LayerStatus::AlreadyExists {
                t.extracted_bytes = t.extracted_bytes.saturating_add(l.extract.current);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLD: &str = include_str!("../../tests/streams/dockerd-20.10-cold-3-layers.jsonl");
    const UP_TO_DATE: &str = include_str!("../../tests/streams/dockerd-20.10-up-to-date.jsonl");
    const SHARED: &str = include_str!("../../tests/streams/dockerd-20.10-shared-layers.jsonl");

    fn events(text: &str) -> Vec<PullEvent> {
        text.lines()
            .map(|l| PullEvent::parse(l.as_bytes()).expect("captured line parses"))
            .collect()
    }

    fn fold<'a>(events: impl IntoIterator<Item = &'a PullEvent>) -> Progress {
        let mut p = Progress::default();
        for e in events {
            p.apply(e);
        }
        p
    }

    fn digest_starts_with(p: &Progress, prefix: &str) -> bool {
        p.digest.as_deref().is_some_and(|d| d.starts_with(prefix))
    }

    #[test]
    fn cold_pull_of_three_layers() {
        let p = fold(&events(COLD));
        assert_eq!(p.finish, Some(Finish::Updated));
        assert_eq!(p.error, None);
        assert!(digest_starts_with(&p, "sha256:14af9c97"), "{:?}", p.digest);
        let t = p.totals();
        assert_eq!(t.layers, 3);
        assert_eq!(t.layers_downloaded, 3);
        assert_eq!(t.layers_already_exist, 0);
        // The three compressed sizes the daemon reported.
        assert_eq!(t.downloaded_bytes, 6_002_028 + 3_001_122 + 1_000_497);
        assert_eq!(t.expected_bytes, t.downloaded_bytes);
        assert_eq!(t.extracted_bytes, t.downloaded_bytes);
        assert!(p.layers.iter().all(|l| l.status == LayerStatus::Complete));
        let ids: Vec<_> = p.layers.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["b5bb2653a176", "29a62c316671", "7e14fc045699"]);
    }

    #[test]
    fn up_to_date_pull() {
        let p = fold(&events(UP_TO_DATE));
        assert_eq!(p.finish, Some(Finish::UpToDate));
        assert_eq!(p.totals(), Totals::default());
    }

    #[test]
    fn shared_layers_count_as_already_existing() {
        let t = fold(&events(SHARED)).totals();
        assert_eq!(t.layers, 4);
        assert_eq!(t.layers_already_exist, 3);
        assert_eq!(t.layers_downloaded, 1);
        assert_eq!(t.downloaded_bytes, 2_000_812);
        assert_eq!(t.expected_bytes, 2_000_812);
    }

    const C_COLD: &str =
        include_str!("../../tests/streams/docker-26-containerd-cold-3-layers.jsonl");
    const C_UP_TO_DATE: &str =
        include_str!("../../tests/streams/docker-26-containerd-up-to-date.jsonl");
    const C_SHARED: &str =
        include_str!("../../tests/streams/docker-26-containerd-shared-layers.jsonl");
    const C_BIG: &str = include_str!("../../tests/streams/docker-26-containerd-big-cold.jsonl");
    const C_FROZEN: &str =
        include_str!("../../tests/streams/docker-26-containerd-frozen-registry.jsonl");

    /// Docker 26 on the containerd image store: a layer's bytes appear only
    /// in the `Downloading` lines it sends every 100 ms while a download
    /// runs; `Download complete` carries no count, and nothing says
    /// `Extracting` or `Pull complete`. Three small layers from a local
    /// registry were done within the first 100 ms: downloaded, 0 bytes known.
    #[test]
    fn containerd_store_cold_pull_of_fast_layers() {
        let p = fold(&events(C_COLD));
        assert!(p.dockerd_style);
        assert_eq!(p.finish, Some(Finish::Updated));
        assert_eq!(p.error, None);
        assert!(digest_starts_with(&p, "sha256:2b463e23"), "{:?}", p.digest);
        let ids: Vec<_> = p.layers.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["edf7ce18a0d1", "fbd942ae95ac", "8aa7cb6f4cae"]);
        assert!(p.layers.iter().all(|l| l.status == LayerStatus::Downloaded));
        let t = p.totals();
        assert_eq!(
            (t.layers, t.layers_downloaded, t.layers_already_exist),
            (3, 3, 0)
        );
        assert_eq!(
            (t.downloaded_bytes, t.expected_bytes, t.extracted_bytes),
            (0, 0, 0)
        );
    }

    #[test]
    fn containerd_store_up_to_date_and_shared_layers() {
        let p = fold(&events(C_UP_TO_DATE));
        assert_eq!(p.finish, Some(Finish::UpToDate));
        assert_eq!(p.totals(), Totals::default());
        // multi:2 after multi:1: the three layers the store has unpacked
        // already are not mentioned at all (no "Already exists").
        let p = fold(&events(C_SHARED));
        assert_eq!(p.finish, Some(Finish::Updated));
        let t = p.totals();
        assert_eq!(
            (t.layers, t.layers_downloaded, t.layers_already_exist),
            (1, 1, 0)
        );
        assert_eq!(p.layers[0].id, "1cf68f468e05");
        assert_eq!(t.downloaded_bytes, 0);
    }

    /// Layers that take longer than 100 ms report their size (the
    /// manifest's), so the fold counts them exactly.
    #[test]
    fn containerd_store_slow_layers_report_their_size() {
        let p = fold(&events(C_BIG));
        assert_eq!(p.finish, Some(Finish::Updated));
        let t = p.totals();
        assert_eq!((t.layers, t.layers_downloaded), (4, 4));
        assert_eq!(
            t.downloaded_bytes,
            16_782_493 + 16_782_494 + 16_782_496 + 16_782_497
        );
        assert_eq!(t.expected_bytes, t.downloaded_bytes);
        assert_eq!(t.extracted_bytes, 0);
    }

    /// While the registry is frozen the containerd store repeats each
    /// layer's `Downloading` line every 100 ms with the same count: that
    /// is no progress, so a stall is still seen as one.
    #[test]
    fn containerd_store_repeats_itself_while_the_registry_is_frozen() {
        let evs = events(C_FROZEN);
        let mut p = Progress::default();
        let (mut run, mut longest) = (0, 0);
        for e in &evs {
            if p.apply(e) {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        // 8 s frozen: about 80 lines per layer still downloading.
        assert!(longest >= 150, "longest run without progress: {longest}");
        assert_eq!(p.finish, Some(Finish::Updated));
        let t = p.totals();
        assert_eq!(t.layers_downloaded, 4);
        assert_eq!(
            t.downloaded_bytes,
            16_782_493 + 16_782_494 + 16_782_496 + 16_782_497
        );
    }

    #[test]
    fn order_and_repetition_do_not_change_the_result() {
        let evs = events(COLD);
        let want = fold(&evs);
        // Reversed, and every event twice, and a deterministic shuffle.
        let reversed: Vec<_> = evs.iter().rev().collect();
        let twice: Vec<_> = evs.iter().flat_map(|e| [e, e]).collect();
        let mut shuffled: Vec<_> = evs.iter().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for i in (1..shuffled.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = usize::try_from(seed % (i as u64 + 1)).expect("small");
            shuffled.swap(i, j);
        }
        for (name, order) in [
            ("reversed", reversed),
            ("twice", twice),
            ("shuffled", shuffled),
        ] {
            let got = fold(order);
            assert_eq!(got.totals(), want.totals(), "{name}");
            assert_eq!(got.finish, want.finish, "{name}");
            let mut a: Vec<_> = got.layers.iter().map(|l| (&l.id, l.status)).collect();
            let mut b: Vec<_> = want.layers.iter().map(|l| (&l.id, l.status)).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn repeated_events_are_not_progress() {
        let evs = events(COLD);
        let mut p = Progress::default();
        for e in &evs {
            p.apply(e);
        }
        for e in &evs {
            assert!(!p.apply(e), "replayed {e:?} counted as progress");
        }
    }

    #[test]
    fn podman_streams_end_without_a_status() {
        let p = fold(&events(include_str!(
            "../../tests/streams/podman-pull-multi1.jsonl"
        )));
        assert_eq!(p.finish, None);
        assert_eq!(p.ending_without_status(), Some(Finish::Updated));
        let p = fold(&events(include_str!(
            "../../tests/streams/podman-pull-multi1-again.jsonl"
        )));
        assert_eq!(p.ending_without_status(), Some(Finish::UpToDate));
        assert_eq!(p.totals().layers_already_exist, 3);
        // Cut in the middle of a layer: not a success.
        let mut cut = Progress::default();
        cut.apply(&PullEvent::parse(br#"{"status":"Pulling fs layer","id":"a"}"#).expect("json"));
        cut.apply(
            &PullEvent::parse(
                br#"{"status":"Downloading","id":"a","progressDetail":{"current":1,"total":9}}"#,
            )
            .expect("json"),
        );
        assert_eq!(cut.ending_without_status(), None);
        // dockerd's streams never end that way.
        let p = fold(&events(COLD));
        assert_eq!(p.ending_without_status(), None);
    }

    #[test]
    fn in_stream_error_is_kept() {
        let line = br#"{"progressDetail":{},"errorDetail":{"message":"Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client"},"error":"Get ..."}"#;
        let mut p = Progress::default();
        assert!(p.apply(&PullEvent::parse(line).expect("parses")));
        assert!(
            p.error
                .as_deref()
                .is_some_and(|e| e.contains("HTTP response to HTTPS client"))
        );
        assert_eq!(p.finish, None);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for line in [
            &b""[..],
            b"{",
            b"null",
            b"[1,2]",
            b"\xff\xfe",
            br#"{"status":7}"#,
            br#"{"progressDetail":{"current":"x"}}"#,
        ] {
            assert!(PullEvent::parse(line).is_err(), "{line:?}");
        }
        // Well-formed but odd events are folded without harm.
        let mut p = Progress::default();
        for line in [
            &b"{}"[..],
            br#"{"status":"Downloading","id":"a","progressDetail":{"current":-5,"total":-1}}"#,
            br#"{"status":"Downloading","progressDetail":{"current":5,"total":10}}"#,
            br#"{"status":"Status: something new"}"#,
            br#"{"status":"Extracting","id":"","progressDetail":{"current":1}}"#,
        ] {
            p.apply(&PullEvent::parse(line).expect("parses"));
        }
        assert_eq!(p.layers.len(), 1);
        assert_eq!(p.totals().downloaded_bytes, 0);
    }

    #[test]
    fn layer_count_is_bounded() {
        let mut p = Progress::default();
        for i in 0..(MAX_LAYERS + 100) {
            p.apply(&PullEvent {
                status: Some("Pulling fs layer".into()),
                id: Some(format!("{i:012x}")),
                ..PullEvent::default()
            });
        }
        assert_eq!(p.layers.len(), MAX_LAYERS);
        let long = "x".repeat(10_000);
        p.apply(&PullEvent {
            error: Some(long),
            ..PullEvent::default()
        });
        assert!(p.error.as_ref().is_some_and(|e| e.len() < 600));
    }
}
