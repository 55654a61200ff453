//! `dockwatch_api_request_duration_seconds` and `_errors_total`: every
//! Docker API call, reported by the daemon's connection.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::labels::{ApiEndpoint, ErrorReason};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    daemon: String,
    endpoint: ApiEndpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiErrorLabels {
    daemon: String,
    endpoint: ApiEndpoint,
    reason: ErrorReason,
}

/// Docker API latency buckets: a local socket answers in a millisecond, a
/// loaded remote daemon in seconds.
const API_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

#[derive(Debug)]
pub(super) struct ApiFamilies {
    duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    errors: Family<ApiErrorLabels, Counter>,
}

impl ApiFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let duration =
            Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(api_histogram);
        registry.register(
            "api_request_duration_seconds",
            "Docker Engine API request latency, by endpoint",
            duration.clone(),
        );
        let errors = Family::<ApiErrorLabels, Counter>::default();
        registry.register(
            "api_request_errors",
            "Docker Engine API requests that failed, by endpoint and reason",
            errors.clone(),
        );
        Self { duration, errors }
    }

    /// One call: its latency if it was sent, its failure if it failed.
    pub(super) fn observe(
        &self,
        daemon: &str,
        endpoint: ApiEndpoint,
        took: Option<Duration>,
        error: Option<ErrorReason>,
    ) {
        if let Some(took) = took {
            self.duration
                .get_or_create(&ApiLabels {
                    daemon: daemon.to_owned(),
                    endpoint,
                })
                .observe(took.as_secs_f64());
        }
        if let Some(reason) = error {
            self.errors
                .get_or_create(&ApiErrorLabels {
                    daemon: daemon.to_owned(),
                    endpoint,
                    reason,
                })
                .inc();
        }
    }

    pub(super) fn forget(&self, daemon: &str) {
        for endpoint in ApiEndpoint::ALL {
            self.duration.remove(&ApiLabels {
                daemon: daemon.to_owned(),
                endpoint,
            });
            for reason in ErrorReason::ALL {
                self.errors.remove(&ApiErrorLabels {
                    daemon: daemon.to_owned(),
                    endpoint,
                    reason,
                });
            }
        }
    }
}
