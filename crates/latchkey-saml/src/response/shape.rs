//! The only message shapes accepted, checked before any signature is verified. XML Signature
//! Wrapping works by giving the verifier and the reader different elements; here there is
//! nowhere to hide one: one root Response, exactly one (possibly encrypted) assertion as its
//! direct child, signatures only as the enveloped signature of the Response or of the assertion
//! (one Reference, pointing at its parent's ID), unique IDs, no second Response or Assertion
//! anywhere. With that, the elements read by [`super::checks`] are the elements xmlsec verified.

use super::dom::{Element, NS_ASSERTION, NS_DSIG, NS_PROTOCOL};
use crate::algorithms::AlgorithmPolicy;
use crate::{Result, SamlError};

const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const C14N_TRANSFORMS: [&str; 5] = [
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
];

pub(crate) enum Body<'d> {
    Plain { assertion: &'d Element, signature: Option<&'d Element> },
    Encrypted(&'d Element),
}

pub(crate) struct Shape<'d> {
    pub response: &'d Element,
    pub response_signature: Option<&'d Element>,
    pub body: Body<'d>,
}

fn wrapping(why: impl Into<String>) -> SamlError {
    SamlError::Wrapping(why.into())
}

/// The root must be a `samlp:Response`.
pub(crate) fn expect_response(root: &Element) -> Result<()> {
    if root.is(NS_PROTOCOL, "Response") {
        Ok(())
    } else {
        Err(SamlError::Malformed(format!("root element is {:?}, not samlp:Response", root.name)))
    }
}

pub(crate) fn analyse(root: &Element, policy: AlgorithmPolicy) -> Result<Shape<'_>> {
    expect_response(root)?;
    scan_document(root)?;
    let (response_signature, body) = response_children(root)?;
    if let Some(signature) = response_signature {
        check_signature(signature, root, policy)?;
    }
    let body = match body {
        Some(body) if body.is(NS_ASSERTION, "Assertion") => {
            let signature = assertion_signature(body)?;
            if let Some(signature) = signature {
                check_signature(signature, body, policy)?;
            }
            Body::Plain { assertion: body, signature }
        }
        Some(body) => Body::Encrypted(body),
        None => return Err(SamlError::NoSubject("the response carries no assertion".into())),
    };
    Ok(Shape { response: root, response_signature, body })
}

/// Document-wide: unique IDs, no nested Response, at most one assertion, signatures only as a
/// direct child of the Response or of an assertion.
fn scan_document(root: &Element) -> Result<()> {
    let mut ids = std::collections::HashSet::new();
    let mut assertions = 0usize;
    let all = root.descendants();
    for element in &all {
        for attr in element.attrs.iter().filter(|a| a.name == "ID") {
            if !ids.insert(attr.value.as_str()) {
                return Err(wrapping(format!("duplicate ID {:?}", attr.value)));
            }
        }
        if element.name == "Response" && !std::ptr::eq(*element, root) {
            return Err(wrapping("a second Response inside the message"));
        }
        if element.name == "Assertion" || element.name == "EncryptedAssertion" {
            assertions += 1;
        }
        if element.name == "Object" && element.ns == NS_DSIG {
            return Err(wrapping("ds:Object in the message"));
        }
    }
    if assertions > 1 {
        return Err(wrapping(format!("{assertions} assertions in the message")));
    }
    for element in &all {
        for child in element.elements() {
            let is_signature = child.name == "Signature" && child.ns == NS_DSIG;
            let allowed_parent =
                std::ptr::eq(*element, root) || element.is(NS_ASSERTION, "Assertion");
            if is_signature && !allowed_parent {
                return Err(wrapping(format!("signature inside {:?}", element.name)));
            }
        }
    }
    Ok(())
}

