//! Showing stored text safely: the markdown models write, never raw HTML and never a live link.
//!
//! pulldown-cmark parses (with strikethrough); paragraphs, line breaks, bold, italic, strikethrough,
//! bullet and numbered lists, block quotes, inline code, code blocks (kept verbatim: whitespace and line
//! breaks matter there) and rules become their tags. Headings become a bold paragraph (a reply is not a
//! document); links become their text followed by the address in brackets, images their description and
//! address, so nothing is fetched or clickable; raw HTML becomes visible text. ammonia then cleans the
//! result against an allowlist of exactly those tags, with `start` on numbered lists as the only attribute,
//! so even a parser surprise cannot produce markup beyond it. A line break typed in a chat is meant as one.

use std::collections::{HashMap, HashSet};

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd, html};

/// The tags a rendered message may contain.
const ALLOWED_TAGS: [&str; 12] = [
    "p",
    "br",
    "strong",
    "em",
    "del",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "hr",
];

/// Sanitised HTML of a message or profile text.
pub fn to_html(text: &str) -> String {
    let mut events: Vec<Event<'_>> = Vec::new();
    // The address of each link or image being read, shown after its text.
    let mut targets: Vec<String> = Vec::new();
    // Lines of the raw HTML block being shown as text.
    let mut html_lines = 0_usize;
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                events.push(Event::Start(Tag::Paragraph));
                events.push(Event::Start(Tag::Strong));
            }
            Event::End(TagEnd::Heading(_)) => {
                events.push(Event::End(TagEnd::Strong));
                events.push(Event::End(TagEnd::Paragraph));
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                targets.push(dest_url.into_string());
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if let Some(url) = targets.pop().filter(|url| !url.is_empty()) {
                    events.push(Event::Text(format!(" ({url})").into()));
                }
            }
            Event::Start(Tag::CodeBlock(_)) => {
                // The language of a fenced block is not shown (and would need a class attribute).
                events.push(Event::Start(Tag::CodeBlock(CodeBlockKind::Indented)));
            }
            Event::Start(
                Tag::Paragraph
                | Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::List(_)
                | Tag::Item
                | Tag::BlockQuote(_),
            )
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::List(_)
                | TagEnd::Item
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock,
            )
            | Event::Text(_)
            | Event::Code(_)
            | Event::HardBreak
            | Event::Rule => events.push(event),
            Event::SoftBreak => events.push(Event::HardBreak),
            Event::InlineHtml(raw) => events.push(Event::Text(raw)),
            Event::Start(Tag::HtmlBlock) => {
                // A block of raw HTML is shown as the text it is, line by line, as a paragraph.
                events.push(Event::Start(Tag::Paragraph));
                html_lines = 0;
            }
            Event::End(TagEnd::HtmlBlock) => events.push(Event::End(TagEnd::Paragraph)),
            Event::Html(raw) => {
                for line in raw.split_inclusive('\n') {
                    if html_lines > 0 {
                        events.push(Event::HardBreak);
                    }
                    html_lines += 1;
                    events.push(Event::Text(line.trim_end_matches('\n').to_owned().into()));
                }
            }
            // Footnotes, tables, task markers and the like are off; anything else is dropped as markup
            // while its text (a separate event) stays.
            _ => {}
        }
    }
    let mut unsafe_html = String::new();
    html::push_html(&mut unsafe_html, events.into_iter());
    let tags: HashSet<&str> = ALLOWED_TAGS.into_iter().collect();
    let mut tag_attributes = HashMap::new();
    tag_attributes.insert("ol", ["start"].into_iter().collect::<HashSet<&str>>());
    let clean = ammonia::Builder::new()
        .tags(tags)
        .tag_attributes(tag_attributes)
        .generic_attributes(HashSet::new())
        .link_rel(None)
        .clean(&unsafe_html)
        .to_string();
    without_layout_newlines(&clean)
}

