//! Serving the router: plain HTTP, or HTTPS with a rustls config.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use axum::Router;

/// Serves `app` on `listener` until `stop` changes: plain HTTP, or HTTPS
/// with `tls`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(tls) = tls else {
        let shutdown = async move {
            // Err only if the sender is gone, which also means stop.
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// A client that does not finish its handshake in this long is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
