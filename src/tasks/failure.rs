//! Why a pull or a registry check failed: the reasons read from a daemon's
//! error or a registry's message, shared by the puller and the checker.

use crate::docker::DockerError;
use crate::labels::FailReason;

/// Reads a failure message from a daemon or registry. Order matters:
/// "pull access denied ... does not exist" is a missing image on Docker Hub;
/// a full disk and a rate limit are named before anything their messages
/// may also hold (a path, Docker Hub's "authenticating and upgrading").
pub fn classify_message(message: &str) -> Option<FailReason> {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["no space left on device", "disk quota exceeded"]) {
        Some(FailReason::DiskFull)
    } else if any(&[
        "toomanyrequests",
        "too many requests",
        "rate limit",
        "status code 429",
        "http 429",
    ]) {
        Some(FailReason::RateLimited)
    } else if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
    ]) {
        Some(FailReason::Unauthorized)
    } else if any(&[
        "manifest unknown",
        "not found",
        "does not exist",
        "name unknown",
    ]) {
        Some(FailReason::NotFound)
    } else if any(&["denied", "forbidden"]) {
        Some(FailReason::Unauthorized)
    } else if any(&[
        "x509",
        "tls:",
        "certificate",
        "http response to https client",
    ]) {
        Some(FailReason::Tls)
    } else if any(&[
        "connection refused",
        "connection reset",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "dial tcp",
        "unexpected eof",
        "broken pipe",
        "client.timeout exceeded",
        // containerd's word for a request that got no answer (the
        // containerd image store; a registry killed mid-pull ends in EOF)
        "failed to do request",
    ]) {
        Some(FailReason::Network)
    } else if any(&["context canceled"]) {
        Some(FailReason::Canceled)
    } else if any(&[
        "internal server error",
        "service unavailable",
        "bad gateway",
        "blob unknown",
    ]) {
        Some(FailReason::Registry)
    } else {
        None
    }
}

/// Classifies an error of a pull request (or its stream) or of a registry
/// check: the reason and the daemon's or registry's message.
pub fn classify_error(e: DockerError) -> (FailReason, String) {
    let reason = match &e {
        // dockerd passes a registry's 429 on as its own.
        DockerError::Http { status: 429, .. } => FailReason::RateLimited,
        DockerError::Http { status: 404, .. } => FailReason::NotFound,
        // Not the registry's credentials: the proxy in front of the daemon
        // lets no pull through (its message says so).
        e if e.refused_by_proxy() => FailReason::Daemon,
        DockerError::Http {
            status: 401 | 403, ..
        } => FailReason::Unauthorized,
        // dockerd answers registry failures (bad credentials too) with 500.
        DockerError::Http { message, .. } => {
            classify_message(message).unwrap_or(FailReason::Daemon)
        }
        DockerError::Timeout(_) => FailReason::Timeout,
        DockerError::Tls(_) => FailReason::Tls,
        DockerError::Connect(_) | DockerError::Decode(_) => FailReason::Daemon,
    };
    let message = match e {
        DockerError::Http { message, .. } => message,
        other => other.to_string(),
    };
    (reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_real_daemons() {
        let cases = [
            (
                "manifest for 127.0.0.1:5000/example/nope:1 not found: manifest unknown: manifest unknown",
                FailReason::NotFound,
            ),
            (
                "Head \"http://127.0.0.1:5001/v2/private/app/manifests/1\": no basic auth credentials",
                FailReason::Unauthorized,
            ),
            (
                "unauthorized: authentication required",
                FailReason::Unauthorized,
            ),
            (
                "pull access denied for nope, repository does not exist or may require 'docker login'",
                FailReason::NotFound,
            ),
            (
                "Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client",
                FailReason::Tls,
            ),
            (
                "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
                FailReason::Network,
            ),
            ("toomanyrequests: slow down", FailReason::RateLimited),
            (
                "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                FailReason::RateLimited,
            ),
            (
                "toomanyrequests: retry-after: 880.092µs, allowed: 44000/minute",
                FailReason::RateLimited,
            ),
            // dockerd 20.10 with its data root on a full file system.
            (
                "write /var/lib/docker/tmp/GetImageBlob2129887559: no space left on device",
                FailReason::DiskFull,
            ),
            (
                "failed to register layer: Error processing tar file(exit status 1): write /layer1.bin: no space left on device",
                FailReason::DiskFull,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(classify_message(msg), Some(want), "{msg}");
        }
        assert_eq!(classify_message("something new"), None);
    }

    /// The messages of Docker 26 on the containerd image store, as captured.
    #[test]
    fn messages_of_the_containerd_store() {
        let message = |capture: &str| {
            let line = capture.lines().last().expect("a line");
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            v["errorDetail"]["message"]
                .as_str()
                .or(v["message"].as_str())
                .expect("a message")
                .to_owned()
        };
        // A missing tag or repository: HTTP 404 before any stream.
        for capture in [
            include_str!("../../tests/streams/docker-26-containerd-not-found.body"),
            include_str!("../../tests/streams/docker-26-containerd-not-found-repo.body"),
        ] {
            let m = message(capture);
            assert!(m.starts_with("failed to resolve reference"), "{m}");
            assert_eq!(classify_message(&m), Some(FailReason::NotFound), "{m}");
        }
        // The registry killed mid-pull: the stream ends at once with an
        // error line (dockerd 20.10 retries each layer for 75 s first).
        let m = message(include_str!(
            "../../tests/streams/docker-26-containerd-killed-registry.jsonl"
        ));
        assert!(m.ends_with(": EOF"), "{m}");
        assert_eq!(classify_message(&m), Some(FailReason::Network), "{m}");
    }

    #[test]
    fn http_errors_before_the_stream() {
        let err = |status, message: &str| DockerError::Http {
            status,
            message: message.into(),
        };
        assert_eq!(classify_error(err(404, "x")).0, FailReason::NotFound);
        assert_eq!(
            classify_error(err(500, "unauthorized: authentication required")).0,
            FailReason::Unauthorized
        );
        assert_eq!(classify_error(err(500, "boom")).0, FailReason::Daemon);
        // A registry's (or the daemon's) 403 is about credentials; a proxy's
        // (deploy/socket-proxy below the pull level) is not.
        assert_eq!(
            classify_error(err(403, "denied: requested access is denied")).0,
            FailReason::Unauthorized
        );
        let proxy = err(
            403,
            "refused by a proxy in front of the daemon (403): Request forbidden",
        );
        assert_eq!(
            classify_error(proxy),
            (
                FailReason::Daemon,
                "refused by a proxy in front of the daemon (403): Request forbidden".into()
            )
        );
        assert_eq!(
            classify_error(err(429, "toomanyrequests: slow down")).0,
            FailReason::RateLimited
        );
        assert_eq!(
            classify_error(DockerError::Decode("a line longer than 1 bytes".into())).0,
            FailReason::Daemon
        );
    }
}
