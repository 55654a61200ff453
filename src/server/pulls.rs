//! `/pulls`: every running pull and the last finished one, per daemon and
//! image, as JSON.
//!
//! The JSON is built from view types of its own, not from the pull board's
//! structs, so renaming an internal field cannot change the API. The views
//! borrow from the board and are serialized under its read lock. Fields are
//! declared in alphabetical order: the order `/pulls` always had (it used
//! to go through `serde_json::Value`, whose maps sort their keys).

use std::collections::BTreeMap;

use serde::Serialize;

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::folds::progress::{Bytes, Finish, Layer, Progress, Totals};
use crate::labels::{CheckFailure, CheckResult, FailReason};
use crate::state::{FinishedPull, ImagePulls, PullBoard, RegistryCheck, RunningPull};

use super::App;

pub(super) async fn handler(AxumState(app): AxumState<App>) -> Response {
    match body(&app.board) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The whole board as one JSON document.
fn body(board: &PullBoard) -> serde_json::Result<String> {
    board.read(|daemons| {
        let view = PullsView {
            daemons: daemons
                .iter()
                .map(|(daemon, images)| {
                    let images = images
                        .iter()
                        .map(|(image, pulls)| (image.as_str(), ImageView::from(pulls)))
                        .collect();
                    (daemon.as_str(), images)
                })
                .collect(),
        };
        serde_json::to_string(&view)
    })
}

/// The document: daemon name -> configured image -> its pulls.
#[derive(Debug, Serialize)]
struct PullsView<'a> {
    daemons: BTreeMap<&'a str, BTreeMap<&'a str, ImageView<'a>>>,
}

/// One configured image on one daemon.
#[derive(Debug, Serialize)]
struct ImageView<'a> {
    /// The last registry check; null before the first, or with checks off.
    check: Option<CheckView<'a>>,
    last: Option<FinishedView<'a>>,
    /// Unix time of the end of the last pull that ended well.
    last_success: Option<f64>,
    /// Whether the image is on the daemon, as last checked; null before.
    present: Option<bool>,
    running: Option<RunningView<'a>>,
}

impl<'a> From<&'a ImagePulls> for ImageView<'a> {
    fn from(p: &'a ImagePulls) -> Self {
        Self {
            check: p.check.as_ref().map(CheckView::from),
            last: p.last.as_ref().map(FinishedView::from),
            last_success: p.last_success,
            present: p.present,
            running: p.running.as_ref().map(RunningView::from),
        }
    }
}

/// The last registry check of an image.
#[derive(Debug, Serialize)]
struct CheckView<'a> {
    /// Unix time.
    checked: f64,
    /// Digests the local image was pulled by, from the image's repository.
    local_digests: &'a [String],
    /// The media type of what the tag points at (an index for a
    /// multi-platform image).
    media_type: Option<&'a str>,
    /// Why it failed, or why there was nothing to compare.
    message: Option<&'a str>,
    /// The `reason` label's value, for a failure.
    reason: Option<&'static str>,
    /// What the tag points at in the registry, as last seen.
    registry_digest: Option<&'a str>,
    /// `same`, `differs`, `failed`, or null when there was nothing to
    /// compare (the image is not on the daemon, or was not pulled).
    result: Option<&'static str>,
    /// `dockwatch_image_update_available`: null while unknown.
    update_available: Option<bool>,
}

impl<'a> From<&'a RegistryCheck> for CheckView<'a> {
    fn from(c: &'a RegistryCheck) -> Self {
        Self {
            checked: c.checked,
            local_digests: &c.local_digests,
            media_type: c.media_type.as_deref(),
            message: c.message.as_deref(),
            reason: c.reason.map(CheckFailure::as_str),
            registry_digest: c.registry_digest.as_deref(),
            result: c.result.map(CheckResult::as_str),
            update_available: c.update_available,
        }
    }
}

/// A pull running now.
#[derive(Debug, Serialize)]
struct RunningView<'a> {
    progress: ProgressView<'a>,
    /// Unix time.
    started: f64,
}

impl<'a> From<&'a RunningPull> for RunningView<'a> {
    fn from(r: &'a RunningPull) -> Self {
        Self {
            progress: ProgressView::from(&r.progress),
            started: r.started,
        }
    }
}

/// The stream of a running pull, folded.
#[derive(Debug, Serialize)]
struct ProgressView<'a> {
    digest: Option<&'a str>,
    /// The stream began with dockerd's "Pulling from" (Podman's never does).
    dockerd_style: bool,
    /// The first error the stream carried.
    error: Option<&'a str>,
    /// Stream lines folded so far.
    events: u64,
    /// `updated` or `up_to_date` once the final status line came.
    finish: Option<&'static str>,
    layers: Vec<LayerView<'a>>,
}

