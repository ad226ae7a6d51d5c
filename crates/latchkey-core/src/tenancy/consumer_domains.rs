//! Free and consumer mail domains, which no organisation may claim: anyone can get an address
//! there. The list ships with the binary (data/consumer-domains.txt).

use std::{collections::HashSet, sync::LazyLock};

static LIST: &str = include_str!("../../data/consumer-domains.txt");

static DOMAINS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    LIST.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
});

/// True when `domain` (already normalised: lower-case ASCII, no trailing dot) is a listed
/// domain or any name under one, so `mail.yahoo.co.uk` counts like `yahoo.co.uk`.
pub fn is_consumer_domain(domain: &str) -> bool {
    let mut rest = domain;
    loop {
        if DOMAINS.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_domains_and_names_under_them_are_consumer() {
        assert!(DOMAINS.len() > 300, "{}", DOMAINS.len());
        for d in ["gmail.com", "mail.yahoo.co.uk", "a.b.outlook.com", "proton.me", "qq.com"] {
            assert!(is_consumer_domain(d), "{d}");
        }
        for d in ["acme.com", "notgmail.com", "gmail.com.acme.io", "co.uk", "com", "yahoo.co"] {
            assert!(!is_consumer_domain(d), "{d}");
        }
    }

    #[test]
    fn the_list_is_normalised() {
        for d in DOMAINS.iter() {
            assert_eq!(*d, d.to_ascii_lowercase(), "{d}");
            assert!(d.contains('.') && !d.ends_with('.') && !d.contains(' '), "{d}");
        }
    }
}
