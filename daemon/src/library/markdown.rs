//! Articles and announcements are written in Markdown and shown as HTML
//! rendered on the server, safely: raw HTML in the text is shown as text,
//! and links and images may only point to `http`, `https`, `mailto` or a
//! page of this site (no `javascript:` or `data:`), so a publisher's text
//! can never run script in a reader's browser.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        // A scheme before any '/', '?' or '#': only the web's and mail's.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// The HTML of `markdown`.
pub fn to_html(markdown: &str) -> String {
    to_html_from(markdown, None)
}

/// The HTML of `markdown` written by `publisher` (a peer; `None`: this
/// node): its links to its own library pages (`/library/own/<id>`, as a
/// course's lessons point at its resources) lead to those resources as
/// this node received them (`/library/<publisher>/resource.<publisher>.<id>`).
pub fn to_html_from(markdown: &str, publisher: Option<&str>) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if publisher.is_some() && dest_url.starts_with("/library/own/") => {
            let own = dest_url.trim_start_matches("/library/own/");
            let p = publisher.unwrap_or_default();
            Event::Start(Tag::Link {
                link_type,
                dest_url: CowStr::from(format!("/library/{p}/resource.{p}.{own}")),
                title,
                id,
            })
        }
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::Borrowed("#"),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::Borrowed("#"),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_script_reaches_the_page() {
        let html = to_html(
            "# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://a.example/) \
             ![i](data:text/html,hi) <img src=x onerror=alert(1)>",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.to_lowercase().contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(html.contains(r#"href="https://a.example/""#), "{html}");
    }

    #[test]
    fn links_to_the_publishers_library_lead_to_the_received_copy() {
        let text = "[video](/library/own/R0190aa) [site](https://a.example/)";
        assert!(to_html(text).contains(r#"href="/library/own/R0190aa""#));
        let html = to_html_from(text, Some("acme"));
        assert!(
            html.contains(r#"href="/library/acme/resource.acme.R0190aa""#)
                && html.contains(r#"href="https://a.example/""#),
            "{html}"
        );
    }
}
