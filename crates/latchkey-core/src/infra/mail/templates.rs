//! Subject, plain text and HTML of each mail, from the askama templates in `templates/email/`.
//! `.html` templates escape every value; `.txt` ones do not need to.

use askama::Template;
use url::Url;

use super::{
    EMAIL_VERIFICATION_VALIDITY, MailKind, PASSWORD_RESET_VALIDITY, PRODUCT, SIGN_UP_CODE_VALIDITY,
};
use crate::{Error, Result};

pub(super) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Template)]
#[template(path = "email/sign_up_code.txt")]
struct SignUpCodeText<'a> {
    product: &'a str,
    site: &'a str,
    code: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/sign_up_code.html")]
struct SignUpCodeHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    code: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/password_reset.txt")]
struct PasswordResetText<'a> {
    product: &'a str,
    site: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/password_reset.html")]
struct PasswordResetHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/email_verification.txt")]
struct EmailVerificationText<'a> {
    product: &'a str,
    site: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/email_verification.html")]
struct EmailVerificationHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    link: &'a str,
    valid_minutes: u64,
}

#[derive(Template)]
#[template(path = "email/invitation.txt")]
struct InvitationText<'a> {
    product: &'a str,
    site: &'a str,
    org_name: &'a str,
    link: &'a str,
    inviter: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "email/invitation.html")]
struct InvitationHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    org_name: &'a str,
    link: &'a str,
    inviter: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "email/domain_verification.txt")]
struct DomainVerificationText<'a> {
    product: &'a str,
    site: &'a str,
    domain: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "email/domain_verification.html")]
struct DomainVerificationHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    domain: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "email/join_request.txt")]
struct JoinRequestText<'a> {
    product: &'a str,
    site: &'a str,
    org_name: &'a str,
    requester: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/join_request.html")]
struct JoinRequestHtml<'a> {
    product: &'a str,
    site: &'a str,
    subject: &'a str,
    org_name: &'a str,
    requester: &'a str,
    link: &'a str,
}

/// Renders all three parts; checks codes and links first, since they end up in an href.
pub(super) fn render(kind: &MailKind, site: &str) -> Result<Rendered> {
    let product = PRODUCT;
    let (subject, text, html) = match kind {
        MailKind::SignUpCode { code } => {
            let code = check_code(code)?;
            let valid_minutes = SIGN_UP_CODE_VALIDITY.as_secs() / 60;
            let subject = format!("Your {product} sign-up code");
            let text = SignUpCodeText { product, site, code, valid_minutes }.render();
            let html =
                SignUpCodeHtml { product, site, subject: &subject, code, valid_minutes }.render();
            (subject, text, html)
        }
        MailKind::PasswordReset { link } => {
            let link = check_link(link)?;
            let valid_minutes = PASSWORD_RESET_VALIDITY.as_secs() / 60;
            let subject = format!("Reset your {product} password");
            let text = PasswordResetText { product, site, link, valid_minutes }.render();
            let html = PasswordResetHtml { product, site, subject: &subject, link, valid_minutes }
                .render();
            (subject, text, html)
        }
        MailKind::EmailVerification { link } => {
            let link = check_link(link)?;
            let valid_minutes = EMAIL_VERIFICATION_VALIDITY.as_secs() / 60;
            let subject = format!("Verify your email address for {product}");
            let text = EmailVerificationText { product, site, link, valid_minutes }.render();
            let html =
                EmailVerificationHtml { product, site, subject: &subject, link, valid_minutes }
                    .render();
            (subject, text, html)
        }
        MailKind::Invitation { org_name, link, inviter } => {
            let link = check_link(link)?;
            let inviter = inviter.as_deref().map(str::trim).filter(|s| !s.is_empty());
            let subject = match inviter {
                Some(who) => format!(
                    "{} invited you to join {} on {product}",
                    header_text(who),
                    header_text(org_name)
                ),
                None => format!("You are invited to join {} on {product}", header_text(org_name)),
            };
            let text = InvitationText { product, site, org_name, link, inviter }.render();
            let html = InvitationHtml { product, site, subject: &subject, org_name, link, inviter }
                .render();
            (subject, text, html)
        }
        MailKind::DomainVerificationCode { domain, code } => {
            let code = check_code(code)?;
            let subject = format!("Verify {} on {product}", header_text(domain));
            let text = DomainVerificationText { product, site, domain, code }.render();
            let html =
                DomainVerificationHtml { product, site, subject: &subject, domain, code }.render();
            (subject, text, html)
        }
        MailKind::JoinRequest { org_name, requester, link } => {
            let link = check_link(link)?;
            let subject = format!(
                "{} asks to join {} on {product}",
                header_text(requester),
                header_text(org_name)
            );
            let text = JoinRequestText { product, site, org_name, requester, link }.render();
            let html =
                JoinRequestHtml { product, site, subject: &subject, org_name, requester, link }
                    .render();
            (subject, text, html)
        }
    };
    let failed = |e: askama::Error| Error::Internal(format!("rendering {} mail: {e}", kind.name()));
    Ok(Rendered { subject, text: text.map_err(failed)?, html: html.map_err(failed)? })
}

