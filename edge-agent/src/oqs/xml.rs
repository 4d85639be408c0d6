//! A small, bounded element tree. We need a handful of values from documents of a few kilobytes, so the
//! tree is built eagerly with limits instead of streaming into serde: DOCTYPE (and with it every entity
//! trick) is refused, depth and element count are capped, and the root element must be closed, which is
//! how a truncated file (a writer still busy, a copy cut short) is told from a complete one.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::ParseError;

pub const MAX_DEPTH: usize = 64;
pub const MAX_ELEMENTS: usize = 200_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first descendant (depth-first) with this local name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(found) = c.find(name) {
                return Some(found);
            }
        }
        None
    }

    /// Trimmed text of the first descendant with this name, if non-empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.find(name).map(|e| e.text.trim()).filter(|t| !t.is_empty())
    }

    /// Every text value in the tree, for scanning (the 個人番号 guard).
    pub fn all_text(&self) -> Vec<&str> {
        let mut out = vec![self.text.as_str()];
        for c in &self.children {
            out.extend(c.all_text());
        }
        out
    }
}

fn local(name: &str) -> Result<String, ParseError> {
    Ok(name.rsplit(':').next().unwrap_or(name).to_owned())
}

pub fn parse(text: &str) -> Result<Element, ParseError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| ParseError::Xml(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(ParseError::DocType),
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(ParseError::Xml("content after the root element".into()));
            }
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                if count > MAX_ELEMENTS {
                    return Err(ParseError::TooManyElements);
                }
                stack.push(Element { name: local(e.local_name().as_ref())?, ..Element::default() });
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(ParseError::TooManyElements);
                }
                let element = Element { name: local(e.local_name().as_ref())?, ..Element::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| ParseError::Xml("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(current) => current.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(ParseError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                // Only the five predefined entities and character references; nothing is ever expanded
                // from a DTD (there is none: DOCTYPE is refused above).
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| ParseError::Xml(e.to_string()))?.map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content()).map(str::to_owned)
                };
                let resolved = resolved.ok_or_else(|| ParseError::Xml("unknown entity reference".into()))?;
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Truncated);
    }
    root.ok_or(ParseError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_parses_into_a_tree() {
        let root = parse("<?xml version=\"1.0\"?><XmlMsg><A><B>x &amp; y</B><C/></A></XmlMsg>").unwrap();
        assert_eq!(root.name, "XmlMsg");
        assert_eq!(root.text_of("B"), Some("x & y"));
        assert!(root.find("C").is_some());
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><XmlMsg>&lol2;</XmlMsg>";
        assert!(matches!(parse(laughs), Err(ParseError::DocType)));
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><XmlMsg>&e;</XmlMsg>";
        assert!(matches!(parse(xxe), Err(ParseError::DocType)));
        assert!(parse("<XmlMsg>&undefined;</XmlMsg>").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert!(matches!(parse(&deep), Err(ParseError::TooDeep)));
    }

    #[test]
    fn truncation_is_detected() {
        let doc = "<XmlMsg><A>1</A><B>2</B></XmlMsg>";
        let end = doc.len();
        for cut in 0..end {
            assert!(parse(&doc[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        assert!(parse(doc).is_ok());
    }
}
