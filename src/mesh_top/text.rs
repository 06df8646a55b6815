//! A reader of the Prometheus/OpenMetrics text the sidecars serve: samples only (`# HELP`,
//! `# TYPE` and `# EOF` are skipped, timestamps ignored). No crate in the lockfile parses it
//! (prometheus-client only encodes).

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, `""` when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Reads every sample; a line it cannot read is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(sample(line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?);
    }
    Ok(samples)
}

fn sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("an unfinished escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("an unclosed label value".into()),
                }
            };
            labels.push((key.trim().to_owned(), value));
            rest = &after[close + 1..];
        }
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = value
        .parse::<f64>()
        .map_err(|_| format!("the value {value:?} is not a number"))?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}
