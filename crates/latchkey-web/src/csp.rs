//! Every Content-Security-Policy Latchkey sends, built in one place. No response runs script
//! (except the SAML POST-binding page's one form submission, allowed by its hash), loads
//! anything from elsewhere, may be framed or may rebase its URLs; policies differ only in
//! whether the stylesheet and images load, and where forms may go (browsers apply
//! `form-action` to the redirects that follow a submission too).

use std::sync::LazyLock;

/// What a response may load from our own origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Assets {
    None,
    /// The stylesheet.
    Styles,
    /// The stylesheet and images (inline `data:` ones too).
    StylesAndImages,
    /// The stylesheet and the one inline script with this SHA-256 (base64).
    StylesAndScript(String),
}

/// The one policy builder: `default-src 'none'`, the assets, `form-action`, and never framed or
/// rebased.
fn policy(assets: Assets, form_action: &str) -> String {
    let assets = match assets {
        Assets::None => String::new(),
        Assets::Styles => "style-src 'self'; ".into(),
        Assets::StylesAndImages => "style-src 'self'; img-src 'self' data:; ".into(),
        Assets::StylesAndScript(hash) => format!("script-src 'sha256-{hash}'; style-src 'self'; "),
    };
    format!(
        "default-src 'none'; {assets}form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Every response's default (API answers, redirects): nothing loads, no forms.
pub fn api() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| policy(Assets::None, "'none'"));
    &POLICY
}

/// Text-only pages (errors, messages): the stylesheet and the site's icon; forms only to us.
pub fn message_page() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| policy(Assets::StylesAndImages, "'self'"));
    &POLICY
}

/// A page that navigates on its own (meta refresh and a link): the stylesheet, no forms.
pub fn navigate_page() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| policy(Assets::Styles, "'none'"));
    &POLICY
}

/// Pages with forms: the stylesheet and images; forms to us and to `form_targets` (source
/// expressions: origins, or `scheme:` for private-use schemes; empty ones are skipped).
pub fn page<'a>(form_targets: impl IntoIterator<Item = &'a str>) -> String {
    let mut form_action = String::from("'self'");
    for target in form_targets.into_iter().filter(|t| !t.is_empty()) {
        form_action.push(' ');
        form_action.push_str(target);
    }
    policy(Assets::StylesAndImages, &form_action)
}

/// The SAML HTTP-POST binding's page: the one inline script Latchkey runs (submitting the form,
/// allowed by its hash, `script`), the stylesheet, and the form only to `target`'s origin.
pub fn post_binding_page(script: &str, target: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    let form_action = format!("'self' {}", source_of(target));
    policy(Assets::StylesAndScript(hash), form_action.trim_end())
}

/// The source expression that lets a form end at `uri`: its origin, or `scheme:` for a
/// private-use scheme (RFC 8252 native apps); empty when it is not a URL.
pub fn source_of(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_binding_page_runs_only_its_own_script() {
        let p = post_binding_page("document.forms[0].submit();", "https://idp.example/sso?x=1");
        // sha256("document.forms[0].submit();"), base64.
        assert!(p.contains("script-src 'sha256-"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
        assert!(p.contains("form-action 'self' https://idp.example;"), "{p}");
        assert!(p.ends_with("; frame-ancestors 'none'; base-uri 'none'"), "{p}");
        let other = post_binding_page("alert(1)", "https://idp.example/sso");
        assert_ne!(p, other, "the hash is the script's");
    }

    #[test]
    fn every_policy_locks_down_scripts_frames_and_base() {
        let page = page(["https://rp.example", "", "com.example.app:"]);
        for p in [api(), message_page(), navigate_page(), page.as_str()] {
            assert!(p.starts_with("default-src 'none'; "), "{p}");
            assert!(p.ends_with("; frame-ancestors 'none'; base-uri 'none'"), "{p}");
            assert!(!p.contains("script") && !p.contains("unsafe"), "{p}");
        }
        assert_eq!(
            api(),
            "default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert!(
            message_page().contains("style-src 'self'; img-src 'self' data:; form-action 'self';")
        );
        assert!(navigate_page().contains("style-src 'self'; form-action 'none';"));
        assert_eq!(
            page,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https://rp.example com.example.app:; frame-ancestors 'none'; base-uri 'none'"
        );
    }

    #[test]
    fn form_targets_are_origins_or_schemes() {
        assert_eq!(source_of("http://127.0.0.1:9/cb?x=1"), "http://127.0.0.1:9");
        assert_eq!(source_of("https://rp.example/a/b"), "https://rp.example");
        assert_eq!(source_of("com.example.app:/oauth"), "com.example.app:");
        assert_eq!(source_of("not a url"), "");
        // A target cannot smuggle a directive: origins are serialised, not copied.
        assert_eq!(source_of("https://rp.example/;script-src *"), "https://rp.example");
    }
}
