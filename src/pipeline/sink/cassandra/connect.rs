//! Connecting to Cassandra: contact points, credentials, TLS, and the
//! load balancing (token-aware, the local datacenter first).

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;

use super::{CassandraSinkConfig, fatal};
use crate::pipeline::sink::SinkError;

/// A session to the configured nodes, with the configured user, password
/// and TLS.
pub(in crate::pipeline::sink) async fn connect(
    config: &CassandraSinkConfig,
) -> Result<Session, SinkError> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5));
    if let Some(user) = &config.user {
        builder = builder.user(user, config.password.clone().unwrap_or_default());
    }
    // Token-aware (the driver's default), and with a local datacenter, its
    // replicas only: LOCAL_QUORUM is counted there.
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    // Every request at the write consistency: a read by key (the
    // dashboard's lookup, replay's look at a letter's key) sees every row
    // the store acknowledged, as verify's id pages do.
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(policy.build())
        .consistency(config.consistency)
        .build();
    builder = builder.default_execution_profile_handle(profile.into_handle());
    if let Some(ca) = &config.tls_ca_file {
        builder = builder.tls_context(Some(tls_config(ca)?));
    }
    builder.build().await.map_err(|e| {
        let mut message = e.to_string();
        // A TLS-only port hangs up on a plaintext client's first request.
        if config.tls_ca_file.is_none() && message.contains("Connection broken") {
            message.push_str(
                " (if the server accepts TLS only, set sink.cassandra.tls_ca_file to its CA)",
            );
        }
        fatal(
            &format!("cannot connect to Cassandra at {}", config.nodes.join(",")),
            message,
        )
    })
}

/// A rustls client configuration trusting the CA certificates of a PEM file.
pub(super) fn tls_config(
    ca_file: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let context = format!("cannot use TLS CA file {}", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| fatal(&context, e))? {
        let cert = cert.map_err(|e| fatal(&context, e))?;
        roots.add(cert).map_err(|e| fatal(&context, e))?;
    }
    if roots.is_empty() {
        return Err(fatal(&context, "no certificate in it"));
    }
    // The provider is named, not taken from the process default: more than
    // one dependency enables a rustls provider.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fatal(&context, e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
