//! Showing stored text safely: a small markdown subset (paragraphs, line breaks, bold, italic), never raw HTML.
//!
//! pulldown-cmark parses; everything outside the subset (raw HTML, links, images, headings, code) is turned
//! back into plain text; ammonia then cleans the result against an allowlist of four tags, so even a parser
//! surprise cannot produce markup beyond `<p> <br> <strong> <em>`.

use std::collections::HashSet;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

/// Sanitised HTML of a message or profile text.
pub fn to_html(text: &str) -> String {
    let events = Parser::new_ext(text, Options::empty()).filter_map(|event| match event {
        Event::Start(Tag::Paragraph | Tag::Emphasis | Tag::Strong)
        | Event::End(TagEnd::Paragraph | TagEnd::Emphasis | TagEnd::Strong)
        | Event::Text(_)
        | Event::HardBreak => Some(event),
        // A line break typed in a chat is meant as one.
        Event::SoftBreak => Some(Event::HardBreak),
        Event::Code(code) => Some(Event::Text(code)),
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(_) | Event::End(_) => None,
        Event::Rule => Some(Event::HardBreak),
        _ => None,
    });
    let mut unsafe_html = String::new();
    html::push_html(&mut unsafe_html, events);
    let tags: HashSet<&str> = ["p", "br", "strong", "em"].into_iter().collect();
    ammonia::Builder::new()
        .tags(tags)
        .generic_attributes(HashSet::new())
        .link_rel(None)
        .clean(&unsafe_html)
        .to_string()
        // Newlines in the output only separate tags; the text's own breaks are <br> by now.
        .replace('\n', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bold_italic_and_paragraphs_are_kept() {
        assert_eq!(
            to_html("**hi** *you*"),
            "<p><strong>hi</strong> <em>you</em></p>"
        );
        assert_eq!(to_html("one\n\ntwo"), "<p>one</p><p>two</p>");
        assert_eq!(to_html("line\nnext"), "<p>line<br>next</p>");
    }

    #[test]
    fn html_and_other_markdown_become_text() {
        let html = to_html("<script>alert(1)</script> <img src=x onerror=alert(1)>");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html = to_html("[click](javascript:alert(1)) ![x](http://x/y.png) # Heading");
        assert!(
            !html.contains("<a") && !html.contains("<img") && !html.contains("<h1"),
            "{html}"
        );
        assert!(!to_html("`code`").contains("<code"));
    }
}
