//! `htmlChecks()`: whether narrative XHTML keeps to the rules of FHIR R4 (narrative.html):
//! well-formed, only the basic formatting elements and their plain attributes, no
//! scripts, forms, frames, objects, event attributes or `javascript:` links.
//!
//! Hand-written because the check is an allow-list over tags and attributes, which a
//! single pass over the text does: sanitizer crates (ammonia) rewrite the markup instead
//! of judging it, and an XML parser would be a new dependency for the tokenising alone.
//! The pass reads tags, attributes, comments and text; entities are left as text, since
//! what the rules forbid is in the tags.

/// The elements FHIR narrative may use.
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "b",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// The attributes FHIR narrative may use (no event handlers).
const ATTRIBUTES: &[&str] = &[
    "abbr",
    "accesskey",
    "align",
    "alt",
    "axis",
    "bgcolor",
    "border",
    "cellhalign",
    "cellpadding",
    "cellspacing",
    "cellvalign",
    "char",
    "charoff",
    "charset",
    "cite",
    "class",
    "colspan",
    "compact",
    "coords",
    "dir",
    "frame",
    "headers",
    "height",
    "href",
    "hreflang",
    "hspace",
    "id",
    "lang",
    "longdesc",
    "name",
    "nowrap",
    "rel",
    "rev",
    "rowspan",
    "rules",
    "scope",
    "shape",
    "span",
    "src",
    "start",
    "style",
    "summary",
    "tabindex",
    "title",
    "type",
    "valign",
    "value",
    "vspace",
    "width",
    "xml:lang",
    "xmlns",
];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

/// Whether `html` is well-formed narrative XHTML within FHIR's rules.
pub(super) fn html_checks(html: &str) -> bool {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            let Some(end) = after.find("-->") else {
                return false;
            };
            rest = &after[end + 3..];
            continue;
        }
        // Declarations, processing instructions and CDATA have no place in narrative.
        if rest.starts_with(['!', '?']) {
            return false;
        }
        let closing = rest.starts_with('/');
        let body = if closing { &rest[1..] } else { rest };
        let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
        let name = &body[..name_len];
        if name.is_empty() || !ELEMENTS.contains(&name) {
            return false;
        }
        let Some((attrs, self_closing, after)) = tag_rest(&body[name_len..]) else {
            return false;
        };
        rest = after;
        if closing {
            if !attrs.trim().is_empty() || self_closing || open.pop() != Some(name) {
                return false;
            }
            continue;
        }
        if !attributes_allowed(attrs) {
            return false;
        }
        if !self_closing {
            open.push(name);
        }
    }
    open.is_empty()
}

/// The attribute text of a tag, whether it ends in `/>`, and the text after it; quoted
/// values may hold `>`.
fn tag_rest(s: &str) -> Option<(&str, bool, &str)> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '<') => return None,
            (None, '>') => {
                let inner = &s[..i];
                return Some(match inner.strip_suffix('/') {
                    Some(a) => (a, true, &s[i + 1..]),
                    None => (inner, false, &s[i + 1..]),
                });
            }
            _ => {}
        }
    }
    None
}

fn attributes_allowed(mut s: &str) -> bool {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return true;
        }
        let name_len = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
        let name = &s[..name_len];
        let Some(after_eq) = s[name_len..].trim_start().strip_prefix('=') else {
            return false; // XHTML attributes always have a value
        };
        let after_eq = after_eq.trim_start();
        let Some(q) = after_eq.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            return false;
        };
        let Some(end) = after_eq[1..].find(q) else {
            return false;
        };
        let value = &after_eq[1..=end];
        s = &after_eq[end + 2..];
        let allowed = ATTRIBUTES.contains(&name) || name.starts_with("xmlns:");
        let script_link = matches!(name, "href" | "src")
            && value
                .trim_start()
                .get(..11)
                .is_some_and(|p| p.eq_ignore_ascii_case("javascript:"));
        if name.is_empty() || !allowed || script_link {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::html_checks;

    #[test]
    fn narrative_rules() {
        for good in [
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hi <b>there</b></p></div>",
            "<b>This</b> <i>is</i> valid <code>HTML</code>",
            "<table><tr><td colspan='2'>a &gt; b</td></tr></table><br/><!-- note -->",
            "<a href=\"http://example.org/?a=1&amp;b=>\">link</a>",
            "plain text",
        ] {
            assert!(html_checks(good), "{good}");
        }
        for bad in [
            "<b>This</b> <i>is</i> valid <button>HTML</button>",
            "<div><script>alert(1)</script></div>",
            "<p onclick=\"x()\">a</p>",
            "<a href=' JavaScript:alert(1)'>a</a>",
            "<p>unclosed",
            "<p>crossed <b>tags</p></b>",
            "<p class=bare>a</p>",
            "<?xml version='1.0'?><p/>",
            "a < b",
            "<!-- open",
        ] {
            assert!(!html_checks(bad), "{bad}");
        }
    }
}
