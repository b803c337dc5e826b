//! `tributary healthcheck`: asks a running `serve` on its own address whether
//! it is ready, so an image that holds nothing but the binary has a health
//! check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;

use super::{AppError, AppResult};
use crate::cli::HealthcheckArgs;
use crate::config::Config;

pub async fn healthcheck(config: &Config, args: &HealthcheckArgs) -> AppResult {
    let listen = config.web.listen.ok_or_else(|| {
        AppError::Usage(
            "the dashboard is off ([web] listen = \"off\"), so there is nothing to ask; \
             give the address serve listens on with --listen"
                .into(),
        )
    })?;
    let path = if args.live { "/healthz" } else { "/readyz" };
    let url = format!("http://{}{path}", asked(listen));
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer (is `tributary serve` running?)"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body = body.trim();
    if status.is_success() {
        println!("{url}: {body}");
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!("{url}: {status} {body}")))
    }
}

/// The address to ask: an unspecified one (0.0.0.0, ::) on loopback.
fn asked(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        let ask = |s: &str| asked(s.parse().unwrap()).to_string();
        assert_eq!(ask("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(ask("[::]:9000"), "[::1]:9000");
        assert_eq!(ask("127.0.0.1:8081"), "127.0.0.1:8081");
        assert_eq!(ask("[::1]:8082"), "[::1]:8082");
    }
}
