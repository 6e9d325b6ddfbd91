//! What the exchange says about itself, to anyone who asks: the index page
//! (`GET /`), the OpenAPI document and the protocol guide. The two documents are
//! the files in `docs/`, compiled in, so the served copies are the reviewed ones.

use std::borrow::Cow;

use serde_json::json;

use super::request::{Document, API_VERSION_PREFIX};

/// The OpenAPI 3.1 description of every route, status and field.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The protocol explained for people (Markdown).
pub const PROTOCOL_GUIDE: &str = include_str!("../../docs/protocol.md");

/// The version of the HTTP protocol the exchange speaks: routes, fields, statuses.
/// It is the `1` of the `/v1` base path; a change that breaks clients would need a
/// new one.
pub const PROTOCOL_VERSION: &str = "1";

/// Where the index links to (the documents are also served under `/v1`).
const OPENAPI_PATH: &str = "/openapi.json";
const GUIDE_PATH: &str = "/docs";

/// A document as it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub content_type: &'static str,
    pub body: Cow<'static, str>,
    /// The body depends on the request's `Accept` (sent as `Vary: Accept`).
    pub negotiated: bool,
}

/// The page for `document`. The index is JSON when `accept` ranks
/// `application/json` above `text/html`, and HTML otherwise (browsers, `*/*`, no
/// `Accept`). The guide goes as plain text, which browsers show rather than save.
pub fn page(document: Document, accept: Option<&str>) -> Page {
    let (content_type, body, negotiated) = match document {
        Document::Index if prefers_json(accept) => (
            "application/json",
            Cow::Owned(index_json().to_string()),
            true,
        ),
        Document::Index => ("text/html; charset=utf-8", Cow::Owned(index_html()), true),
        Document::OpenApi => ("application/json", Cow::Borrowed(OPENAPI_DOCUMENT), false),
        Document::Guide => (
            "text/plain; charset=utf-8",
            Cow::Borrowed(PROTOCOL_GUIDE),
            false,
        ),
    };
    Page {
        content_type,
        body,
        negotiated,
    }
}

fn index_json() -> serde_json::Value {
    json!({
        "name": env!("CARGO_PKG_NAME"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": PROTOCOL_VERSION,
        "links": {"openapi": OPENAPI_PATH, "docs": GUIDE_PATH},
    })
}

fn index_html() -> String {
    let name = escape_html(env!("CARGO_PKG_NAME"));
    let description = escape_html(env!("CARGO_PKG_DESCRIPTION"));
    let version = escape_html(env!("CARGO_PKG_VERSION"));
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>{name}</title></head>\n<body>\n<h1>{name} {version}</h1>\n\
         <p>{description}</p>\n\
         <p>An exchange for Academy agents, speaking academy-py's HTTP exchange protocol, \
         version {PROTOCOL_VERSION} (also served under <code>{API_VERSION_PREFIX}</code>). \
         Connect with <code>academy.exchange.HttpExchangeFactory(&lt;this URL&gt;)</code>.</p>\n\
         <ul>\n<li><a href=\"{OPENAPI_PATH}\">OpenAPI document</a> ({OPENAPI_PATH})</li>\n\
         <li><a href=\"{GUIDE_PATH}\">Protocol guide</a> ({GUIDE_PATH}, Markdown)</li>\n</ul>\n\
         </body>\n</html>\n"
    )
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Whether `Accept` ranks `application/json` above `text/html`. Each gets the
/// quality of the most specific range that names it (`type/subtype`, then
/// `type/*`, then `*/*`); a tie goes to HTML.
fn prefers_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| quality(accept, "application/json") > quality(accept, "text/html"))
}