impl<'a> From<&'a Progress> for ProgressView<'a> {
    fn from(p: &'a Progress) -> Self {
        Self {
            digest: p.digest.as_deref(),
            dockerd_style: p.dockerd_style,
            error: p.error.as_deref(),
            events: p.events,
            // Named here rather than by the fold's own enum, so the API
            // does not follow it by accident.
            finish: p.finish.map(|f| match f {
                Finish::Updated => "updated",
                Finish::UpToDate => "up_to_date",
            }),
            layers: p.layers.iter().map(LayerView::from).collect(),
        }
    }
}

/// How the last pull ended.
#[derive(Debug, Serialize)]
struct FinishedView<'a> {
    digest: Option<&'a str>,
    duration_seconds: f64,
    /// Unix times.
    finished: f64,
    layers: Vec<LayerView<'a>>,
    /// What the daemon or registry said, for a failure.
    message: Option<&'a str>,
    /// The `reason` label's value, for a failure.
    reason: Option<&'static str>,
    /// The `result` label's value: `updated`, `up_to_date` or `failed`.
    result: &'static str,
    /// Canceled for making no progress for `stall_timeout`.
    stalled: bool,
    started: f64,
    totals: TotalsView,
}

impl<'a> From<&'a FinishedPull> for FinishedView<'a> {
    fn from(f: &'a FinishedPull) -> Self {
        Self {
            digest: f.digest.as_deref(),
            duration_seconds: f.duration_seconds,
            finished: f.finished,
            layers: f.layers.iter().map(LayerView::from).collect(),
            message: f.message.as_deref(),
            reason: f.reason.map(FailReason::as_str),
            result: f.result.as_str(),
            stalled: f.stalled,
            started: f.started,
            totals: TotalsView::from(&f.totals),
        }
    }
}

/// One layer: its status and the bytes of each phase.
#[derive(Debug, Serialize)]
struct LayerView<'a> {
    download: BytesView,
    extract: BytesView,
    id: &'a str,
    /// `waiting`, `downloading`, `verifying`, `downloaded`, `extracting`,
    /// `complete` or `already_exists`.
    status: &'static str,
}

impl<'a> From<&'a Layer> for LayerView<'a> {
    fn from(l: &'a Layer) -> Self {
        Self {
            download: BytesView::from(&l.download),
            extract: BytesView::from(&l.extract),
            id: &l.id,
            status: l.status.as_str(),
        }
    }
}

/// Bytes done of a phase; `total` when the daemon said.
#[derive(Debug, Serialize)]
struct BytesView {
    current: u64,
    total: Option<u64>,
}

impl From<&Bytes> for BytesView {
    fn from(b: &Bytes) -> Self {
        Self {
            current: b.current,
            total: b.total,
        }
    }
}

/// Sums over a finished pull's layers.
#[derive(Debug, Serialize)]
struct TotalsView {
    downloaded_bytes: u64,
    expected_bytes: u64,
    extracted_bytes: u64,
    layers: u64,
    layers_already_exist: u64,
    layers_downloaded: u64,
}