/// The HTML without the newlines the renderer puts between tags (finished replies are laid out by their
/// tags, and a stray newline would show under `white-space: pre-wrap`), except inside `<pre>`, where every
/// character is the code's own. Text never holds a newline here: breaks are `<br>` by now.
fn without_layout_newlines(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<pre>") {
        out.push_str(&rest[..start].replace('\n', ""));
        let end = rest[start..]
            .find("</pre>")
            .map_or(rest.len(), |at| start + at + "</pre>".len());
        out.push_str(&rest[start..end]);
        rest = &rest[end..];
    }
    out.push_str(&rest.replace('\n', ""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(text: &str) -> String {
        to_html(text)
    }

    #[test]
    fn bold_italic_and_paragraphs_are_kept() {
        assert_eq!(
            compact("**hi** *you* ~~not~~"),
            "<p><strong>hi</strong> <em>you</em> <del>not</del></p>"
        );
        assert_eq!(compact("one\n\ntwo"), "<p>one</p><p>two</p>");
        assert_eq!(compact("line\nnext"), "<p>line<br>next</p>");
    }

    #[test]
    fn bullet_and_numbered_lists_keep_their_items_apart() {
        assert_eq!(
            compact("- a\n- b"),
            "<ul><li>a</li><li>b</li></ul>",
            "not \"ab\""
        );
        assert_eq!(
            compact("1. first\n2. second"),
            "<ol><li>first</li><li>second</li></ol>"
        );
        assert_eq!(
            compact("3. third\n4. fourth"),
            "<ol start=\"3\"><li>third</li><li>fourth</li></ol>"
        );
        assert_eq!(
            compact("* outer\n  * inner"),
            "<ul><li>outer<ul><li>inner</li></ul></li></ul>"
        );
    }

    #[test]
    fn code_keeps_its_lines_and_spaces() {
        assert_eq!(
            compact("use `cargo run` now"),
            "<p>use <code>cargo run</code> now</p>"
        );
        let html = to_html("```rust\nfn main() {\n    println!(\"<hi>\");\n}\n```");
        assert_eq!(
            html, "<pre><code>fn main() {\n    println!(\"&lt;hi&gt;\");\n}\n</code></pre>",
            "lines, indentation and escaping kept; no language class"
        );
        assert_eq!(
            to_html("    indented\n      more"),
            "<pre><code>indented\n  more</code></pre>"
        );
    }

    #[test]
    fn quotes_headings_and_rules() {
        assert_eq!(
            compact("> said so\n> twice"),
            "<blockquote><p>said so<br>twice</p></blockquote>"
        );
        assert_eq!(
            compact("## Plan\ntext"),
            "<p><strong>Plan</strong></p><p>text</p>"
        );
        assert_eq!(compact("a\n\n---\n\nb"), "<p>a</p><hr><p>b</p>");
    }

    #[test]
    fn links_and_images_are_text_with_their_address_visible() {
        assert_eq!(
            compact("see [the docs](https://example.com/docs)"),
            "<p>see the docs (https://example.com/docs)</p>"
        );
        assert_eq!(
            compact("![a cat](http://x/cat.png)"),
            "<p>a cat (http://x/cat.png)</p>"
        );
        assert_eq!(
            compact("<https://example.com>"),
            "<p>https://example.com (https://example.com)</p>"
        );
        let html = to_html("[click](javascript:alert(1))");
        assert!(!html.contains("<a"), "{html}");
        assert!(
            html.contains("click (javascript:alert(1))"),
            "shown, never live: {html}"
        );
    }

    /// Every tag in `html` is an allowed one, with no attribute but a numbered list's numeric `start`.
    fn assert_only_allowed_markup(html: &str) {
        for tag in html.split('<').skip(1) {
            let inside = tag.split('>').next().unwrap_or("");
            let mut parts = inside.trim_start_matches('/').split_whitespace();
            let name = parts.next().unwrap_or("");
            assert!(ALLOWED_TAGS.contains(&name), "tag <{inside}> in {html}");
            for attribute in parts {
                let value = attribute
                    .strip_prefix("start=\"")
                    .and_then(|v| v.strip_suffix('"'));
                assert!(
                    name == "ol" && value.is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit())),
                    "attribute {attribute} in {html}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "tag <a")]
    fn the_markup_check_catches_a_link() {
        assert_only_allowed_markup("<p><a href=\"x\">y</a></p>");
    }

    #[test]
    fn html_never_becomes_markup() {
        let attacks = [
            "<script>alert(1)</script> <img src=x onerror=alert(1)>",
            "<div onclick=\"x()\">\n\n**b**\n\n</div>",
            "- <b onmouseover=alert(1)>x</b>\n\n```\n</code></pre><script>x</script>\n```",
            "1. a\n\n<ol start=\"javascript:x\" style=\"x\"><li>b</li></ol>",
            "[x](javascript:alert(1)) ![y](data:text/html,<script>z</script>)",
            "> <iframe src=//evil>\n> `</code><svg onload=alert(1)>`",
            "# <a href=//evil>heading</a>",
            "<!-- comment --><style>body{}</style>",
        ];
        for attack in attacks {
            let html = to_html(attack);
            assert_only_allowed_markup(&html);
        }
        assert!(
            to_html("<script>alert(1)</script>").contains("&lt;script&gt;"),
            "shown as text"
        );
        assert_eq!(
            to_html("<div>\nhello\n</div>"),
            "<p>&lt;div&gt;<br>hello<br>&lt;/div&gt;</p>",
            "raw HTML blocks keep their lines as text"
        );
        assert_only_allowed_markup(&to_html("- a\n- b\n\n3. c\n\n> q\n\n```\ncode\n```\n\n---"));
    }
}