/// Response children in schema order: Issuer? Signature? Extensions? Status, then the assertion.
fn response_children(root: &Element) -> Result<(Option<&Element>, Option<&Element>)> {
    let mut signature = None;
    let mut body = None;
    let mut stage = 0u8;
    for child in root.elements() {
        let next = if child.is(NS_ASSERTION, "Issuer") {
            1
        } else if child.is(NS_DSIG, "Signature") {
            signature = Some(child);
            2
        } else if child.is(NS_PROTOCOL, "Extensions") {
            3
        } else if child.is(NS_PROTOCOL, "Status") {
            4
        } else if child.is(NS_ASSERTION, "Assertion")
            || child.is(NS_ASSERTION, "EncryptedAssertion")
        {
            body = Some(child);
            5
        } else {
            return Err(wrapping(format!("unexpected element {:?} in the Response", child.name)));
        };
        if next <= stage {
            return Err(wrapping(format!("element {:?} out of place in the Response", child.name)));
        }
        stage = next;
    }
    if stage < 4 {
        return Err(SamlError::Malformed("the Response has no Status".into()));
    }
    Ok((signature, body))
}

/// An assertion's signature must directly follow its Issuer.
fn assertion_signature(assertion: &Element) -> Result<Option<&Element>> {
    let mut signature = None;
    for (index, child) in assertion.elements().enumerate() {
        if child.is(NS_DSIG, "Signature") {
            if index != 1 || signature.is_some() {
                return Err(wrapping("assertion signature out of place"));
            }
            signature = Some(child);
        }
    }
    match assertion.elements().next() {
        Some(first) if first.is(NS_ASSERTION, "Issuer") => Ok(signature),
        _ => Err(SamlError::Malformed("the assertion does not start with its Issuer".into())),
    }
}

/// One Reference to the parent's own ID, only enveloped and c14n transforms, allowed algorithms.
fn check_signature(signature: &Element, parent: &Element, policy: AlgorithmPolicy) -> Result<()> {
    let id = parent
        .attr("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| wrapping(format!("signed {:?} without an ID", parent.name)))?;
    let mut signed_infos = signature.children_named(NS_DSIG, "SignedInfo");
    let (Some(signed_info), None) = (signed_infos.next(), signed_infos.next()) else {
        return Err(SamlError::BadSignature("expected exactly one SignedInfo".into()));
    };
    let method = signed_info
        .child(NS_DSIG, "SignatureMethod")
        .and_then(|m| m.attr("Algorithm"))
        .unwrap_or_default();
    if !policy.signature_allowed(method) {
        return Err(SamlError::AlgorithmNotAllowed(method.to_owned()));
    }
    let mut references = signed_info.children_named(NS_DSIG, "Reference");
    let (Some(reference), None) = (references.next(), references.next()) else {
        return Err(wrapping("a signature must carry exactly one Reference"));
    };
    if reference.attr("URI") != Some(format!("#{id}").as_str()) {
        return Err(wrapping("the signature does not reference its parent"));
    }
    let c14n = signed_info
        .child(NS_DSIG, "CanonicalizationMethod")
        .and_then(|m| m.attr("Algorithm"))
        .unwrap_or_default();
    if !C14N_TRANSFORMS.contains(&c14n) {
        return Err(SamlError::AlgorithmNotAllowed(c14n.to_owned()));
    }
    for transform in reference
        .child(NS_DSIG, "Transforms")
        .into_iter()
        .flat_map(|t| t.children_named(NS_DSIG, "Transform"))
    {
        let algorithm = transform.attr("Algorithm").unwrap_or_default();
        if algorithm != ENVELOPED && !C14N_TRANSFORMS.contains(&algorithm) {
            return Err(wrapping(format!("transform not allowed: {algorithm}")));
        }
    }
    let digest = reference
        .child(NS_DSIG, "DigestMethod")
        .and_then(|m| m.attr("Algorithm"))
        .unwrap_or_default();
    if !policy.digest_allowed(digest) {
        return Err(SamlError::AlgorithmNotAllowed(digest.to_owned()));
    }
    Ok(())
}
