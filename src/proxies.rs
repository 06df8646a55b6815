//! `ferry get proxies`: the parts subscribed to a `ferry control`, read from its admin
//! `/status`.

use std::net::SocketAddr;

use ferry_runtime::status::ProxyStatus;

use crate::get::{Error, Output, encode, or_none, request, table};

/// Fetches the subscribed parts from a control plane's `/status`.
pub async fn fetch(admin: SocketAddr) -> Result<Vec<ProxyStatus>, Error> {
    let (status, _, body) = request(admin, http::Method::GET, "/status").await?;
    if !status.is_success() {
        return Err(Error::Status {
            addr: admin,
            status,
        });
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string(), admin))?;
    match value.get_mut("proxies").map(serde_json::Value::take) {
        None => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list).map_err(|e| Error::Decode(e.to_string(), admin)),
    }
}

/// How long ago, as kubectl prints ages: `45s`, `12m`, `3h`, `2d`.
fn age(then_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The table (or JSON/YAML) of the parts.
pub fn render(proxies: &[ProxyStatus], output: Output, now_ms: u64) -> Result<String, Error> {
    if matches!(output, Output::Json | Output::Yaml) {
        return encode(&proxies, output);
    }
    let wide = output == Output::Wide;
    let mut header = vec![
        "ROLE",
        "NAME",
        "ADDRESS",
        "VERSION",
        "LAST-ACK",
        "LAST-NACK",
    ];
    if wide {
        header.extend(["NODE", "SENT", "CONNECTED"]);
    }
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            let mut row = vec![
                p.role.clone(),
                p.name.clone(),
                p.address.clone(),
                p.version.to_string(),
                p.last_ack_unix_ms
                    .map_or_else(|| "<none>".to_owned(), |t| age(t, now_ms)),
                p.last_nack.as_ref().map_or_else(
                    || "<none>".to_owned(),
                    |n| format!("v{} {}: {}", n.version, age(n.at_unix_ms, now_ms), n.reason),
                ),
            ];
            if wide {
                row.extend([
                    or_none(p.node.clone()),
                    p.sent_version.to_string(),
                    age(p.connected_at_unix_ms, now_ms),
                ]);
            }
            row
        })
        .collect();
    Ok(table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use ferry_runtime::status::ProxyNack;

    use super::*;

    #[test]
    fn a_table_row_per_part_with_its_last_nack() {
        let proxies = vec![ProxyStatus {
            role: "gateway".into(),
            name: "edge-1".into(),
            node: "node-a".into(),
            address: "10.0.0.7:41000".into(),
            version: 4,
            sent_version: 5,
            connected_at_unix_ms: 1_000,
            last_ack_unix_ms: Some(58_000),
            last_nack: Some(ProxyNack {
                version: 5,
                reason: "certificate shop/tls: no key".into(),
                at_unix_ms: 60_000,
            }),
        }];
        let text = render(&proxies, Output::Table, 61_000).unwrap();
        assert_eq!(
            text,
            "ROLE      NAME     ADDRESS          VERSION   LAST-ACK   LAST-NACK\n\
             gateway   edge-1   10.0.0.7:41000   4         3s         v5 1s: certificate shop/tls: no key\n"
        );
        let wide = render(&proxies, Output::Wide, 61_000).unwrap();
        assert!(wide.contains("node-a") && wide.contains("60s"), "{wide}");
        assert_eq!(
            render(&[], Output::Table, 0).unwrap(),
            "ROLE   NAME   ADDRESS   VERSION   LAST-ACK   LAST-NACK\n"
        );
    }

    #[test]
    fn ages_as_kubectl_prints_them() {
        assert_eq!(age(0, 119_000), "119s");
        assert_eq!(age(0, 120_000), "2m");
        assert_eq!(age(0, 7_200_000), "2h");
        assert_eq!(age(0, 172_800_000), "2d");
        assert_eq!(age(10, 0), "0s");
    }
}
