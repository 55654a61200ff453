//! Serving the router with axum-server: plain HTTP, or HTTPS with a rustls
//! config, one path for both, and one graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A client that does not finish its TLS handshake in this long is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that does not send a whole request head in this long after the
/// connection (or handshake) or its previous request is dropped: a request
/// that never completes, or an idle keep-alive connection, cannot pin a
/// connection forever. hyper's own default, which axum-server turns off.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener`, plain HTTP or HTTPS with `tls`, until `stop`
/// changes. Then the listener closes at once (new connections are refused),
/// connections with no request under way close (idle keep-alive ones, and
/// those that sent nothing yet or are still in their TLS handshake), and
/// requests in progress get up to `grace` to finish before their
/// connections are cut.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let handle = Handle::<SocketAddr>::new();
    let mut server = axum_server::Server::from_listener(listener)
        .handle(handle.clone())
        // As before: HTTP/1.1 only (the TLS config offers no ALPN, so TLS
        // clients speak HTTP/1.1 too).
        .http1_only()
        .accept_error_handler(|peer, e| match peer {
            // The listener itself (out of fds and the like); axum-server
            // pauses before it tries again.
            None => tracing::warn!(error = %e, "accept failed"),
            // One client's TLS handshake failed or timed out: its problem.
            Some(peer) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        });
    server
        .http_builder()
        .http1()
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let serving = async move {
        let service = app.into_make_service();
        match tls {
            None => server.serve(service).await,
            Some(tls) => {
                let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(tls)))
                    .handshake_timeout(TLS_HANDSHAKE_TIMEOUT);
                server.acceptor(acceptor).serve(service).await
            }
        }
    };
    let shutdown = {
        let handle = handle.clone();
        async move {
            // Err only if the sender is gone, which also means stop.
            let _ = stop.changed().await;
            handle.graceful_shutdown(Some(grace));
        }
    };
    let mut serving = std::pin::pin!(serving);
    let outcome: io::Result<()> = tokio::select! {
        early = &mut serving => early,
        () = shutdown => serving.await,
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "HTTP server failed");
    }
    // Still counted here: connections the grace ran out on, closed now.
    let cut = handle.connection_count();
    if cut > 0 {
        tracing::warn!(
            connections = cut,
            grace_seconds = grace.as_secs_f64(),
            "requests still open after the shutdown grace were cut"
        );
    }
}