/// The quality `accept` gives `media_type` (0 if no range names it).
fn quality(accept: &str, media_type: &str) -> f32 {
    let kind = media_type.split('/').next().unwrap_or(media_type);
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parameters = range.split(';');
        let named = parameters.next().unwrap_or_default().trim();
        let specificity = if named.eq_ignore_ascii_case(media_type) {
            2
        } else if named
            .strip_suffix("/*")
            .is_some_and(|range_kind| range_kind.eq_ignore_ascii_case(kind))
        {
            1
        } else if named == "*/*" {
            0
        } else {
            continue;
        };
        let quality = parameters
            .find_map(|parameter| {
                let (name, value) = parameter.split_once('=')?;
                name.trim().eq_ignore_ascii_case("q").then(|| value.trim())
            })
            .map_or(1.0, |value| value.parse().unwrap_or(0.0));
        if best.is_none_or(|(known, _)| specificity > known) {
            best = Some((specificity, quality));
        }
    }
    best.map_or(0.0, |(_, quality)| quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ExchangeError;
    use crate::protocol::request::{Endpoint, Route};
    use serde_json::Value;

    fn openapi() -> Value {
        serde_json::from_str(OPENAPI_DOCUMENT).expect("docs/openapi.json is JSON")
    }

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    #[test]
    fn the_openapi_document_describes_exactly_what_the_worker_serves() {
        let document = openapi();
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in METHODS {
                let served = Endpoint::resolve(&method.to_uppercase(), path);
                if item.get(method).is_some() {
                    operations.push(served.unwrap_or_else(|e| panic!("{method} {path}: {e:?}")));
                } else {
                    assert!(
                        matches!(served, Err(ExchangeError::MethodNotAllowed { .. })),
                        "{method} {path} is served but not documented"
                    );
                }
            }
        }
        let routes: Vec<_> = operations
            .iter()
            .filter(|endpoint| matches!(endpoint, Endpoint::Operation(_)))
            .collect();
        assert_eq!(routes.len(), 13);
        assert_eq!(operations.len(), 16);
        assert!(operations.contains(&Endpoint::Operation(Route::Stats)));
    }

    #[test]
    fn the_openapi_document_names_this_version_and_the_v1_base_path() {
        let document = openapi();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let servers: Vec<&str> = document["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|server| server["url"].as_str().unwrap())
            .collect();
        assert_eq!(servers, ["/", API_VERSION_PREFIX]);
        assert_eq!(API_VERSION_PREFIX, format!("/v{PROTOCOL_VERSION}"));
    }

    #[test]
    fn every_error_status_the_exchange_answers_is_documented_with_its_text() {
        let document = openapi();
        let documented: Vec<String> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .flat_map(|operation| operation["responses"].as_object().unwrap().keys())
            .cloned()
            .collect();
        let errors = [
            ExchangeError::InvalidTimeout { max_s: 60.0 },
            ExchangeError::Unauthorized,
            ExchangeError::Forbidden,
            ExchangeError::UnknownMailbox,
            ExchangeError::Timeout,
            ExchangeError::MessageTooLarge { size: 2, limit: 1 },
            ExchangeError::Terminated,
            ExchangeError::internal("x"),
            ExchangeError::AuthUnavailable { reason: "x".into() },
        ];
        for error in errors {
            let status = error.status().to_string();
            assert!(documented.contains(&status), "{status} is not documented");
        }
        let responses = &document["components"]["responses"];
        let text = |name: &str| {
            responses[name]["content"]["text/plain"]["schema"]["const"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(text("UnknownMailbox"), ExchangeError::UnknownMailbox.text());
        assert_eq!(text("MailboxTerminated"), ExchangeError::Terminated.text());
        assert_eq!(text("NoMessageInTime"), ExchangeError::Timeout.text());
        assert_eq!(
            text("MissingCredentials"),
            ExchangeError::Unauthorized.text()
        );
    }

    #[test]
    fn the_index_is_html_for_browsers_and_json_when_asked() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for accept in [
            None,
            Some(browser),
            Some("*/*"),
            Some("text/*, application/json"),
        ] {
            let page = page(Document::Index, accept);
            assert_eq!(page.content_type, "text/html; charset=utf-8", "{accept:?}");
            assert!(page.body.contains("href=\"/openapi.json\""));
            assert!(page.negotiated);
        }
        for accept in [
            "application/json",
            "application/json, text/html;q=0.5",
            "text/html;q=0.1, application/*",
        ] {
            let page = page(Document::Index, Some(accept));
            assert_eq!(page.content_type, "application/json", "{accept}");
            let index: Value = serde_json::from_str(&page.body).unwrap();
            assert_eq!(index["name"], "academy-exchange");
            assert_eq!(index["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(index["protocol_version"], PROTOCOL_VERSION);
            assert_eq!(index["links"]["openapi"], OPENAPI_PATH);
            assert_eq!(index["links"]["docs"], GUIDE_PATH);
        }
    }

    #[test]
    fn a_refused_or_malformed_quality_ranks_lowest() {
        assert!(!prefers_json(Some("application/json;q=0, text/html;q=0.1")));
        assert!(!prefers_json(Some("application/json;q=oops")));
        assert!(prefers_json(Some(
            "Application/JSON;Q=0.9, text/html;q=0.8"
        )));
    }

    #[test]
    fn the_documents_are_served_as_written() {
        let openapi = page(Document::OpenApi, Some("text/html"));
        assert_eq!(openapi.content_type, "application/json");
        assert_eq!(openapi.body, OPENAPI_DOCUMENT);
        assert!(!openapi.negotiated);
        let guide = page(Document::Guide, None);
        assert_eq!(guide.body, PROTOCOL_GUIDE);
        assert!(guide.content_type.starts_with("text/plain"));
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape_html("a<b & \"c\">"),
            "a&lt;b &amp; &quot;c&quot;&gt;"
        );
    }
}
