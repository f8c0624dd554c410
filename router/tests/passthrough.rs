//! Byte-exact forwarding against a tiny echo upstream: the body is the received bytes, the
//! query string survives, end-to-end headers pass, hop-by-hop headers do not.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use axum::{Router, body::Bytes, http::HeaderMap, routing::any};
use serde_json::{Value, json};

/// Echoes method, path+query, headers and the exact body bytes (as a JSON array of numbers).
async fn start_echo() -> String {
    async fn echo(
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::Json<Value> {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    Value::String(v.to_str().unwrap_or("").to_owned()),
                )
            })
            .collect();
        axum::Json(json!({
            "method": method.as_str(),
            "uri": uri.to_string(),
            "headers": headers,
            "body": body.to_vec(),
        }))
    }
    let app = Router::new()
        .route("/health", any(|| async { "ok" }))
        .fallback(any(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn request_bytes_query_and_headers_are_forwarded_faithfully() {
    let upstream = start_echo().await;
    let yaml =
        format!("listen: 127.0.0.1:0\nreplicas:\n  - url: {upstream}/prefix\n    name: echo\n");
    let router = router::start(router::Config::from_yaml_str(&yaml).unwrap())
        .await
        .unwrap();
    // Odd spacing, escapes and key order must survive untouched.
    let body =
        "{ \"prompt\" : \"caf\\u00e9 \u{1F600}\",\n  \"model\":\"m\" , \"extra\": [1, 2.50] }";
    let response = reqwest::Client::new()
        .post(format!("{}/v1/completions?trace=1&x=%20y", router.url()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer secret")
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-routed-to"], "echo");
    let echoed: Value = response.json().await.unwrap();
    let received: Vec<u8> = serde_json::from_value(echoed["body"].clone()).unwrap();
    assert_eq!(
        received,
        body.as_bytes(),
        "the body is forwarded byte for byte"
    );
    assert_eq!(echoed["uri"], "/prefix/v1/completions?trace=1&x=%20y");
    assert_eq!(echoed["method"], "POST");
    let headers = &echoed["headers"];
    assert!(
        headers.get("authorization").is_none(),
        "the client's key is not forwarded unless auth.upstream.forward: {headers}"
    );
    assert_eq!(headers["x-custom"], "kept");
    assert!(
        headers["x-request-id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert!(
        headers.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop: {headers}"
    );
    assert!(headers.get("te").is_none());
    assert_eq!(headers["host"], upstream.trim_start_matches("http://"));
    router.shutdown().await;
}

#[tokio::test]
async fn passthrough_routes_forward_any_method_and_body() {
    let upstream = start_echo().await;
    let yaml = format!("listen: 127.0.0.1:0\nreplicas:\n  - url: {upstream}\n");
    let router = router::start(router::Config::from_yaml_str(&yaml).unwrap())
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .put(format!("{}/v1/embeddings/anything", router.url()))
        .body("not json at all")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["uri"], "/v1/embeddings/anything");
    let received: Vec<u8> = serde_json::from_value(echoed["body"].clone()).unwrap();
    assert_eq!(received, b"not json at all");
    router.shutdown().await;
}
