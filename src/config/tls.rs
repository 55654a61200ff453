//! Certificates, keys and TLS configs: the client side of mutual TLS to a
//! daemon (as dockerd's `--tlsverify` clients do it) and the server side of
//! HTTPS for `/metrics`, and certificate expiry read with an X.509 parser.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::config::files::read_small_file;

/// Every PEM certificate in a file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_small_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The PEM private key in a file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_small_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: not a readable PEM private key: {e}", path.display()))
}

/// A TLS config that could not be made, by the field of its table at
/// fault; the message names the file and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The CA certificates (`tls.ca`), or no safe protocol version.
    #[error("{0}")]
    Ca(String),
    /// The client certificate (`tls.cert`).
    #[error("{0}")]
    Cert(String),
    /// The client key (`tls.key`), or a key that does not fit the cert.
    #[error("{0}")]
    Key(String),
    /// The served certificate (`server.tls_cert`), or no safe protocol.
    #[error("{0}")]
    ServerCert(String),
    /// The served key (`server.tls_key`), or one that does not fit.
    #[error("{0}")]
    ServerKey(String),
}

impl TlsError {
    /// The key of the field at fault, in its table.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Ca(_) => "ca",
            Self::Cert(_) => "cert",
            Self::Key(_) => "key",
            Self::ServerCert(_) => "tls_cert",
            Self::ServerKey(_) => "tls_key",
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client config for mutual TLS: trusts only `tls.ca` (as dockerd's
/// `--tlsverify` clients do), presents `tls.cert`/`tls.key`. Errors name the
/// field (`ca`, `cert`, `key`) they belong to.
pub fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    let ca = read_certs(&tls.ca).map_err(TlsError::Ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| {
            TlsError::Ca(format!(
                "{}: not a usable CA certificate: {e}",
                tls.ca.display()
            ))
        })?;
    }
    let certs = read_certs(&tls.cert).map_err(TlsError::Cert)?;
    let key = read_key(&tls.key).map_err(TlsError::Key)?;
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| {
            TlsError::Key(format!(
                "{} does not fit {}: {e}",
                tls.key.display(),
                tls.cert.display()
            ))
        })
}

/// The TLS config for serving HTTPS; errors name the field (`tls_cert`,
/// `tls_key`) they belong to.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(cert).map_err(TlsError::ServerCert)?;
    let key_der = read_key(key).map_err(TlsError::ServerKey)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::ServerCert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            TlsError::ServerKey(format!(
                "{} does not fit {}: {e}",
                key.display(),
                cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate's notAfter: unix seconds and an RFC 3339 date.
pub fn not_after(cert_der: &[u8]) -> Option<(i64, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let at = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?);
    Some((secs, humantime::format_rfc3339_seconds(at).to_string()))
}

/// If the client certificate of `tls` has expired: a sentence saying so,
/// naming the file. The daemon only answers "bad certificate".
pub fn client_cert_expired(tls: &TlsConfig) -> Option<String> {
    let cert = read_certs(&tls.cert).ok()?.into_iter().next()?;
    let (secs, date) = not_after(&cert)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    (i64::try_from(now).ok()? > secs).then(|| {
        format!(
            "the client certificate tls.cert ({}) expired on {date}",
            tls.cert.display()
        )
    })
}

/// Every problem with a `tls` table's files: each exists, parses, and the
/// key fits the certificate.
pub fn check_files(tls: &TlsConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Err(e) = read_certs(&tls.ca) {
        problems.push(("ca", e));
    }
    if let Err(e) = read_certs(&tls.cert) {
        problems.push(("cert", e));
    }
    if let Err(e) = read_key(&tls.key) {
        problems.push(("key", e));
    }
    if problems.is_empty()
        && let Err(e) = client_config(tls)
    {
        problems.push((e.field(), e.to_string()));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tls_files_name_their_field() {
        let tls = TlsConfig {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let fields: Vec<_> = check_files(&tls).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["ca", "cert", "key"]);
    }

    #[test]
    fn garbage_pem_is_rejected() {
        let dir = std::env::temp_dir().join(format!("dockwatch-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let tls = TlsConfig {
            ca: junk.clone(),
            cert: junk.clone(),
            key: junk,
        };
        let problems = check_files(&tls);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].1.contains("no PEM certificate"), "{problems:?}");
    }

    #[test]
    fn not_after_of_garbage_is_none() {
        assert_eq!(not_after(b"\x30\x05junk"), None);
        assert_eq!(not_after(b""), None);
    }
}
