//! Whether a server is open to the network without protection: a listener
//! beyond loopback needs TLS and a bearer token (gRPC and the HTTP gateway
//! share both), and the metrics endpoint, plain HTTP without auth, must
//! stay on loopback. `pointsman serve` refuses to start when this finds an
//! open listener, unless told `--insecure`.

use std::net::SocketAddr;

/// Where a server listens and what protects it.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub grpc: SocketAddr,
    /// The HTTP gateway, if served.
    pub http: Option<SocketAddr>,
    /// The Prometheus endpoint, if served.
    pub metrics: Option<SocketAddr>,
    /// Whether TLS is on (a certificate and key are given).
    pub tls: bool,
    /// Whether clients must send a bearer token.
    pub auth_token: bool,
}

impl Listeners {
    /// The first open listener (gRPC, then HTTP, then metrics) and what it
    /// lacks, naming its flag (`--listen 0.0.0.0:50051 is beyond loopback
    /// without …`); None when every listener is protected or on loopback.
    pub fn open(&self) -> Option<String> {
        let secured = self.tls && self.auth_token;
        let open_grpc = !self.grpc.ip().is_loopback() && !secured;
        let open_http = self.http.is_some_and(|h| !h.ip().is_loopback()) && !secured;
        let open_metrics = self.metrics.is_some_and(|m| !m.ip().is_loopback());
        let missing = match (self.tls, self.auth_token) {
            (false, false) => "TLS (--tls-cert/--tls-key) and a bearer token (--auth-token-file)",
            (false, true) => "TLS (--tls-cert/--tls-key)",
            _ => "a bearer token (--auth-token-file or POINTSMAN_AUTH_TOKEN)",
        };
        if open_grpc {
            Some(format!(
                "--listen {} is beyond loopback without {missing}",
                self.grpc
            ))
        } else if open_http {
            Some(format!(
                "--http-listen {} is beyond loopback without {missing}",
                self.http.expect("checked")
            ))
        } else if open_metrics {
            Some(format!(
                "--metrics-listen {} is beyond loopback (metrics are plain HTTP without auth)",
                self.metrics.expect("checked")
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(grpc: &str, tls: bool, auth_token: bool) -> Listeners {
        Listeners {
            grpc: grpc.parse().unwrap(),
            http: None,
            metrics: None,
            tls,
            auth_token,
        }
    }

    #[test]
    fn loopback_or_tls_with_a_token_is_closed() {
        assert_eq!(listeners("127.0.0.1:1", false, false).open(), None);
        assert_eq!(listeners("[::1]:1", false, false).open(), None);
        assert_eq!(listeners("0.0.0.0:1", true, true).open(), None);
    }

    #[test]
    fn an_open_listener_names_its_flag_and_what_it_lacks() {
        let open = |l: Listeners| l.open().expect("open");
        assert_eq!(
            open(listeners("0.0.0.0:1", false, false)),
            "--listen 0.0.0.0:1 is beyond loopback without TLS (--tls-cert/--tls-key) and a bearer token (--auth-token-file)"
        );
        assert!(open(listeners("0.0.0.0:1", false, true))
            .ends_with("without TLS (--tls-cert/--tls-key)"));
        assert!(open(listeners("0.0.0.0:1", true, false))
            .ends_with("without a bearer token (--auth-token-file or POINTSMAN_AUTH_TOKEN)"));
        let http = Listeners {
            http: Some("0.0.0.0:2".parse().unwrap()),
            ..listeners("127.0.0.1:1", false, false)
        };
        assert!(open(http).starts_with("--http-listen 0.0.0.0:2 is beyond loopback"));
        // Metrics have no auth at all: open beyond loopback even with TLS and a token.
        let metrics = Listeners {
            metrics: Some("0.0.0.0:3".parse().unwrap()),
            ..listeners("0.0.0.0:1", true, true)
        };
        assert_eq!(
            open(metrics),
            "--metrics-listen 0.0.0.0:3 is beyond loopback (metrics are plain HTTP without auth)"
        );
    }
}