/// Codes are short tokens the user types: no whitespace or markup to smuggle in.
fn check_code(code: &str) -> Result<&str> {
    let code = code.trim();
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid("code", "must be 1 to 64 letters or digits"));
    }
    Ok(code)
}

/// Links go into an href, so only absolute http(s) URLs are accepted (no `javascript:`).
fn check_link(link: &str) -> Result<&str> {
    let link = link.trim();
    match Url::parse(link) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(link),
        _ => Err(Error::invalid("link", "must be an absolute http(s) URL")),
    }
}

/// User-chosen names in a subject: one line, bounded length (lettre encodes the rest).
fn header_text(value: &str) -> String {
    let one_line: String =
        value.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match one_line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://id.example.com";

    #[test]
    fn every_kind_carries_the_product_and_its_code_or_link() {
        let link = "https://id.example.com/x?token=abc&next=1";
        for (kind, secret) in [
            (MailKind::SignUpCode { code: "123456".into() }, "123456"),
            (MailKind::PasswordReset { link: link.into() }, link),
            (MailKind::EmailVerification { link: link.into() }, link),
            (
                MailKind::Invitation {
                    org_name: "Acme".into(),
                    link: link.into(),
                    inviter: Some("Ada".into()),
                },
                link,
            ),
            (
                MailKind::DomainVerificationCode {
                    domain: "acme.example".into(),
                    code: "654321".into(),
                },
                "654321",
            ),
            (
                MailKind::JoinRequest {
                    org_name: "Acme".into(),
                    requester: "bob@acme.example".into(),
                    link: link.into(),
                },
                link,
            ),
        ] {
            let r = render(&kind, SITE).unwrap();
            let name = kind.name();
            assert!(r.subject.contains("Latchkey"), "{name}: {}", r.subject);
            assert!(!r.subject.contains(secret), "{name}: secret in subject");
            assert!(r.text.contains("Latchkey") && r.html.contains("Latchkey"), "{name}");
            assert!(r.text.contains(secret), "{name}: {}", r.text);
            assert!(r.html.contains(&secret.replace('&', "&#38;")), "{name}: {}", r.html);
            assert!(r.text.contains(SITE) && r.html.contains(SITE), "{name}");
        }
    }

    #[test]
    fn html_escapes_names_and_subjects_stay_on_one_line() {
        let kind = MailKind::Invitation {
            org_name: "Acme <script>alert(1)</script>\r\nBcc: x@evil.example".into(),
            link: "https://id.example.com/i/abc".into(),
            inviter: None,
        };
        let r = render(&kind, SITE).unwrap();
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&#60;script&#62;") || r.html.contains("&lt;script&gt;"));
        assert!(r.text.contains("Acme <script>"), "plain text is not escaped");
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'), "{}", r.subject);
        assert!(r.subject.starts_with("You are invited to join Acme"), "{}", r.subject);
    }

    #[test]
    fn bad_links_and_codes_are_refused() {
        for link in ["javascript:alert(1)", "/relative", "mailto:a@b.c", ""] {
            let err = render(&MailKind::PasswordReset { link: link.into() }, SITE).err();
            assert!(matches!(err, Some(Error::Invalid { field: "link", .. })), "{link}");
        }
        for code in ["", "12 34", "<b>1</b>"] {
            let err = render(&MailKind::SignUpCode { code: code.into() }, SITE).err();
            assert!(matches!(err, Some(Error::Invalid { field: "code", .. })), "{code:?}");
        }
    }
}
