//! doctor's DNS and TCP steps.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use crate::class::ErrorClass;
use crate::endpoint::{self, Endpoint};
use crate::secret::Target;

use super::report::{Outcome, TIMEOUT_HINT};

pub(super) async fn dns(target: &Target) -> (Outcome, Option<Vec<SocketAddr>>) {
    match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
        Ok(found) => {
            let addrs: Vec<SocketAddr> = found.collect();
            if addrs.is_empty() {
                return (
                    Outcome::fail(
                        ErrorClass::Transient,
                        format!("{} resolves to no address", target.host),
                        "check the host name",
                    ),
                    None,
                );
            }
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            let d = format!("{} → {}", target.host, list.join(", "));
            let public = addrs.iter().any(|a| is_public(a.ip()));
            let outcome = if public && endpoint::kind(&target.host) == Endpoint::Rds {
                Outcome::Warn(d, "the cluster endpoint resolves to a public address: the task reaches it over the internet (publicly accessible instance, or a DNS lookup from outside the VPC); keep the cluster private".into())
            } else {
                Outcome::Ok(d)
            };
            (outcome, Some(addrs))
        }
        Err(e) => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{} does not resolve: {e}", target.host),
                "check the host name, and that the task uses the VPC's DNS (enableDnsHostnames/enableDnsSupport for private endpoints)",
            ),
            None,
        ),
    }
}

pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        // 100.64.0.0/10 (carrier-grade NAT) is not public either.
        IpAddr::V4(v4) => {
            let shared = v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]);
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || shared)
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()),
    }
}

pub(super) async fn tcp(addrs: &[SocketAddr]) -> (Outcome, Option<()>) {
    match TcpStream::connect(addrs[0]).await {
        Ok(_) => (Outcome::Ok(format!("connected to {}", addrs[0])), Some(())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{}: connection refused", addrs[0]),
                "nothing listens on that port: the port in the secret, a cluster that is stopped or still starting",
            ),
            None,
        ),
        Err(e) => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{}: {e}", addrs[0]),
                TIMEOUT_HINT,
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_address_is_not_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.1.1",
            "fd00::1",
            "::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["52.95.110.1", "2600:1f18::1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }
}
