//! Client addresses: the socket peer, or X-Forwarded-For when the peer is a trusted proxy.
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Network;

/// The proxies whose X-Forwarded-For is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(entries: &[Network]) -> Self {
        Self(entries.iter().map(|n| n.0).collect())
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: walking X-Forwarded-For from the right, skipping trusted
    /// proxies, the first untrusted hop is the client. Only consulted when the socket peer
    /// itself is trusted, so a client cannot pick its own address.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let Some(header) = forwarded_for else { return Some(peer) };
        let mut client = peer;
        for hop in header.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let nets = ["10.0.0.0/8", "192.168.1.1"].map(|n| Network::parse(n).unwrap());
        let proxies = TrustedProxies::new(&nets);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(proxies.client_ip(Some(ip("1.2.3.4")), Some("9.9.9.9")), Some(ip("1.2.3.4")));
        assert_eq!(proxies.client_ip(Some(ip("10.1.1.1")), Some("9.9.9.9")), Some(ip("9.9.9.9")));
        assert_eq!(proxies.client_ip(Some(ip("10.1.1.1")), Some("6.6.6.6, 9.9.9.9, 192.168.1.1")), Some(ip("9.9.9.9")));
        assert_eq!(proxies.client_ip(Some(ip("10.1.1.1")), Some("garbage")), Some(ip("10.1.1.1")));
        assert_eq!(proxies.client_ip(Some(ip("10.1.1.1")), None), Some(ip("10.1.1.1")));
    }
}
