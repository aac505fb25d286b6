//! Reading `[metrics]`: where `katran run` serves its Prometheus endpoint.
//! The table's presence turns the endpoint on; without `address` it listens
//! on loopback only, so metrics reach the network only when the file says
//! so in as many words.

use std::net::SocketAddr;

use super::reader::{self, Entry};
use super::schema;
use super::source::{Problems, Sp};
use super::values::Bad;

/// What `[metrics]` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// Where `/metrics` is served (`schema::DEFAULT_METRICS_ADDRESS` unless
    /// the file names another).
    pub address: SocketAddr,
}

fn socket_address(s: &str) -> Result<SocketAddr, Bad> {
    let addr: SocketAddr = s.parse().map_err(|_| Bad {
        message: format!("\"{s}\" is not an address and port"),
        help: "write HOST:PORT with a numeric address, IPv6 in brackets: \
               address = \"127.0.0.1:9870\" or \"[::1]:9870\""
            .into(),
    })?;
    if addr.port() == 0 {
        return Err(Bad {
            message: format!("\"{s}\" has port 0"),
            help: "name the port Prometheus scrapes, e.g. address = \"127.0.0.1:9870\"".into(),
        });
    }
    Ok(addr)
}

fn address(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<SocketAddr>> {
    e.parsed(p, socket_address)
}

/// `[metrics]`, when written; `None` on errors (reported).
pub fn read(e: &Entry<'_>, p: &mut Problems) -> Option<Metrics> {
    let mut f = reader::single_table(e, &schema::METRICS, p)?;
    let address = f.read("address", p, address);
    f.finish(p);
    let default: SocketAddr = schema::DEFAULT_METRICS_ADDRESS.parse().ok()?;
    Some(Metrics {
        address: address.or(default)?,
    })
}

#[cfg(test)]
mod tests {
    use super::socket_address;

    #[test]
    fn addresses_need_a_port_and_brackets_for_ipv6() {
        assert!(socket_address("127.0.0.1:9870").is_ok());
        assert!(socket_address("[::1]:9870").is_ok());
        assert!(socket_address("::1:9870").is_err());
        assert!(socket_address("localhost:9870").is_err());
        assert!(socket_address("127.0.0.1:0").is_err());
    }
}
