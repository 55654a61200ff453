//! Basic auth against bcrypt hashes, as Prometheus exporters' web config
//! does it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `router` as is with no users; else every route asks for credentials.
pub(super) fn protect(router: Router, users: BTreeMap<String, String>) -> Router {
    if users.is_empty() {
        return router;
    }
    let auth = Arc::new(BasicAuth {
        users,
        verified: Mutex::default(),
    });
    router.layer(axum::middleware::from_fn_with_state(auth, require_auth))
}

/// bcrypt is slow on purpose, so credentials that verified once are
/// remembered (in memory, a bounded number) and a scrape costs a lookup.
#[derive(Debug)]
struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<(String, String)>>,
}

const MAX_REMEMBERED: usize = 64;

/// A user and password, as a request sent them.
type Pair = (String, String);

impl BasicAuth {
    /// The user and password of an `Authorization` header, if it is basic
    /// auth of a user we know.
    fn known_pair(&self, header: Option<&str>) -> Option<Pair> {
        let (user, password) = header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))?;
        self.users.contains_key(&user).then_some((user, password))
    }

    /// Whether `pair` verified before: a lookup, fine on the async workers.
    fn remembered(&self, pair: &Pair) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(pair)
    }

    /// Checks `pair` against its user's bcrypt hash, and remembers it if it
    /// holds. Takes tens of milliseconds: off the async workers.
    fn verify(&self, pair: Pair) -> bool {
        let Some(hash) = self.users.get(&pair.0) else {
            return false;
        };
        if !bcrypt::verify(&pair.1, hash).unwrap_or(false) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(pair);
        true
    }
}

async fn require_auth(
    AxumState(auth): AxumState<Arc<BasicAuth>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let pair = auth.known_pair(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let allowed = match pair {
        None => false,
        Some(pair) if auth.remembered(&pair) => true,
        // bcrypt blocks for tens of milliseconds: keep it off the async workers.
        Some(pair) => tokio::task::spawn_blocking(move || auth.verify(pair))
            .await
            .unwrap_or(false),
    };
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"dockwatch\"")],
            "unauthorized\n",
        )
            .into_response()
    }
}
