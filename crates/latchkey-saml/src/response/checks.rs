//! Every condition of the Web Browser SSO profile, checked on the verified elements with our
//! clock (`expect.now`), exact string comparisons and no defaults that accept.

use std::collections::BTreeMap;

use super::ResponseExpectations;
use super::dom::{Element, NS_ASSERTION, NS_PROTOCOL};
use crate::model::{NameId, VerifiedAssertion};
use crate::{Result, SamlError};

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const ENTITY_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
/// How old an IssueInstant may be (plus skew): a response is posted as soon as it is issued.
const MAX_ISSUE_AGE_SECS: i64 = 300;
const MAX_SKEW_SECS: i64 = 300;
const TIME_ATTRIBUTES: [&str; 5] =
    ["IssueInstant", "NotBefore", "NotOnOrAfter", "AuthnInstant", "SessionNotOnOrAfter"];

pub(crate) fn parse_instant(value: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp())
        .map_err(|_| SamlError::Malformed(format!("bad xs:dateTime {value:?}")))
}

/// Every time attribute must be an RFC 3339 instant (years 0000–9999), which also keeps
/// samael's own date arithmetic far from chrono's overflow panics.
pub(crate) fn check_time_syntax(root: &Element) -> Result<()> {
    for element in root.descendants() {
        for attr in element.attrs.iter().filter(|a| a.ns.is_empty()) {
            if TIME_ATTRIBUTES.contains(&attr.name.as_str()) {
                parse_instant(&attr.value)?;
            }
        }
    }
    Ok(())
}

/// Status must be Success; the message names the second-level code too.
pub(crate) fn check_status(response: &Element) -> Result<()> {
    let code = response
        .child(NS_PROTOCOL, "Status")
        .and_then(|s| s.child(NS_PROTOCOL, "StatusCode"))
        .ok_or_else(|| SamlError::Malformed("the Response has no StatusCode".into()))?;
    let value = code.attr("Value").unwrap_or_default();
    if value == STATUS_SUCCESS {
        return Ok(());
    }
    let mut text = value.to_owned();
    if let Some(sub) = code.child(NS_PROTOCOL, "StatusCode").and_then(|s| s.attr("Value")) {
        text = format!("{text} / {sub}");
    }
    Err(SamlError::Status(text))
}

struct Clock {
    now: i64,
    skew: i64,
}

impl Clock {
    fn not_before(&self, at: Option<&str>) -> Result<()> {
        match at {
            Some(at) if self.now.saturating_add(self.skew) < parse_instant(at)? => {
                Err(SamlError::NotYetValid)
            }
            _ => Ok(()),
        }
    }

    fn not_on_or_after(&self, at: &str) -> Result<i64> {
        let at = parse_instant(at)?;
        if self.now.saturating_sub(self.skew) >= at {
            return Err(SamlError::Expired);
        }
        Ok(at)
    }

    fn issue_instant(&self, element: &Element) -> Result<()> {
        let at = element.attr("IssueInstant").ok_or_else(|| {
            SamlError::Malformed(format!("{} without IssueInstant", element.name))
        })?;
        let at = parse_instant(at)?;
        if at > self.now.saturating_add(self.skew) {
            return Err(SamlError::NotYetValid);
        }
        if at < self.now.saturating_sub(MAX_ISSUE_AGE_SECS + self.skew) {
            return Err(SamlError::Expired);
        }
        Ok(())
    }
}

fn check_issuer(issuer: &Element, expected: &str) -> Result<()> {
    let value = issuer.text();
    if value != expected || issuer.attr("Format").is_some_and(|f| f != ENTITY_FORMAT) {
        return Err(SamlError::Issuer(value));
    }
    Ok(())
}

