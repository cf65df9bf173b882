//! TLS: the development CA and server certificate created on first start, or a configured pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Where the development CA and server certificate live inside the data directory.
#[derive(Debug, Clone)]
pub struct DevCaPaths {
    /// The CA certificate that clients are given to trust.
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    names: PathBuf,
}

impl DevCaPaths {
    /// The paths under `data_dir/tls`.
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("dev-ca.pem"),
            ca_key: dir.join("dev-ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            names: dir.join("server-names.txt"),
        }
    }
}

/// The CA's parameters. They are rebuilt identically on every start, so the stored CA key can sign a
/// new server certificate without parsing the CA certificate back.
fn ca_params() -> Result<CertificateParams> {
    authority_params(
        "Remote support relay development CA",
        "Remote support relay (development)",
    )
}

/// A CA's parameters from its names, identical at every call (both CAs are rebuilt this way to
/// sign with their stored key).
fn authority_params(common_name: &str, organization: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    Ok(params)
}

/// A leaf certificate's parameters: `names` (the first also its common name), for `uses`.
fn leaf_params(names: &[String], uses: Vec<ExtendedKeyUsagePurpose>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(names.to_vec()).context("certificate names")?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    params.extended_key_usages = uses;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    Ok(params)
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates the development CA (once) and a server certificate for `names` (again whenever the names
/// change). Returns the paths.
pub fn ensure_dev_ca(data_dir: &Path, names: &[String]) -> Result<DevCaPaths> {
    let paths = DevCaPaths::new(data_dir);
    let dir = paths.ca_cert.parent().context("tls directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let ca_key = if paths.ca_key.exists() && paths.ca_cert.exists() {
        let pem = std::fs::read_to_string(&paths.ca_key)
            .with_context(|| format!("reading {}", paths.ca_key.display()))?;
        KeyPair::from_pem(&pem).context("parsing the development CA key")?
    } else {
        let key = KeyPair::generate().context("generating the development CA key")?;
        let cert = ca_params()?
            .self_signed(&key)
            .context("signing the development CA")?;
        write_private(&paths.ca_key, &key.serialize_pem())?;
        std::fs::write(&paths.ca_cert, cert.pem())
            .with_context(|| format!("writing {}", paths.ca_cert.display()))?;
        tracing::info!(ca = %paths.ca_cert.display(), "created a development CA; give this file to clients to trust");
        // A new CA invalidates any older server certificate.
        let _ = std::fs::remove_file(&paths.server_cert);
        key
    };

    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&paths.names).unwrap_or_default();
    if current != wanted || !paths.server_cert.exists() || !paths.server_key.exists() {
        let issuer = Issuer::new(ca_params()?, ca_key);
        let params = leaf_params(names, vec![ExtendedKeyUsagePurpose::ServerAuth])?;
        let key = KeyPair::generate().context("generating the server key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the server certificate")?;
        write_private(&paths.server_key, &key.serialize_pem())?;
        std::fs::write(&paths.server_cert, cert.pem())
            .with_context(|| format!("writing {}", paths.server_cert.display()))?;
        std::fs::write(&paths.names, &wanted)
            .with_context(|| format!("writing {}", paths.names.display()))?;
    }
    Ok(paths)
}

/// Builds the server's TLS configuration: the configured pair, or the development CA's.
pub fn server_config(config: &Config) -> Result<(Arc<rustls::ServerConfig>, Option<DevCaPaths>)> {
    let (cert_path, key_path, dev) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
        _ => {
            let paths = ensure_dev_ca(&config.data_dir, &config.server_names)?;
            (
                paths.server_cert.clone(),
                paths.server_key.clone(),
                Some(paths),
            )
        }
    };
    let certs = pem_certs(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(server), dev))
}

/// The fleet CA's parameters, rebuilt identically each time (as the development CA's are), so that
/// its key alone can issue relay certificates.
fn fleet_ca_params() -> Result<CertificateParams> {
    authority_params(
        "Remote support relay fleet CA",
        "Remote support relay fleet",
    )
}

/// Makes a fleet CA in `dir`: `fleet-ca.pem` (every relay's `fleet_ca`) and `fleet-ca-key.pem`
/// (0600; kept by the operator, needed only to issue relay certificates). Refuses to replace one.
pub fn make_fleet_ca(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_path, key_path) = (dir.join("fleet-ca.pem"), dir.join("fleet-ca-key.pem"));
    anyhow::ensure!(
        !cert_path.exists() && !key_path.exists(),
        "{} already holds a fleet CA: relays trust it, so it is not replaced",
        dir.display()
    );
    let key = KeyPair::generate().context("generating the fleet CA key")?;
    let cert = fleet_ca_params()?
        .self_signed(&key)
        .context("signing the fleet CA")?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// Issues a relay's certificate from the fleet CA in `ca_dir` for `names` (the host of its
/// `announce_address` first), usable both to serve and to dial peer links. Writes `NAME.pem` and
/// `NAME-key.pem` (0600) in `out_dir`, named after the first name.
pub fn make_fleet_cert(
    ca_dir: &Path,
    names: &[String],
    out_dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let first = names.first().context("a relay certificate needs a name")?;
    let ca_key_path = ca_dir.join("fleet-ca-key.pem");
    let pem = std::fs::read_to_string(&ca_key_path)
        .with_context(|| format!("reading {}", ca_key_path.display()))?;
    let ca_key = KeyPair::from_pem(&pem).context("parsing the fleet CA key")?;
    let issuer = Issuer::new(fleet_ca_params()?, ca_key);
    let mut params = leaf_params(
        names,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Remote support relay fleet");
    let key = KeyPair::generate().context("generating the relay key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the relay certificate")?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let safe: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (cert_path, key_path) = (
        out_dir.join(format!("{safe}.pem")),
        out_dir.join(format!("{safe}-key.pem")),
    );
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// The TLS settings of a fleet's peer links: the server side (a client certificate from the fleet
/// CA is required) and the client side (the peer's certificate must come from the fleet CA, and
/// this relay shows its own).
pub fn peer_configs(
    config: &Config,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)> {
    let (Some(ca), Some(cert), Some(key)) =
        (&config.fleet_ca, &config.fleet_cert, &config.fleet_key)
    else {
        anyhow::bail!("a fleet needs fleet_ca, fleet_cert and fleet_key");
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca)? {
        roots.add(c).context("the fleet CA certificate")?;
    }
    let roots = Arc::new(roots);
    let chain = pem_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .context("the fleet's client-certificate check")?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .context("fleet_cert and fleet_key do not match")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("fleet_cert and fleet_key do not match")?;
    Ok((Arc::new(server), Arc::new(client)))
}
