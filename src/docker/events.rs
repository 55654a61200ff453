//! `/events`: the daemon's event stream, decoded one line at a time into
//! the [`Event`] fields dockwatch reads.

use std::collections::HashMap;
use std::pin::Pin;

use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;

use super::{Connection, DockerError, transport};
use crate::labels::ApiEndpoint;

/// Longest event line held in memory; real ones are well under 4 KiB.
const MAX_EVENT_LINE: usize = 256 * 1024;

/// The events of a `/events` answer, in order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, DockerError>> + Send>>;

/// One event, as dockerd and Podman send it (only what we read). Decoded
/// here rather than by bollard, whose closed enums reject event types they
/// do not know (Podman's `system`).
#[derive(Debug, Default, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub typ: Option<String>,
    #[serde(rename = "Action", default)]
    pub action: Option<String>,
    #[serde(rename = "Actor", default)]
    pub actor: Option<Actor>,
    pub time: Option<i64>,
    #[serde(rename = "timeNano", default)]
    pub time_nano: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    #[serde(rename = "Attributes", default)]
    pub attributes: Option<HashMap<String, String>>,
}

impl Connection {
    /// `GET /events` with `query`: the stream's events, one per line (blank
    /// lines skipped; a line that is no event ends the stream with an
    /// error). The call (until the answer begins) is bounded by the call
    /// timeout; a failure of the stream later is reported too.
    pub async fn events(&self, query: &[(&str, String)]) -> Result<EventStream, DockerError> {
        let t = self.0.timeout;
        let tr = self.transport(ApiEndpoint::Events)?;
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        let path = self.versioned(tr, &format!("/events?{query}")).await?;
        let lines = self
            .timed(ApiEndpoint::Events, t, async move {
                let response = tr.send(hyper::Method::GET, &path, &[]).await?;
                Ok(transport::lines(response.into_body(), MAX_EVENT_LINE))
            })
            .await?;
        let events = self
            .reporting(ApiEndpoint::Events, lines)
            .filter_map(|line| {
                std::future::ready(match line {
                    Ok(line) if line.iter().all(u8::is_ascii_whitespace) => None,
                    Ok(line) => Some(
                        serde_json::from_slice::<Event>(&line)
                            .map_err(|e| DockerError::Decode(format!("not an event: {e}"))),
                    ),
                    Err(e) => Some(Err(e)),
                })
            });
        Ok(Box::pin(events))
    }
}
