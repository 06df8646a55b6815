//! The host's `/etc/resolv.conf`: its nameservers are the default upstreams and its search
//! domains extend the Pod search path for autopath.

use std::net::{IpAddr, SocketAddr};

/// What ferry reads from a resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
}

/// Parses resolv.conf text; lines it does not use (options, sortlist, comments) are skipped.
/// As in glibc, the last `search` or `domain` line wins.
pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A zone index (`fe80::1%eth0`) cannot be forwarded to portably: skip it.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    conf.nameservers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                conf.search = words
                    .map(|w| w.trim_end_matches('.').to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
            }
            _ => {}
        }
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_and_the_last_search_line() {
        let conf = parse(
            "# generated\nnameserver 10.0.0.2\nnameserver ::1 ; local\nnameserver bogus\n\
             domain old.example\nsearch corp.example. example.net\noptions ndots:2\n",
        );
        assert_eq!(
            conf.nameservers,
            vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(conf.search, vec!["corp.example", "example.net"]);
    }
}
