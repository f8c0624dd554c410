//! A request's priority: the body field `priority`, else the `x-priority` header, else the
//! client key's default, else the route's default, else the configured default; and the body
//! rewritten to carry it.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::config::QueueConfig;

/// Header a client may set instead of the body field.
pub const PRIORITY_HEADER: &str = "x-priority";

/// Where a request's priority came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The body's `priority` field (already forwarded as is).
    Body,
    /// The header or a configured default: the body must be given the field.
    Elsewhere,
}

/// The priority of a request with body field `body`, `headers`, its client key's default
/// `key` and `path` (query excluded).
pub fn resolve(
    config: &QueueConfig,
    body: Option<i64>,
    headers: &HeaderMap,
    key: Option<i64>,
    path: &str,
) -> (i64, Source) {
    if let Some(p) = body {
        return (p, Source::Body);
    }
    let header = headers
        .get(PRIORITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let p = header
        .or(key)
        .or_else(|| config.route_priority.get(path).copied())
        .unwrap_or(config.default_priority);
    (p, Source::Elsewhere)
}

/// `body` (a JSON object without `priority`) with `"priority":N` added as its first member; the
/// rest of the bytes are untouched. Anything not starting with `{` is returned as is.
pub fn with_priority(body: &Bytes, priority: i64) -> Bytes {
    let Some(open) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return body.clone();
    };
    if body[open] != b'{' {
        return body.clone();
    }
    let rest = &body[open + 1..];
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let field = format!("\"priority\":{priority}{}", if empty { "" } else { "," });
    let mut out = BytesMut::with_capacity(body.len() + field.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(rest);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn body_then_header_then_route_then_default() {
        let mut config = QueueConfig {
            default_priority: 7,
            ..QueueConfig::default()
        };
        config
            .route_priority
            .insert("/v1/completions".to_owned(), 3);
        let mut headers = HeaderMap::new();
        let path = "/v1/completions";
        assert_eq!(
            resolve(&config, None, &headers, None, "/v1/chat/completions"),
            (7, Source::Elsewhere)
        );
        assert_eq!(resolve(&config, None, &headers, None, path).0, 3);
        assert_eq!(
            resolve(&config, None, &headers, Some(5), path),
            (5, Source::Elsewhere),
            "the key's default comes before the route's"
        );
        headers.insert(PRIORITY_HEADER, HeaderValue::from_static(" -2 "));
        assert_eq!(resolve(&config, None, &headers, Some(5), path).0, -2);
        assert_eq!(
            resolve(&config, Some(1), &headers, Some(5), path),
            (1, Source::Body)
        );
        headers.insert(PRIORITY_HEADER, HeaderValue::from_static("high"));
        assert_eq!(
            resolve(&config, None, &headers, None, path).0,
            3,
            "a bad header is ignored"
        );
        assert_eq!(resolve(&config, None, &headers, Some(5), path).0, 5);
    }

    #[test]
    fn priority_is_added_to_the_body_and_the_rest_kept() {
        let body = Bytes::from_static(b" {\"prompt\":\"hi\", \"stream\":true}");
        let out = with_priority(&body, 1);
        assert_eq!(
            &out[..],
            b" {\"priority\":1,\"prompt\":\"hi\", \"stream\":true}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["priority"], 1);
        assert_eq!(
            &with_priority(&Bytes::from_static(b"{ }"), -4)[..],
            b"{\"priority\":-4 }"
        );
        assert_eq!(&with_priority(&Bytes::from_static(b"[1]"), 1)[..], b"[1]");
        assert_eq!(&with_priority(&Bytes::new(), 1)[..], b"");
    }
}
