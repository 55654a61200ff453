//! `/pulls`: every running pull and the last finished one, per daemon and
//! image, as JSON.

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::PullBoard;

use super::App;

pub(super) async fn handler(AxumState(app): AxumState<App>) -> Response {
    match body(&app.board) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The whole board as one JSON document, serialized under its read lock.
fn body(board: &PullBoard) -> serde_json::Result<String> {
    board.read(|daemons| serde_json::to_string(&serde_json::json!({ "daemons": daemons })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FailReason, PullResult};
    use crate::progress::{Progress, PullEvent};
    use crate::state::{FinishedPull, RunningPull};

    /// Folds dockerd-style stream lines, as the puller does.
    fn fold(lines: &[&str]) -> Progress {
        let mut progress = Progress::default();
        for line in lines {
            progress.apply(&PullEvent::parse(line.as_bytes()).expect("a valid line"));
        }
        progress
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
            p.last = Some(FinishedPull {
                started: 100.0,
                finished: 102.5,
                duration_seconds: 2.5,
                result: PullResult::Updated,
                reason: None,
                stalled: false,
                message: None,
                digest: done.digest.clone(),
                totals: done.totals(),
                layers: done.layers.clone(),
            });
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
        });
        board.update("a", "reg.test/gone:1", |p| {
            p.last = Some(FinishedPull {
                started: 300.0,
                finished: 301.0,
                duration_seconds: 1.0,
                result: PullResult::Failed,
                reason: Some(FailReason::NotFound),
                stalled: false,
                message: Some("manifest unknown".to_owned()),
                digest: None,
                totals: fold(&[]).totals(),
                layers: vec![],
            });
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
            r#""last":{"digest":null,"duration_seconds":1.0,"finished":301.0,"layers":[],"message":"manifest unknown","reason":"not_found","result":"failed","stalled":false,"started":300.0,"#,
            r#""totals":{"downloaded_bytes":0,"expected_bytes":0,"extracted_bytes":0,"layers":0,"layers_already_exist":0,"layers_downloaded":0}},"#,
            r#""last_success":null,"present":false,"running":null}},"#,
            r#""b":{},"#,
            r#""c":{"reg.test/new:1":{"last":null,"last_success":null,"present":null,"running":null}}"#,
            r#"}}"#,
        );
        assert_eq!(json, want);
    }
}
