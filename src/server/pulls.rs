//! `/pulls`: every running pull and the last finished one, per daemon and
//! image, as JSON.

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;

pub(super) async fn handler(AxumState(app): AxumState<App>) -> Response {
    let body = app
        .board
        .read(|daemons| serde_json::to_string(&serde_json::json!({ "daemons": daemons })));
    match body {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
