//! Checks on raw XML before any parser sees it. A DOCTYPE has no place in a SAML protocol
//! message and is how XXE and entity-expansion ("billion laughs") attacks start, so any
//! message carrying one is refused outright.

use crate::{Result, SamlError};

/// Refuses XML containing a DOCTYPE declaration (or an ENTITY declaration anywhere).
pub fn reject_doctype(xml: &str) -> Result<()> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(SamlError::Doctype);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctype_and_entities_are_refused() {
        assert_eq!(reject_doctype("<a/>"), Ok(()));
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><a>&lol;</a>"#;
        assert_eq!(reject_doctype(laughs), Err(SamlError::Doctype));
        assert_eq!(reject_doctype("<!doctype a><a/>"), Err(SamlError::Doctype));
    }
}