fn check_response(
    response: &Element,
    expect: &ResponseExpectations<'_>,
    clock: &Clock,
) -> Result<()> {
    if let Some(issuer) = response.child(NS_ASSERTION, "Issuer") {
        check_issuer(issuer, expect.idp_entity_id)?;
    }
    match response.attr("Destination") {
        Some(destination) if destination == expect.acs_url => {}
        other => return Err(SamlError::Destination(other.unwrap_or_default().to_owned())),
    }
    check_status(response)?;
    clock.issue_instant(response)
}

/// Conditions: validity window and AudienceRestriction (every one must name us). Returns the
/// NotOnOrAfter, if any.
fn check_conditions(
    assertion: &Element,
    expect: &ResponseExpectations<'_>,
    clock: &Clock,
) -> Result<Option<i64>> {
    let mut all = assertion.children_named(NS_ASSERTION, "Conditions");
    let conditions = all.next().ok_or(SamlError::NoConditions)?;
    if all.next().is_some() {
        return Err(SamlError::Malformed("more than one Conditions".into()));
    }
    clock.not_before(conditions.attr("NotBefore"))?;
    let until = conditions.attr("NotOnOrAfter").map(|at| clock.not_on_or_after(at)).transpose()?;
    let mut restrictions =
        conditions.children_named(NS_ASSERTION, "AudienceRestriction").peekable();
    if restrictions.peek().is_none() {
        return Err(SamlError::NoAudienceRestriction);
    }
    for restriction in restrictions {
        if !restriction
            .children_named(NS_ASSERTION, "Audience")
            .any(|audience| audience.text() == expect.sp_entity_id)
        {
            return Err(SamlError::Audience);
        }
    }
    Ok(until)
}

/// InResponseTo of the Response: present and equal when we sent a request, absent otherwise.
fn check_response_in_response_to(
    response: &Element,
    expect: &ResponseExpectations<'_>,
) -> Result<()> {
    let carried = response.attr("InResponseTo");
    match (expect.in_response_to, carried) {
        (Some(_), None) => Err(SamlError::InResponseToMissing),
        (Some(expected), Some(carried)) if expected != carried => {
            Err(SamlError::InResponseToMismatch)
        }
        (Some(_), Some(_)) => Ok(()),
        (None, _) if !expect.allow_unsolicited => Err(SamlError::Unsolicited),
        (None, Some(_)) => Err(SamlError::UnsolicitedWithInResponseTo),
        (None, None) => Ok(()),
    }
}

/// One bearer SubjectConfirmation: returns its NotOnOrAfter when it holds.
fn check_confirmation(
    confirmation: &Element,
    expect: &ResponseExpectations<'_>,
    clock: &Clock,
    response_signed: bool,
) -> Result<i64> {
    let data = confirmation
        .child(NS_ASSERTION, "SubjectConfirmationData")
        .ok_or(SamlError::NoBearerConfirmation)?;
    let until = data.attr("NotOnOrAfter").ok_or(SamlError::NoBearerConfirmation)?;
    let until = clock.not_on_or_after(until)?;
    clock.not_before(data.attr("NotBefore"))?;
    match data.attr("Recipient") {
        Some(recipient) if recipient == expect.acs_url => {}
        other => return Err(SamlError::Recipient(other.unwrap_or_default().to_owned())),
    }
    match (expect.in_response_to, data.attr("InResponseTo")) {
        (Some(expected), Some(carried)) if expected != carried => {
            Err(SamlError::InResponseToMismatch)
        }
        // Without a Response signature the Response's InResponseTo is not covered by anything:
        // then the signed assertion must bind itself to our request.
        (Some(_), None) if !response_signed => Err(SamlError::InResponseToMissing),
        (None, Some(_)) => Err(SamlError::UnsolicitedWithInResponseTo),
        _ => Ok(until),
    }
}

