//! A small, namespace-resolved element tree over the raw message, with byte spans.
//!
//! The checks need more than samael's serde view gives: the full text of an element (text
//! pieces on both sides of a comment joined, so `a<!---->b` reads `ab`, exactly what exclusive
//! canonicalisation signs), every element whatever its name (to see wrapping shapes), and where
//! each element sits in the source (to splice a decrypted assertion in). Comments and processing
//! instructions are dropped; DOCTYPE and undeclared entities are refused.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

use crate::{Result, SamlError};

pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub(crate) const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

/// Deeper nesting than any SAML message needs; bounds the recursion of every walk below.
const MAX_DEPTH: usize = 48;

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    /// The namespace URI ("" when none).
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    /// Namespace declarations on this element: (prefix, URI), "" for the default namespace
    /// (the test IdP needs them to sign an element out of its context).
    #[cfg_attr(not(any(test, feature = "testkit")), allow(dead_code))]
    pub decls: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Byte range of the whole element (start tag to end tag) in the parsed text.
    pub start: usize,
    pub end: usize,
    /// Byte offset just after the start tag (equal to `end` for an empty element).
    pub content_start: usize,
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// An unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.ns.is_empty() && a.name == name).map(|a| a.value.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    pub fn children_named<'s, 'q>(
        &'s self,
        ns: &'q str,
        name: &'q str,
    ) -> impl Iterator<Item = &'s Element> + use<'s, 'q> {
        self.elements().filter(move |element| element.is(ns, name))
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|element| element.is(ns, name))
    }

    /// The element's own text: every direct text piece joined (comments never cut it).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|node| match node {
                Node::Text(text) => Some(text.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Every element of the subtree, this one first (document order).
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(element) = stack.pop() {
            out.push(element);
            let children: Vec<&Element> = element.elements().collect();
            stack.extend(children.into_iter().rev());
        }
        out
    }
}

fn malformed(error: impl std::fmt::Display) -> SamlError {
    SamlError::Malformed(error.to_string())
}

