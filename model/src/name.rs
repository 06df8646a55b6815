//! The name rules of Kubernetes (`k8s.io/apimachinery/pkg/util/validation`), with the API
//! server's own messages, so a problem reads as `kubectl apply` would print it.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const IANA_SVC_NAME_MAX: usize = 15;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// An RFC 1123 label: namespaces, port names, container names, hostnames.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_LABEL_MAX {
        return Err(too_long(DNS1123_LABEL_MAX));
    }
    if !is_label(s) {
        return Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric \
                    characters or '-', and must start and end with an alphanumeric character \
                    (e.g. 'my-name', or '123-abc')"
                .into(),
        );
    }
    Ok(())
}

/// An RFC 1123 subdomain: the names of most objects, and host names.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(too_long(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.split('.').all(is_label) {
        return Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                    characters, '-' or '.', and must start and end with an alphanumeric \
                    character (e.g. 'example.com')"
                .into(),
        );
    }
    Ok(())
}

/// `*.` followed by a subdomain, as Ingress hosts may be written.
pub fn wildcard_dns1123_subdomain(s: &str) -> Result<(), String> {
    match s.strip_prefix("*.") {
        Some(rest) if dns1123_subdomain(rest).is_ok() && s.len() <= DNS1123_SUBDOMAIN_MAX => Ok(()),
        _ => Err(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid \
                  DNS subdomain, which must consist of lower case alphanumeric characters, '-' \
                  or '.' and end with an alphanumeric character (e.g. '*.example.com')"
                .into(),
        ),
    }
}

/// An RFC 1035 label: Service names, which become DNS labels and must start with a letter.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_LABEL_MAX {
        return Err(too_long(DNS1123_LABEL_MAX));
    }
    if !is_label(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(
            "a DNS-1035 label must consist of lower case alphanumeric characters or \
                    '-', start with an alphabetic character, and end with an alphanumeric \
                    character (e.g. 'my-name', or 'abc-123')"
                .into(),
        );
    }
    Ok(())
}

/// An IANA service name (RFC 6335): container port names and named target ports.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    if s.len() > IANA_SVC_NAME_MAX {
        return Err(too_long(IANA_SVC_NAME_MAX));
    }
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(|&c| is_lower_alnum(c) || c == b'-') {
        return Err(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
        );
    }
    if s.contains("--") {
        return Err("must not contain consecutive hyphens".into());
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        return Err("must contain at least one letter (a-z)".into());
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err("must not begin or end with a hyphen".into());
    }
    Ok(())
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A qualified name (`[prefix/]name`): label and annotation keys, `appProtocol`.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        dns1123_subdomain(prefix).map_err(|e| format!("prefix part {e}"))?;
    }
    if name.len() > QUALIFIED_NAME_MAX {
        return Err(format!("name part {}", too_long(QUALIFIED_NAME_MAX)));
    }
    if !is_qualified_part(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and \
                    must start and end with an alphanumeric character (e.g. 'MyName', or \
                    'my.name', or '123-abc'), with an optional DNS subdomain prefix and '/' \
                    (e.g. 'example.com/MyName')"
                .into(),
        );
    }
    Ok(())
}

/// A label value: empty, or up to 63 characters of the qualified-name alphabet.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.len() > LABEL_VALUE_MAX {
        return Err(too_long(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !is_qualified_part(s) {
        return Err(
            "a valid label must be an empty string or consist of alphanumeric \
                    characters, '-', '_' or '.', and must start and end with an alphanumeric \
                    character (e.g. 'MyValue', or 'my_value', or '12345')"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
