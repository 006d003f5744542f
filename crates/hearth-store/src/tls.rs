//! TLS to PostgreSQL, read from the store URL as libpq reads it: `sslmode` (disable, allow,
//! prefer — the default —, require, verify-ca, verify-full) and `sslrootcert` (a PEM file of
//! the certificate authorities to trust, or `system` for the public ones).
//!
//! - disable: no TLS.
//! - allow, prefer: TLS when the server offers it, plain otherwise; the certificate is not
//!   checked (as libpq does): it keeps a passive listener out, not an impostor.
//! - require: TLS or no connection; the certificate is checked against `sslrootcert` when the
//!   URL names one (as libpq does with a root file), else not checked.
//! - verify-ca: TLS, the certificate signed by an authority of `sslrootcert` (default: the
//!   public ones, Mozilla's list).
//! - verify-full: that, and the certificate names the host connected to (`host`, even when
//!   `hostaddr` gives the address).
//!
//! tokio-postgres reads only disable, prefer and require, and no `sslrootcert`: the URL it
//! parses has them mapped, and the checks live in the connector.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Authority,
    AuthorityAndName,
}

/// `url` as tokio-postgres reads it (libpq's TLS options mapped or taken out), and the TLS
/// connector that checks what the URL asked for. Errors name the option, never the URL (it
/// may hold a password).
pub(crate) fn from_url(url: &str) -> Result<(String, MakeRustlsConnect), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // libpq's `key=value` form: the driver reads its sslmode (disable, prefer, require),
        // the certificate unchecked.
        return Ok((
            url.to_owned(),
            MakeRustlsConnect::new(client_config(Check::Nothing, None)?),
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = (None, None);
    let mut kept: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{key}: not UTF-8 once percent-decoded"))
        };
        match key {
            "sslmode" => mode = Some(decoded()?),
            "sslrootcert" => root = Some(decoded()?),
            _ => kept.push(pair.to_owned()),
        }
    }
    let (driver_mode, check) = match mode.as_deref().unwrap_or("prefer") {
        "disable" => ("disable", Check::Nothing),
        "allow" | "prefer" => ("prefer", Check::Nothing),
        "require" if root.is_some() => ("require", Check::Authority),
        "require" => ("require", Check::Nothing),
        "verify-ca" => ("require", Check::Authority),
        "verify-full" => ("require", Check::AuthorityAndName),
        other => {
            return Err(format!(
                "sslmode={other}: use disable, allow, prefer, require, verify-ca or verify-full"
            ))
        }
    };
    kept.push(format!("sslmode={driver_mode}"));
    let config = client_config(check, root.as_deref())?;
    Ok((
        format!("{base}?{}", kept.join("&")),
        MakeRustlsConnect::new(config),
    ))
}

fn client_config(check: Check, root: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    if check == Check::AuthorityAndName {
        return Ok(builder
            .with_root_certificates(roots(root)?)
            .with_no_client_auth());
    }
    let authorities = match check {
        Check::Authority => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?,
        ),
        _ => None,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Lenient {
            authorities,
            provider,
        }))
        .with_no_client_auth())
}

/// The authorities of `file` (PEM), or the public ones (no file, or `system`).
fn roots(file: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match file {
        None | Some("system") => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert={path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert={path}: no certificate in it"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert={path}: {e}"))?;
            }
        }
    }
    Ok(roots)
}

/// The checks short of verify-full: with `authorities` (verify-ca, or require with a root
/// file) the chain must lead to one of them but the name is not compared (webpki checks the
/// chain first, so a name mismatch means the chain was good); without (prefer, require) any
/// certificate is taken. Either way the server must prove it holds the certificate's key.
#[derive(Debug)]
struct Lenient {
    authorities: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(authorities) = &self.authorities else {
            return Ok(ServerCertVerified::assertion());
        };
        match authorities.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_options_are_mapped_for_the_driver_and_bad_ones_named() {
        let (url, _) = from_url("postgres://u:secret@h:5/db").unwrap();
        assert_eq!(url, "postgres://u:secret@h:5/db?sslmode=prefer");
        let (url, _) =
            from_url("postgres://u@h/db?application_name=x&sslmode=verify-full&connect_timeout=3")
                .unwrap();
        assert_eq!(
            url,
            "postgres://u@h/db?application_name=x&connect_timeout=3&sslmode=require"
        );
        let (url, _) = from_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(url.ends_with("?sslmode=disable"));
        let (url, _) = from_url("host=h dbname=db sslmode=require").unwrap();
        assert_eq!(url, "host=h dbname=db sslmode=require");
        let err = from_url("postgres://u:secret@h/db?sslmode=verify-everything")
            .err()
            .unwrap();
        assert!(err.contains("sslmode=verify-everything") && !err.contains("secret"));
        let err = from_url("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem")
            .err()
            .unwrap();
        assert!(err.starts_with("sslrootcert=/no/such.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = from_url(&format!(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert={}",
            empty.path().display()
        ))
        .err()
        .unwrap();
        assert!(err.contains("no certificate"), "{err}");
    }

    /// Whether `db`'s connection is encrypted, as the server sees it.
    fn encrypted(db: &crate::Database) -> bool {
        db.query_one(
            "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap()
            == Some(1)
    }

    #[test]
    fn connections_are_encrypted_and_checked_as_sslmode_says() {
        let server = hearth_testdata::PostgresServer::start_tls();
        let url = server.database();
        let ca = server.ca_file();
        let connect = |query: &str| crate::Database::connect(&format!("{url}?{query}"));
        let error = |query: &str| match connect(query) {
            Ok(_) => panic!("{query}: connected"),
            Err(e) => e.to_string(),
        };
        // prefer (the default) and require: encrypted, the certificate not checked.
        assert!(encrypted(&crate::Database::connect(&url).unwrap()));
        assert!(encrypted(&connect("sslmode=require").unwrap()));
        assert!(!encrypted(&connect("sslmode=disable").unwrap()));
        // verify-ca: signed by the authority named (not one of the public ones).
        let ca = format!("sslrootcert={}", ca.display());
        assert!(encrypted(
            &connect(&format!("sslmode=verify-ca&{ca}")).unwrap()
        ));
        assert!(encrypted(
            &connect(&format!("sslmode=require&{ca}")).unwrap()
        ));
        let err = error("sslmode=verify-ca");
        assert!(err.contains("certificate"), "{err}");
        // verify-full: and for the host named: 127.0.0.1 is not the certificate's name…
        let err = error(&format!("sslmode=verify-full&{ca}"));
        assert!(err.contains("certificate"), "{err}");
        // …the name as host, the address as hostaddr.
        let named = url.replacen("127.0.0.1", hearth_testdata::TLS_HOST, 1);
        let db = crate::Database::connect(&format!(
            "{named}?hostaddr=127.0.0.1&sslmode=verify-full&{ca}"
        ))
        .unwrap();
        assert!(encrypted(&db));
        // A server without TLS: require is refused rather than sent in the clear; prefer
        // falls back to plain.
        let plain = hearth_testdata::postgres_database();
        let err = crate::Database::connect(&format!("{plain}?sslmode=require"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("TLS"), "{err}");
        assert!(!encrypted(&crate::Database::connect(&plain).unwrap()));
    }
}
