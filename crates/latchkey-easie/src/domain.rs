//! Domain names and email addresses as the tenant checks compare them. Equality is exact after
//! normalisation (ASCII lower case), so a subdomain, a parent domain, a Unicode look-alike or
//! the punycode form of another name never equals an enrolled domain. Nothing is repaired:
//! a trailing dot, surrounding spaces or non-ASCII characters make the value invalid, because
//! Google and Microsoft never send them and the enrolled domain reaches this crate already
//! normalised by the core.

use std::fmt;

use crate::refusal::Refusal;

const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
/// RFC 5321 §4.5.3.1: the longest local part and the longest address in an SMTP path.
const MAX_LOCAL_LEN: usize = 64;
const MAX_EMAIL_LEN: usize = 254;
/// Characters of an RFC 5322 dot-atom besides letters, digits and dots. Quoted local parts,
/// comments and display names are refused. This is Latchkey's one address grammar: the core's
/// `normalize_email` is built on [`Email::parse`].
const ATEXT: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
/// Sub-addressing separators (`+` for Google, `=`/`#` used by some mail systems): an address
/// carrying one names a mailbox of someone else's choosing on the enrolled domain.
const SUB_ADDRESS_SEPARATORS: [char; 3] = ['+', '=', '#'];

/// A normalised domain name: lower-case ASCII, at least two labels of `[a-z0-9-]` (1..=63
/// characters, no leading or trailing hyphen), at most 253 characters, no trailing dot, and
/// a top-level label that is not all digits (that would be an IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

fn label_ok(label: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Domain {
    pub fn parse(input: &str) -> Result<Self, Refusal> {
        if !input.is_ascii() || input.is_empty() || input.len() > MAX_DOMAIN_LEN {
            return Err(Refusal::InvalidDomain);
        }
        let lower = input.to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        let tld_ok = labels.last().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) || !tld_ok {
            return Err(Refusal::InvalidDomain);
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised email address: lower-case ASCII `local@domain`, one `@`, a dot-atom local part.
/// Lower-casing the local part matches the core's one canonical form per address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email {
    local: String,
    domain: Domain,
}

fn local_ok(local: &str) -> bool {
    (1..=MAX_LOCAL_LEN).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || ATEXT.contains(&b))
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, Refusal> {
        if !input.is_ascii() || input.len() > MAX_EMAIL_LEN {
            return Err(Refusal::InvalidEmail);
        }
        let mut parts = input.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::InvalidEmail);
        };
        if !local_ok(local) {
            return Err(Refusal::InvalidEmail);
        }
        let domain = Domain::parse(domain).map_err(|_| Refusal::InvalidEmail)?;
        Ok(Self { local: local.to_ascii_lowercase(), domain })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// True when the local part carries a sub-addressing separator (`+`, `=` or `#`).
    pub fn has_sub_addressing(&self) -> bool {
        self.local.contains(SUB_ADDRESS_SEPARATORS)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(d("Example.COM").as_str(), "example.com");
        assert_eq!(d("xn--bcher-kva.example").as_str(), "xn--bcher-kva.example");
        assert_eq!(d("a-b.c0.io").to_string(), "a-b.c0.io");
        let long_ok =
            format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(long_ok.len(), 253);
        assert!(Domain::parse(&long_ok).is_ok());
        for bad in [
            "",
            "com",
            "example.com.",
            ".example.com",
            "example..com",
            " example.com",
            "example.com ",
            "-example.com",
            "example-.com",
            "exa_mple.com",
            "exämple.com",
            "ехample.com", // Cyrillic 'е' and 'х'
            "example.com/",
            "user@example.com",
            "127.0.0.1",
            "example.123",
            &format!("{}.com", "a".repeat(64)),
            &format!("{long_ok}a"),
        ] {
            assert_eq!(Domain::parse(bad).unwrap_err().reason(), "invalid_domain", "{bad:?}");
        }
    }

    #[test]
    fn equality_is_exact() {
        let enrolled = d("acme.com");
        assert_eq!(d("ACME.com"), enrolled);
        for other in
            ["eu.acme.com", "acme.com.evil.io", "acme.co", "xn--acme-xxa.com", "acme-com.io"]
        {
            assert_ne!(d(other), enrolled, "{other}");
        }
    }

    #[test]
    fn emails_split_on_exactly_one_at() {
        let e = Email::parse("Ada.Lovelace@ACME.com").unwrap();
        assert_eq!(e.local(), "ada.lovelace");
        assert_eq!(e.domain(), &d("acme.com"));
        assert_eq!(e.to_string(), "ada.lovelace@acme.com");
        for bad in [
            "",
            "ada",
            "@acme.com",
            "ada@",
            "ada@@acme.com",
            "a@b@acme.com",
            "\"a@b\"@acme.com",
            "ada @acme.com",
            "ada@acme.com.",
            "ada@acme",
            ".ada@acme.com",
            "ada.@acme.com",
            "a..da@acme.com",
            "adä@acme.com",
            "ada@ácme.com",
            "Ada <ada@acme.com>",
            "ada@acme.com\r\n",
            &format!("{}@acme.com", "a".repeat(65)),
        ] {
            assert_eq!(Email::parse(bad).unwrap_err().reason(), "invalid_email", "{bad:?}");
        }
    }

    #[test]
    fn sub_addressing_is_detected() {
        for sub in ["ada+x@acme.com", "ada=x@acme.com", "ada#x@acme.com", "+@acme.com"] {
            assert!(Email::parse(sub).unwrap().has_sub_addressing(), "{sub}");
        }
        for plain in ["ada@acme.com", "ada.lovelace@acme.com", "ada-l_x@acme.com"] {
            assert!(!Email::parse(plain).unwrap().has_sub_addressing(), "{plain}");
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
    }

    fn domain() -> impl Strategy<Value = String> {
        (prop::collection::vec(label(), 1..4), "[a-z]{2,6}")
            .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
    }

    proptest! {
        #[test]
        fn case_variants_are_the_same_domain(name in domain(), mask in any::<u64>()) {
            let varied: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert_eq!(d(&varied), d(&name));
        }

        #[test]
        fn variants_are_never_the_enrolled_domain(name in domain(), extra in label()) {
            let enrolled = d(&name);
            let subdomain = format!("{extra}.{name}");
            let suffixed = format!("{name}.{extra}x");
            let punycode = format!("xn--{extra}.{name}");
            let relabelled = format!("xn--{name}");
            for variant in [subdomain, suffixed, punycode, relabelled] {
                if let Ok(v) = Domain::parse(&variant) {
                    prop_assert_ne!(v, enrolled.clone());
                }
            }
            let dotted = format!("{name}.");
            let spaced = format!(" {name}");
            prop_assert!(Domain::parse(&dotted).is_err());
            prop_assert!(Domain::parse(&spaced).is_err());
            if let Some((_, parent)) = name.split_once('.')
                && let Ok(p) = Domain::parse(parent)
            {
                prop_assert_ne!(p, enrolled);
            }
        }

        #[test]
        fn non_ascii_never_parses(name in domain(), at in any::<prop::sample::Index>(),
                                   c in prop::char::range('\u{80}', '\u{2FFF}')) {
            let mut chars: Vec<char> = name.chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            let spoof: String = chars.into_iter().collect();
            prop_assert!(Domain::parse(&spoof).is_err());
        }
    }
}
