//! Daemons whose socket is open to the network: a Docker daemon on plain
//! `tcp://` at an address that is not loopback lets anyone who reaches the
//! port run anything as root on its host. Said by `check-config` and at
//! start-up, once per daemon; only the config is read (nothing is sent).

use std::net::IpAddr;

use super::{DaemonConfig, Endpoint};

/// The warning for a daemon reached over plain TCP at an address that is
/// not loopback; `None` for unix sockets, mutual TLS and loopback.
pub fn plain_tcp_warning(daemon: &DaemonConfig) -> Option<String> {
    let Endpoint::Tcp(addr) = &daemon.host.endpoint else {
        return None;
    };
    if daemon.tls.is_some() || is_loopback(addr) {
        return None;
    }
    Some(format!(
        "daemon {:?} is reached over plain TCP at {} (not loopback): anyone who can reach that port is root on its host. \
         Start dockerd with --tlsverify on port 2376 and give this daemon a [daemons.tls] table (ca, cert, key); \
         if a read-only socket proxy (deploy/socket-proxy) listens there on a private network, only what it allows is open",
        daemon.name, daemon.host.url
    ))
}

/// The start-up note for a daemon reached over plain TCP on loopback: not
/// open to the network, but any local user (or container on the host
/// network) who reaches the port is root on this host. `None` otherwise.
pub fn loopback_plain_tcp_note(daemon: &DaemonConfig) -> Option<String> {
    let Endpoint::Tcp(addr) = &daemon.host.endpoint else {
        return None;
    };
    (daemon.tls.is_none() && is_loopback(addr)).then(|| {
        format!(
            "daemon {:?} is reached over plain TCP on loopback ({}): any local user or container on the host network              that reaches that port is root on this host; prefer the unix socket or mutual TLS",
            daemon.name, daemon.host.url
        )
    })
}

/// Whether `host:port` names this machine only: `localhost`, 127.0.0.0/8
/// or `[::1]`. A name other than localhost is not resolved (and so not
/// loopback).
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Host;

    fn daemon(url: &str) -> DaemonConfig {
        DaemonConfig {
            name: "d".into(),
            host: Host::parse(url).expect("valid host"),
            tls: None,
        }
    }

    #[test]
    fn only_plain_tcp_off_this_machine_is_warned_about() {
        for url in [
            "tcp://10.0.0.1:2375",
            "tcp://192.168.1.20:2375",
            "tcp://docker.example:2375",
            "tcp://[2001:db8::1]:2375",
        ] {
            let w = plain_tcp_warning(&daemon(url)).unwrap_or_else(|| panic!("{url}"));
            assert!(w.contains("root on its host"), "{w}");
            assert!(w.contains("--tlsverify") && w.contains("2376"), "{w}");
            assert!(w.contains("[daemons.tls]"), "{w}");
        }
        for url in [
            "tcp://127.0.0.1:2375",
            "tcp://127.0.0.2:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
            "unix:///var/run/docker.sock",
        ] {
            assert_eq!(plain_tcp_warning(&daemon(url)), None, "{url}");
            assert_eq!(
                loopback_plain_tcp_note(&daemon(url)).is_some(),
                url.starts_with("tcp://"),
                "{url}"
            );
        }
    }
}
