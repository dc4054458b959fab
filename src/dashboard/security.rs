//! Who may talk to the dashboard: a random access token (in the printed URL, then a
//! cookie), a Host header that names the bound address (DNS-rebinding defence), and a
//! separate CSRF token for state-changing POSTs. Pure functions; the server applies them.

use std::net::{IpAddr, SocketAddr};

/// A random secret of 128 bits, as 32 lowercase hex digits.
pub(crate) fn new_token() -> std::io::Result<String> {
    crate::random::hex(16)
}

/// Compare secrets in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie carrying the token; named after the port because browsers share cookies
/// between ports of one host, and two dashboards must not overwrite each other's.
pub(crate) fn cookie_name(port: u16) -> String {
    format!("qw_dashboard_{port}")
}

/// The value of cookie `name` in a `Cookie:` header.
pub(crate) fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The value of `key` in a query string (tokens are hex, so no decoding is needed; an
/// encoded value simply fails to match).
pub(crate) fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// Whether a `Host:` header may reach a server bound to `bind` (actual port included).
///
/// Accepted: `localhost`, the bound IP itself, and — when bound to an unspecified address
/// (`0.0.0.0`, `::`) — any IP literal. Never an arbitrary DNS name, which is what a
/// DNS-rebinding page would send. The port must match (or be absent only for port 80).
pub(crate) fn host_allowed(host: &str, bind: SocketAddr) -> bool {
    let (name, port) = split_host(host);
    let port_ok = match port {
        Some(p) => p.parse::<u16>().ok() == Some(bind.port()),
        None => bind.port() == 80,
    };
    if !port_ok {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => ip == bind.ip() || bind.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => {
                let rest = &host[end + 1..];
                (&host[..=end], rest.strip_prefix(':'))
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    }
}

/// The host part to print in the URL for a bound address.
pub(crate) fn url_host(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_of_128_bits() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn host_check_refuses_foreign_names_and_ports() {
        let lo: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        assert!(host_allowed("127.0.0.1:8123", lo));
        assert!(host_allowed("localhost:8123", lo));
        assert!(host_allowed("LOCALHOST:8123", lo));
        assert!(!host_allowed("evil.example:8123", lo));
        assert!(!host_allowed("127.0.0.1:9999", lo));
        assert!(!host_allowed("127.0.0.1", lo));
        assert!(!host_allowed("10.0.0.1:8123", lo));
        let any: SocketAddr = "0.0.0.0:8123".parse().unwrap();
        assert!(host_allowed("192.168.1.5:8123", any));
        assert!(!host_allowed("rebind.example:8123", any));
        let v6: SocketAddr = "[::1]:8123".parse().unwrap();
        assert!(host_allowed("[::1]:8123", v6));
        assert!(!host_allowed("[::2]:8123", v6));
        let p80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(host_allowed("127.0.0.1", p80));
    }

    #[test]
    fn cookie_and_query_parsing() {
        assert_eq!(
            cookie_value("a=1; qw_dashboard_5=xyz; b=2", "qw_dashboard_5"),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", "qw_dashboard_5"), None);
        assert_eq!(query_value("view=x&token=abc", "token"), Some("abc"));
        assert_eq!(query_value("tokenx=abc", "token"), None);
    }
}
