//! What can go wrong talking to a daemon, in the closed set of reasons the
//! error counter uses, with the cause spelled out for the log.

use std::error::Error as StdError;
use std::time::Duration;

use crate::labels::ErrorReason;

/// How the message of a 403 begins that came without the Engine's JSON
/// error: a proxy in front of the daemon (such as deploy/socket-proxy)
/// refused the call, not the daemon.
pub const PROXY_REFUSAL: &str = "refused by a proxy in front of the daemon (403)";

/// Why a Docker call failed. The message is for logs; `reason()` is the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("daemon answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("cannot decode the daemon's answer: {0}")]
    Decode(String),
}

impl DockerError {
    pub fn reason(&self) -> ErrorReason {
        match self {
            Self::Timeout(_) => ErrorReason::Timeout,
            Self::Connect(_) => ErrorReason::Connect,
            Self::Tls(_) => ErrorReason::Tls,
            Self::Http { status, .. } if *status >= 500 => ErrorReason::Http5xx,
            Self::Http { .. } => ErrorReason::Http4xx,
            Self::Decode(_) => ErrorReason::Decode,
        }
    }

    /// Whether a proxy in front of the daemon refused the call (see
    /// [`PROXY_REFUSAL`]): every call of that kind will be refused again.
    pub fn refused_by_proxy(&self) -> bool {
        matches!(self, Self::Http { status: 403, message } if message.starts_with(PROXY_REFUSAL))
    }

    /// A failure of the transport (connect, TLS, I/O): TLS when a rustls
    /// error is somewhere in the chain, else connect.
    pub(super) fn from_transport(err: &(dyn StdError + 'static)) -> Self {
        match find_tls_error(err) {
            Some(t) => Self::Tls(explain_tls(t)),
            None => Self::Connect(chain(err)),
        }
    }
}

/// The whole chain of causes in one line, so a log says what really failed
/// ("client error (Connect): Connection refused (os error 111)").
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// A rustls error somewhere in the chain. hyper wraps it in an `io::Error`
/// whose `source()` skips it, so look inside each `io::Error` too.
fn find_tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    None
}

/// Explains a rustls failure in the terms an operator can act on.
fn explain_tls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match err {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the daemon's certificate is not signed by the configured tls.ca"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the daemon's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the daemon's certificate is not valid for the host name in `host`"
        }
        E::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA) => {
            "the daemon refused our client certificate (tls.cert/tls.key); is it signed by the CA the daemon trusts (--tlscacert)?"
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the daemon says our client certificate (tls.cert) has expired"
        }
        E::InvalidMessage(_) => "the peer does not speak TLS; is this a plain-HTTP port?",
        _ => "TLS handshake failed",
    };
    format!("{hint} ({err})")
}

/// An HTTP refusal with `message`, as tests write them.
#[cfg(test)]
impl DockerError {
    pub(crate) fn http(status: u16, message: &str) -> Self {
        Self::Http {
            status,
            message: message.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_status() {
        let http = |status| DockerError::Http {
            status,
            message: String::new(),
        };
        assert_eq!(http(404).reason(), ErrorReason::Http4xx);
        assert_eq!(http(500).reason(), ErrorReason::Http5xx);
        assert_eq!(
            DockerError::Timeout(Duration::from_secs(1)).reason(),
            ErrorReason::Timeout
        );
    }

    #[test]
    fn tls_error_is_found_inside_io_error() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let classified = DockerError::from_transport(&io);
        assert_eq!(classified.reason(), ErrorReason::Tls);
        assert!(
            classified
                .to_string()
                .contains("not signed by the configured tls.ca")
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            DockerError::from_transport(&refused).reason(),
            ErrorReason::Connect
        );
    }
}
