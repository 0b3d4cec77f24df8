//! Reads the values a browser would submit from a server-rendered form (inputs, selects, textareas).

/// Undoes the HTML escaping askama applies.
pub fn unescape(text: &str) -> String {
    text.replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

fn has_flag(tag: &str, name: &str) -> bool {
    tag.split(|c: char| c.is_whitespace() || c == '>')
        .any(|part| part == name)
}

/// The `(name, value)` pairs the form with `id="{form_id}"` submits (files left out).
pub fn fields(html: &str, form_id: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("id=\"{form_id}\""))
        .expect("the form is on the page");
    let end = start + html[start..].find("</form>").expect("the form ends");
    let form = &html[start..end];
    let mut out = Vec::new();
    let mut rest = form;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let close = rest.find('>').unwrap_or(rest.len() - 1);
        let tag = &rest[..=close];
        if tag.starts_with("<input") {
            let kind = attribute(tag, "type").unwrap_or_else(|| "text".into());
            if let Some(name) = attribute(tag, "name")
                && kind != "file"
                && kind != "submit"
                && ((kind != "radio" && kind != "checkbox") || has_flag(tag, "checked"))
            {
                out.push((name, attribute(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<select") {
            let name = attribute(tag, "name").unwrap_or_default();
            let select_end = rest.find("</select>").unwrap_or(rest.len());
            let options = &rest[..select_end];
            let selected = options
                .split("<option")
                .skip(1)
                .find(|option| {
                    let tag_end = option.find('>').unwrap_or(0);
                    has_flag(&option[..=tag_end], "selected")
                })
                .or_else(|| options.split("<option").nth(1))
                .and_then(|option| attribute(&format!("<option{option}"), "value"))
                .unwrap_or_default();
            out.push((name, selected));
            rest = &rest[select_end..];
            continue;
        } else if tag.starts_with("<textarea") {
            let name = attribute(tag, "name").unwrap_or_default();
            let body_end = rest.find("</textarea>").unwrap_or(rest.len());
            out.push((name, unescape(&rest[close + 1..body_end])));
            rest = &rest[body_end..];
            continue;
        }
        rest = &rest[close + 1..];
    }
    out
}
