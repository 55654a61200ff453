//! `dockwatch_api_request_duration_seconds` and `_errors_total`: every
//! Docker API call, reported by the daemon's connection (this family is its
//! [`Observer`]).

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::family::{ByValue, DaemonLabel, Forget, Series, family_group};
use crate::docker::Observer;
use crate::labels::{ApiEndpoint, ErrorReason};

/// Docker API latency buckets: a local socket answers in a millisecond, a
/// loaded remote daemon in seconds.
const API_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

/// A daemon and an endpoint: the labels of the latencies, and the first of
/// the failures'.
type EndpointLabels = (DaemonLabel, [(&'static str, ApiEndpoint); 1]);

family_group! {
    pub struct ApiFamilies {
        duration: ByValue<DaemonLabel, ApiEndpoint, Histogram> = "api_request_duration_seconds", ByValue::with_family("endpoint", Family::new_with_constructor(api_histogram)), "Docker Engine API request latency, by endpoint";
        errors: ByValue<EndpointLabels, ErrorReason> = "api_request_errors", ByValue::new("reason"), "Docker Engine API requests that failed, by endpoint and reason";
    }
}

/// One call: its latency if it was sent, its failure if it failed.
impl Observer for ApiFamilies {
    fn api_call(
        &self,
        daemon: &str,
        endpoint: ApiEndpoint,
        took: Option<Duration>,
        error: Option<ErrorReason>,
    ) {
        let daemon = DaemonLabel::new(daemon);
        if let Some(took) = took {
            self.duration
                .get(&daemon, endpoint)
                .observe(took.as_secs_f64());
        }
        if let Some(reason) = error {
            self.errors
                .get(&(daemon, [("endpoint", endpoint)]), reason)
                .inc();
        }
        self.changes.mark();
    }
}

impl Forget for ApiFamilies {
    fn forget_daemon(&self, daemon: &str) {
        let daemon = DaemonLabel::new(daemon);
        for endpoint in ApiEndpoint::ALL {
            self.errors
                .forget(&(daemon.clone(), [("endpoint", endpoint)]));
        }
        self.duration.forget(&daemon);
        self.changes.mark();
    }
}
