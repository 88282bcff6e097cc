//! Facts about the client and the request: the peer and proxy chain (client addresses, for
//! the throttle), and what the login life-cycle reads once from a request (user agent,
//! session-protection identifier, query, cookies).
//!
//! The proxy chain is parsed here rather than by a crate: the small ones on crates.io read
//! only the first `X-Forwarded-For` line (a client's own line would then win over the one the
//! proxy appended) or trust a fixed number of hops instead of a list of proxies
//! (docs/design.md).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use cookie::Cookie;
use http::{header, request::Parts, HeaderValue};
use sha2::{Digest, Sha256};

use crate::record::ProtectionId;

/// Facts about the request that the login changes need (user agent, query, cookies, peer),
/// read once from the first `Parts` that asks. A logged-in request never builds them: it
/// needs only the [`ProtectionId`], computed on the stack.
pub(crate) struct RequestFacts {
    pub protection_id: ProtectionId,
    pub user_agent: String,
    pub query: Option<String>,
    pub remember_cookie: Option<String>,
    pub peer: PeerInfo,
    /// The `Cookie` header lines, for cookies other than remember-me (the device cookie of a
    /// password login). Cloning a `HeaderValue` shares its bytes.
    cookie_headers: Vec<HeaderValue>,
}

impl RequestFacts {
    pub(crate) fn read(parts: &Parts, remember_cookie_name: Option<&str>) -> Self {
        let cookie_headers: Vec<_> = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .cloned()
            .collect();
        let remember_cookie =
            remember_cookie_name.and_then(|name| cookie_value(&cookie_headers, name));
        Self {
            protection_id: protection_id(parts),
            user_agent: user_agent(parts).to_owned(),
            query: parts.uri.query().map(str::to_owned),
            remember_cookie,
            peer: PeerInfo::from_parts(parts),
            cookie_headers,
        }
    }

    /// The value of the request's cookie called `name`.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        cookie_value(&self.cookie_headers, name)
    }
}

/// Whether the request carries a cookie called `name`, without copying any cookie: the
/// anonymous path asks this before building the [`RequestFacts`].
pub(crate) fn has_cookie(parts: &Parts, name: &str) -> bool {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .any(|c| c.is_ok_and(|c| c.name() == name))
}

fn user_agent(parts: &Parts) -> &str {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The session-protection identifier of a request: a 96-bit SHA-256 prefix of the client's IP
/// address and `User-Agent`, base64url. Built on the stack: it is compared with the auth
/// record on every logged-in request.
pub(crate) fn protection_id(parts: &Parts) -> ProtectionId {
    let mut hasher = Sha256::new();
    match parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        Some(IpAddr::V4(ip)) => hasher.update(ip.octets()),
        Some(IpAddr::V6(ip)) => hasher.update(ip.octets()),
        None => {}
    }
    hasher.update(b"|");
    hasher.update(user_agent(parts).as_bytes());
    ProtectionId::base64(&hasher.finalize()[..12])
}

/// The value of the first cookie called `name`; unparsable headers are skipped.
fn cookie_value(headers: &[HeaderValue], name: &str) -> Option<String> {
    headers
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(|c| c.ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// What a client address is derived from: the socket peer and the `X-Forwarded-For` list,
/// captured from a request so that the address can be computed later (the login flow keeps
/// it in [`AuthSession`](crate::AuthSession)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    peer: Option<IpAddr>,
    /// `None` when any header line is not text: then only the peer is believed.
    forwarded_for: Option<String>,
}

impl PeerInfo {
    /// Whether the request had an `X-Forwarded-For` header (text or not).
    pub(crate) fn carries_forwarded_for(&self) -> bool {
        self.forwarded_for.as_deref() != Some("")
    }

    /// Reads the peer (`ConnectInfo<SocketAddr>`) and `X-Forwarded-For` of a request.
    pub fn from_parts(parts: &Parts) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| canonical(info.0.ip()));
        // Several header lines form one list, in order (RFC 9110, section 5.3).
        let forwarded_for = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Option<Vec<_>>>()
            .map(|lines| lines.join(","));
        Self {
            peer,
            forwarded_for,
        }
    }

    /// The client's address, believing `X-Forwarded-For` only from `trusted_proxies`.
    pub fn client_addr(&self, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
        let peer = self.peer?;
        let is_trusted = |ip: IpAddr| trusted_proxies.iter().any(|&p| canonical(p) == ip);
        if !is_trusted(peer) {
            return Some(peer);
        }
        let Some(forwarded_for) = &self.forwarded_for else {
            return Some(peer);
        };
        let mut client = peer;
        for entry in forwarded_for.split(',').rev() {
            let Some(ip) = parse_forwarded_ip(entry) else {
                return Some(peer);
            };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
        // When every entry is a trusted proxy, the left-most one is the closest thing to a
        // client.
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an IP address, or one with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`), as some proxies write.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(canonical(ip))
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4
/// peers) to plain IPv4, so one client has one key and matches its trusted-proxy entry.
pub(crate) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}
