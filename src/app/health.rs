//! `tributary healthcheck`: asks a running `serve` on its own address whether
//! it is ready, so an image that holds nothing but the binary has a health
//! check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;

use super::{AppError, AppResult};
use crate::cli::HealthcheckArgs;

/// The most of an answer's body read and printed: `/readyz` says one line.
const BODY_BYTES: usize = 4096;

pub async fn healthcheck(listen: Option<SocketAddr>, args: &HealthcheckArgs) -> AppResult {
    let listen = listen.ok_or_else(|| {
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
        // The answer of this address, not of wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build an HTTP client")?;
    let mut response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer (is `tributary serve` running?)"))?;
    let status = response.status();
    // The whole answer, within the timeout and BODY_BYTES: serve's is one
    // line, so a longer or endless one is not serve's.
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return Err(AppError::Failed(anyhow::anyhow!(
                    "{url}: {status}, but the answer broke off: {e}"
                )));
            }
        }
        if body.len() > BODY_BYTES {
            return Err(AppError::Failed(anyhow::anyhow!(
                "{url}: {status}, but the answer goes on past {BODY_BYTES} bytes: \
                 not tributary serve's"
            )));
        }
    }
    let body = String::from_utf8_lossy(&body);
    let body = super::table::escape(body.trim());
    if status.is_success() {
        println!("{url}: {body}");
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!("{url}: {status} {body}")))
    }
}

/// `--listen ADDR` as given, "off" as none.
pub fn parse_listen(listen: &str) -> AppResult<Option<SocketAddr>> {
    if listen.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    listen.trim().parse().map(Some).map_err(|_| {
        AppError::Usage(format!(
            "--listen {listen:?} is not an address: use HOST:PORT, e.g. 127.0.0.1:8080"
        ))
    })
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