impl From<&Totals> for TotalsView {
    fn from(t: &Totals) -> Self {
        Self {
            downloaded_bytes: t.downloaded_bytes,
            expected_bytes: t.expected_bytes,
            extracted_bytes: t.extracted_bytes,
            layers: t.layers,
            layers_already_exist: t.layers_already_exist,
            layers_downloaded: t.layers_downloaded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folds::progress::PullEvent;
    use crate::labels::PullResult;

    /// Folds dockerd-style stream lines, as the puller does.
    fn fold(lines: &[&str]) -> Progress {
        let mut progress = Progress::default();
        for line in lines {
            progress.apply(&PullEvent::parse(line.as_bytes()).expect("a valid line"));
        }
        progress
    }

    /// A pull that began at `started`, took `took` seconds and ended with
    /// `result`, having gone as `progress` says.
    fn finished(started: f64, took: f64, result: PullResult, progress: &Progress) -> FinishedPull {
        FinishedPull {
            started,
            finished: started + took,
            duration_seconds: took,
            result,
            reason: None,
            stalled: false,
            message: None,
            digest: progress.digest.clone(),
            totals: progress.totals(),
            layers: progress.layers.clone(),
        }
    }

    /// A board with one of everything: a running pull with layers beside the
    /// last good one, a failed pull with its reason, an image never pulled,
    /// and a daemon with no images.
    fn board() -> PullBoard {
        let board = PullBoard::new([
            (
                "a".to_owned(),
                vec!["reg.test/app:1".to_owned(), "reg.test/gone:1".to_owned()],
            ),
            ("b".to_owned(), vec![]),
            ("c".to_owned(), vec!["reg.test/new:1".to_owned()]),
        ]);
        let done = fold(&[
            r#"{"status":"Pulling from app","id":"1"}"#,
            r#"{"status":"Already exists","id":"l1"}"#,
            r#"{"status":"Downloading","id":"l2","progressDetail":{"current":10,"total":40}}"#,
            r#"{"status":"Pull complete","id":"l2"}"#,
            r#"{"status":"Digest: sha256:feed"}"#,
            r#"{"status":"Status: Downloaded newer image for reg.test/app:1"}"#,
        ]);
        board.update("a", "reg.test/app:1", |p| {
            p.last = Some(finished(100.0, 2.5, PullResult::Updated, &done));
            p.running = Some(RunningPull {
                started: 200.25,
                progress: fold(&[
                    r#"{"status":"Pulling from app","id":"1"}"#,
                    r#"{"status":"Downloading","id":"l3","progressDetail":{"current":5,"total":50}}"#,
                    r#"{"status":"Extracting","id":"l4","progressDetail":{"current":7,"total":70}}"#,
                ]),
            });
            p.present = Some(true);
            p.last_success = Some(102.5);
            p.check = Some(RegistryCheck {
                checked: 150.5,
                result: Some(CheckResult::Differs),
                reason: None,
                message: None,
                registry_digest: Some("sha256:beef".to_owned()),
                media_type: Some("application/vnd.oci.image.index.v1+json".to_owned()),
                local_digests: vec!["sha256:feed".to_owned()],
                update_available: Some(true),
            });
        });
        board.update("a", "reg.test/gone:1", |p| {
            let mut failed = finished(300.0, 1.0, PullResult::Failed, &fold(&[]));
            failed.reason = Some(FailReason::NotFound);
            failed.message = Some("manifest unknown".to_owned());
            p.last = Some(failed);
            p.present = Some(false);
        });
        board
    }

    /// The field names and nesting are what the landing page's script and
    /// users' scripts read: a change here is a change of the API.
    #[test]
    fn pulls_json_field_names_are_pinned() {
        let json = body(&board()).expect("serializes");
        // Keys in alphabetical order at every level: the order /pulls had
        // when it went through `serde_json::Value`, kept byte for byte.
        let want = concat!(
            r#"{"daemons":{"#,
            r#""a":{"#,
            r#""reg.test/app:1":{"#,
            r#""check":{"checked":150.5,"local_digests":["sha256:feed"],"media_type":"application/vnd.oci.image.index.v1+json","#,
            r#""message":null,"reason":null,"registry_digest":"sha256:beef","result":"differs","update_available":true},"#,
            r#""last":{"digest":"sha256:feed","duration_seconds":2.5,"finished":102.5,"layers":["#,
            r#"{"download":{"current":0,"total":null},"extract":{"current":0,"total":null},"id":"l1","status":"already_exists"},"#,
            r#"{"download":{"current":40,"total":40},"extract":{"current":0,"total":null},"id":"l2","status":"complete"}"#,
            r#"],"message":null,"reason":null,"result":"updated","stalled":false,"started":100.0,"#,
            r#""totals":{"downloaded_bytes":40,"expected_bytes":40,"extracted_bytes":0,"layers":2,"layers_already_exist":1,"layers_downloaded":1}},"#,
            r#""last_success":102.5,"present":true,"#,
            r#""running":{"progress":{"digest":null,"dockerd_style":true,"error":null,"events":3,"finish":null,"layers":["#,
            r#"{"download":{"current":5,"total":50},"extract":{"current":0,"total":null},"id":"l3","status":"downloading"},"#,
            r#"{"download":{"current":0,"total":null},"extract":{"current":7,"total":70},"id":"l4","status":"extracting"}"#,
            r#"]},"started":200.25}},"#,
            r#""reg.test/gone:1":{"#,
            r#""check":null,"last":{"digest":null,"duration_seconds":1.0,"finished":301.0,"layers":[],"message":"manifest unknown","reason":"not_found","result":"failed","stalled":false,"started":300.0,"#,
            r#""totals":{"downloaded_bytes":0,"expected_bytes":0,"extracted_bytes":0,"layers":0,"layers_already_exist":0,"layers_downloaded":0}},"#,
            r#""last_success":null,"present":false,"running":null}},"#,
            r#""b":{},"#,
            r#""c":{"reg.test/new:1":{"check":null,"last":null,"last_success":null,"present":null,"running":null}}"#,
            r#"}}"#,
        );
        assert_eq!(json, want);
    }
}
