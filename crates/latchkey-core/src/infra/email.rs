//! The one rule for email addresses. Every address Latchkey stores or mails — accounts made by
//! the CLI or by sign-up, invitations, domain-verification recipients, upstream identities —
//! passes through [`normalize_email`], so an address that can be stored can always be mailed,
//! and an answer never depends on an address the mailer would refuse.

use latchkey_easie::domain::Email;

use crate::infra::error::{Error, Result};

/// Lower-cases and checks an address; the store keeps one canonical form per address.
/// Internationalised domains must be given in their ASCII (punycode) form.
pub fn normalize_email(email: &str) -> Result<String> {
    let invalid = || Error::invalid("email", "is not a valid email address");
    // The grammar is the one the EASIE tenant checks compare addresses by (dot-atom local
    // part, ASCII domain of at least two labels, SMTP path lengths), so an address the core
    // stores is one those checks can read.
    let parsed = Email::parse(&email.trim().to_ascii_lowercase()).map_err(|_| invalid())?;
    // The mailer must take every address the rule lets in.
    lettre::Address::new(parsed.local(), parsed.domain().as_str()).map_err(|_| invalid())?;
    Ok(parsed.to_string())
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
