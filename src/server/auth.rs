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

impl BasicAuth {
    fn allows(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key = (user, password);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if remembered {
            return true;
        }
        if !bcrypt::verify(&key.1, hash).unwrap_or(false) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(key);
        true
    }
}

async fn require_auth(
    AxumState(auth): AxumState<Arc<BasicAuth>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // bcrypt blocks for tens of milliseconds: keep it off the async workers.
    let header = header.map(str::to_owned);
    let allowed = tokio::task::spawn_blocking(move || auth.allows(header.as_deref()))
        .await
        .unwrap_or(false);
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