fn check_subject(
    assertion: &Element,
    expect: &ResponseExpectations<'_>,
    clock: &Clock,
    response_signed: bool,
) -> Result<(Option<NameId>, i64)> {
    let subject = assertion
        .child(NS_ASSERTION, "Subject")
        .ok_or_else(|| SamlError::NoSubject("the assertion has no Subject".into()))?;
    let mut first_error = None;
    let mut until = None;
    for confirmation in subject.children_named(NS_ASSERTION, "SubjectConfirmation") {
        if confirmation.attr("Method") != Some(BEARER) {
            continue;
        }
        match check_confirmation(confirmation, expect, clock, response_signed) {
            Ok(at) => {
                until = Some(at);
                break;
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let until = until.ok_or_else(|| first_error.unwrap_or(SamlError::NoBearerConfirmation))?;
    Ok((name_id(subject)?, until))
}

fn name_id(subject: &Element) -> Result<Option<NameId>> {
    if subject.child(NS_ASSERTION, "EncryptedID").is_some() {
        return Err(SamlError::NoSubject("EncryptedID is not supported".into()));
    }
    let mut all = subject.children_named(NS_ASSERTION, "NameID");
    let Some(element) = all.next() else { return Ok(None) };
    if all.next().is_some() || element.elements().next().is_some() {
        return Err(SamlError::Malformed("ambiguous NameID".into()));
    }
    let value = element.text().trim().to_owned();
    if value.is_empty() {
        return Err(SamlError::NoSubject("empty NameID".into()));
    }
    Ok(Some(NameId { value, format: element.attr("Format").map(str::to_owned) }))
}

fn attributes(assertion: &Element) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for statement in assertion.children_named(NS_ASSERTION, "AttributeStatement") {
        for attribute in statement.children_named(NS_ASSERTION, "Attribute") {
            let Some(name) = attribute.attr("Name") else { continue };
            let values = attribute
                .children_named(NS_ASSERTION, "AttributeValue")
                .map(|v| v.text().trim().to_owned());
            out.entry(name.to_owned()).or_default().extend(values);
        }
    }
    out
}

/// All checks on the verified Response and assertion; builds the result.
pub(crate) fn evaluate(
    response: &Element,
    assertion: &Element,
    response_signed: bool,
    encrypted: bool,
    expect: &ResponseExpectations<'_>,
) -> Result<VerifiedAssertion> {
    // The caller clamps the skew; clamping again keeps a bad setting from opening the window.
    let clock = Clock { now: expect.now, skew: expect.skew_secs.clamp(0, MAX_SKEW_SECS) };
    check_response(response, expect, &clock)?;
    let issuer =
        assertion.child(NS_ASSERTION, "Issuer").ok_or_else(|| SamlError::Issuer(String::new()))?;
    check_issuer(issuer, expect.idp_entity_id)?;
    clock.issue_instant(assertion)?;
    let conditions_until = check_conditions(assertion, expect, &clock)?;
    check_response_in_response_to(response, expect)?;
    let (name_id, confirmation_until) = check_subject(assertion, expect, &clock, response_signed)?;
    let authn = assertion.child(NS_ASSERTION, "AuthnStatement");
    let authn_instant =
        authn.and_then(|a| a.attr("AuthnInstant")).map(parse_instant).transpose()?;
    let latest = conditions_until.map_or(confirmation_until, |c| c.max(confirmation_until));
    Ok(VerifiedAssertion {
        response_id: response.attr("ID").unwrap_or_default().to_owned(),
        assertion_id: assertion.attr("ID").unwrap_or_default().to_owned(),
        issuer: expect.idp_entity_id.to_owned(),
        name_id,
        session_index: authn.and_then(|a| a.attr("SessionIndex")).map(str::to_owned),
        in_response_to: expect.in_response_to.map(str::to_owned),
        expires_at: latest.saturating_add(clock.skew),
        authn_instant,
        authn_context_class: authn
            .and_then(|a| a.child(NS_ASSERTION, "AuthnContext"))
            .and_then(|c| c.child(NS_ASSERTION, "AuthnContextClassRef"))
            .map(|r| r.text().trim().to_owned()),
        attributes: attributes(assertion),
        encrypted,
    })
}
