//! DNS-name rules for matching a certificate's names to a domain, as TLS clients apply
//! them (RFC 6125): case-insensitive, a trailing dot ignored, and a wildcard covering
//! exactly one label.

/// DNS name comparison: case-insensitive, a trailing dot ignored.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Whether a certificate name covers a domain. A wildcard `*.example.com` covers
/// exactly one extra label (`a.example.com`, not `example.com` nor `a.b.example.com`),
/// as RFC 6125 and every TLS client have it. Asking for the wildcard itself matches it.
pub fn name_covers(cert_name: &str, domain: &str) -> bool {
    if same_name(cert_name, domain) {
        return true;
    }
    let Some(suffix) = cert_name.strip_prefix("*.") else {
        return false;
    };
    match domain.split_once('.') {
        Some((label, rest)) => !label.is_empty() && label != "*" && same_name(suffix, rest),
        None => false,
    }
}

/// Whether `cert_name` names `domain` exactly (no wildcard expansion).
pub fn name_is(cert_name: &str, domain: &str) -> bool {
    same_name(cert_name, domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(name_covers("*.example.com", "turn.example.com"));
        assert!(name_covers("*.example.com", "TURN.Example.com."));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", ".example.com"));
        assert!(name_covers("*.example.com", "*.example.com"));
        assert!(!name_covers("turn.example.com", "x.turn.example.com"));
        assert!(name_covers("turn.example.com", "turn.example.com"));
    }
}
