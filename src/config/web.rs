//! `[web]`: where `serve` listens, and the token that guards the
//! dashboard, its API and `/metrics` (required as soon as the address is
//! not loopback; from the environment or a file, never from the config
//! itself).

use std::net::SocketAddr;
use std::sync::Arc;

use super::raw::RawWeb;
use super::{ConfigError, invalid};

/// Validated `[web]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Where to listen; `None` serves nothing.
    pub listen: Option<SocketAddr>,
    /// Required by the config when `listen` is not loopback.
    pub token: Option<Token>,
    /// See [`RawWeb::header_timeout`].
    pub header_timeout: std::time::Duration,
    /// See [`RawWeb::max_connections`].
    pub max_connections: usize,
}

/// The dashboard's access token. Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(secret: String) -> Token {
        Token(secret.into())
    }

    /// Constant-time comparison.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// An address and port, or a host name and port that resolves to loopback
/// only (`localhost:9000`): a name that reaches other machines must be
/// written as the address meant, so the token rule sees it.
fn listen_address(key: &'static str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        invalid(
            key,
            format!(
                "{text:?} is not an address and port like 127.0.0.1:8080 or localhost:8080 ({why})"
            ),
        )
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("no port".into()));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("port {port:?} is not a number")))?;
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| bad(e.to_string()))?
        .collect();
    match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        Some(first) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*first),
        Some(_) => Err(bad(format!(
            "{host} resolves to addresses that are not loopback: write the address to listen on"
        ))),
        None => Err(bad(format!("{host} resolves to no address"))),
    }
}

/// `[web]`: where `serve` listens and the token it asks for. A token is
/// required as soon as the address is not loopback.
pub(super) fn resolve_web(
    raw: &RawWeb,
    listen: Option<String>,
    env_token: Option<String>,
    (header_timeout, max_connections): (Option<String>, Option<usize>),
) -> Result<WebConfig, ConfigError> {
    let key = "web.listen";
    let text = listen
        .or_else(|| raw.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = if text == "off" {
        None
    } else {
        Some(listen_address(key, &text)?)
    };
    let token = match (env_token, &raw.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(file)) => Some(
            super::files::read_capped(file, super::files::SECRET_CAP)
                .map_err(|e| invalid("web.token_file", e))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let token = match token {
        Some(t) if t.chars().count() < 16 => {
            return Err(invalid(
                "web.token_file",
                "the web token must be at least 16 characters (TRIBUTARY_WEB_TOKEN or web.token_file)",
            ));
        }
        t => t.map(Token::new),
    };
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(invalid(
            key,
            format!(
                "{addr} is reachable from other machines, so the dashboard needs a token: \
                 set TRIBUTARY_WEB_TOKEN or web.token_file, or listen on 127.0.0.1"
            ),
        ));
    }
    let header_timeout = super::duration(
        "web.header_timeout",
        header_timeout.as_deref().or(raw.header_timeout.as_deref()),
        10 * super::SECOND,
        (std::time::Duration::from_millis(10), 10 * super::MINUTE),
    )?;
    let max_connections = match max_connections.or(raw.max_connections) {
        None => 256,
        Some(n) if (1..=65_536).contains(&n) => n,
        Some(n) => {
            return Err(invalid(
                "web.max_connections",
                format!("{n} must be between 1 and 65536"),
            ));
        }
    };
    Ok(WebConfig {
        listen,
        token,
        header_timeout,
        max_connections,
    })
}