fn namespace_of(resolved: &ResolveResult<'_>) -> Result<String> {
    match resolved {
        ResolveResult::Bound(ns) => Ok(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(SamlError::Malformed(format!(
            "unbound namespace prefix {:?}",
            String::from_utf8_lossy(prefix)
        ))),
    }
}

fn build_element(
    reader: &NsReader<&[u8]>,
    ns: String,
    start: &BytesStart<'_>,
    position: usize,
) -> Result<Element> {
    let mut attrs = Vec::new();
    let mut decls = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(malformed)?;
        let key = attribute.key.as_ref();
        let value =
            attribute.normalized_value(XmlVersion::Implicit1_0).map_err(malformed)?.into_owned();
        if key == b"xmlns" {
            decls.push((String::new(), value));
            continue;
        }
        if let Some(prefix) = key.strip_prefix(b"xmlns:") {
            decls.push((String::from_utf8_lossy(prefix).into_owned(), value));
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(attribute.key);
        attrs.push(Attr {
            ns: namespace_of(&resolved)?,
            name: String::from_utf8_lossy(local.as_ref()).into_owned(),
            value,
        });
    }
    Ok(Element {
        ns,
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        attrs,
        decls,
        children: Vec::new(),
        start: position,
        end: position,
        content_start: position,
    })
}

struct Builder {
    stack: Vec<Element>,
    root: Option<Element>,
    /// The last event was a comment right after text in the same element.
    comment_after_text: bool,
}

impl Builder {
    fn open(&mut self, element: Element) -> Result<()> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err(SamlError::Malformed("more than one root element".into()));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(SamlError::Malformed("elements nested too deeply".into()));
        }
        self.stack.push(element);
        Ok(())
    }

    fn close(&mut self, end: usize) -> Result<()> {
        let mut element =
            self.stack.pop().ok_or_else(|| SamlError::Malformed("unbalanced end tag".into()))?;
        element.end = end;
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(element)),
            None => self.root = Some(element),
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<()> {
        let Some(parent) = self.stack.last_mut() else {
            if text.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() {
                return Ok(());
            }
            return Err(SamlError::Malformed("text outside the root element".into()));
        };
        if let Some(Node::Text(previous)) = parent.children.last_mut() {
            // `victim@corp.example<!---->.evil.example`: the signature covers the joined text,
            // samael's reducer cannot map it back and some readers stop at the comment. No IdP
            // writes comments inside values, so refuse rather than guess.
            let blank = |t: &str| t.chars().all(|c| c.is_ascii_whitespace());
            if std::mem::take(&mut self.comment_after_text) && !(blank(previous) && blank(text)) {
                return Err(SamlError::Malformed("a comment splits a text value".into()));
            }
            previous.push_str(text);
        } else {
            parent.children.push(Node::Text(text.to_owned()));
        }
        Ok(())
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

/// XML 1.0 in UTF-8 only: libxml2 (which xmlsec verifies with) honours a declared encoding, so
/// any other declaration would make it read different characters than we do.
fn check_declaration(decl: &quick_xml::events::BytesDecl<'_>) -> Result<()> {
    if decl.version().map_err(malformed)?.as_ref() != b"1.0" {
        return Err(SamlError::Malformed("only XML 1.0 is accepted".into()));
    }
    if let Some(encoding) = decl.encoding() {
        let encoding = encoding.map_err(malformed)?;
        if !encoding.eq_ignore_ascii_case(b"utf-8") {
            return Err(SamlError::Malformed("only UTF-8 is accepted".into()));
        }
    }
    Ok(())
}

/// Parses a whole document into its root element.
pub(crate) fn parse(xml: &str) -> Result<Element> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().check_comments = true;
    let mut builder = Builder { stack: Vec::new(), root: None, comment_after_text: false };
    loop {
        let position = usize::try_from(reader.buffer_position()).map_err(malformed)?;
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        let ns = match &event {
            Event::Start(_) | Event::Empty(_) => namespace_of(&resolved)?,
            _ => String::new(),
        };
        let after = usize::try_from(reader.buffer_position()).map_err(malformed)?;
        match event {
            Event::Start(start) => {
                let mut element = build_element(&reader, ns, &start, position)?;
                element.content_start = after;
                builder.open(element)?;
            }
            Event::Empty(start) => {
                let mut element = build_element(&reader, ns, &start, position)?;
                element.content_start = after;
                builder.open(element)?;
                builder.close(after)?;
            }
            Event::End(_) => builder.close(after)?,
            Event::Text(text) => builder.text(&text.xml10_content().map_err(malformed)?)?,
            Event::CData(data) => {
                if builder.stack.is_empty() {
                    return Err(SamlError::Malformed("CDATA outside the root element".into()));
                }
                builder.text(&data.xml10_content().map_err(malformed)?)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(malformed)? {
                    Some(ch) => ch.to_string(),
                    None => {
                        let name = reference.decode().map_err(malformed)?;
                        predefined_entity(&name)
                            .ok_or_else(|| {
                                SamlError::Malformed(format!("undeclared entity {name:?}"))
                            })?
                            .to_owned()
                    }
                };
                if builder.stack.is_empty() {
                    return Err(SamlError::Malformed("reference outside the root element".into()));
                }
                builder.text(&resolved)?;
            }
            Event::DocType(_) => return Err(SamlError::Doctype),
            Event::Comment(_) => {
                builder.comment_after_text = builder
                    .stack
                    .last()
                    .is_some_and(|parent| matches!(parent.children.last(), Some(Node::Text(_))));
                continue;
            }
            Event::Decl(decl) => check_declaration(&decl)?,
            Event::PI(_) => {}
            Event::Eof => break,
        }
        builder.comment_after_text = false;
    }
    if !builder.stack.is_empty() {
        return Err(SamlError::Malformed("unclosed element".into()));
    }
    builder.root.ok_or_else(|| SamlError::Malformed("no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_never_cut_text_and_entities_resolve() {
        let split = r#"<a xmlns="urn:x"><b>victim@corp.example<!---->.evil.example</b></a>"#;
        assert!(matches!(parse(split), Err(SamlError::Malformed(_))));
        let root = parse(
            "<a xmlns=\"urn:x\">\n  <!-- fine -->\n  <b>v<!-- fine --><i/>w</b><c>x&amp;y&#65;<![CDATA[<z>]]></c></a>",
        )
        .unwrap();
        assert_eq!(root.child("urn:x", "b").unwrap().text(), "vw");
        assert_eq!(root.child("urn:x", "c").unwrap().text(), "x&yA<z>");
    }

    #[test]
    fn spans_cover_elements() {
        let xml = r#"<a><b x="1"/><c>t</c></a>"#;
        let root = parse(xml).unwrap();
        let c = root.child("", "c").unwrap();
        assert_eq!(&xml[c.start..c.end], "<c>t</c>");
        let b = root.child("", "b").unwrap();
        assert_eq!(&xml[b.start..b.end], r#"<b x="1"/>"#);
        assert_eq!(b.attr("x"), Some("1"));
    }

    #[test]
    fn refuses_bad_documents() {
        for bad in [
            "<a><b></a>",
            "<a/><b/>",
            "<p:a/>",
            "<a>&ent;</a>",
            "<a/>junk",
            "<!DOCTYPE a><a/>",
            "",
            "<a x='1' x='2'/>",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            "<?xml version=\"1.1\"?><a/>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("<?xml version=\"1.0\" encoding=\"utf-8\"?><a/>").is_ok());
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(&deep).is_err());
    }
}
