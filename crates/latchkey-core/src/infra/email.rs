//! The one rule for email addresses. Every address Latchkey stores or mails — accounts made by
//! the CLI or by sign-up, invitations, domain-verification recipients, upstream identities —
//! passes through [`normalize_email`], so an address that can be stored can always be mailed,
//! and an answer never depends on an address the mailer would refuse.

use crate::infra::error::{Error, Result};

/// Longest address that fits an SMTP path (RFC 5321 §4.5.3.1.3).
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// Characters of an RFC 5322 dot-atom besides letters and digits. Quoted local parts, comments
/// and display names are refused: nobody needs them for sign-in and they confuse parsers.
const ATEXT: &[u8] = b"!#$%&'*+-/=?^_`{|}~";

fn local_ok(local: &str) -> bool {
    (1..=MAX_LOCAL_LEN).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || ATEXT.contains(&b))
}

fn domain_ok(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=MAX_LABEL_LEN).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // A top-level domain is never all digits (that would be an IP address).
        && labels.last().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Lower-cases and checks an address; the store keeps one canonical form per address.
/// Internationalised domains must be given in their ASCII (punycode) form.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_ascii_lowercase();
    let invalid = || Error::invalid("email", "is not a valid email address");
    if email.len() > MAX_LEN || !email.is_ascii() {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if !local_ok(local) || !domain_ok(domain) {
        return Err(invalid());
    }
    // The mailer must take every address the rule lets in.
    lettre::Address::new(local, domain).map_err(|_| invalid())?;
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalize_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for ok in
            ["a.b+tag@mail.example.co.uk", "o'brien@example.ie", "x_y-z@xn--bcher-kva.example"]
        {
            assert!(normalize_email(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn what_the_mailer_would_refuse_is_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "a b@example.com",
            "ada@exa mple.com",
            "a@b@c.com",
            "x\"<y>@example.test",
            "\"quoted\"@example.com",
            "Ada <ada@example.com>",
            "ada@example.com>",
            ".ada@example.com",
            "ada.@example.com",
            "a..b@example.com",
            "ada@-example.com",
            "ada@example..com",
            "ada@127.0.0.1",
            "ada@[127.0.0.1]",
            "ädä@example.com",
            "ada@exämple.com",
            "ada@example.com\r\nBcc: x@y.z",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(250));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn every_accepted_address_parses_as_a_mailbox() {
        for ok in ["ada@example.com", "o'brien@example.ie", "a+b=c@example.org", "{x}@example.net"]
        {
            let n = normalize_email(ok).unwrap();
            assert!(n.parse::<lettre::message::Mailbox>().is_ok(), "{n}");
        }
    }
}
