//! Forwards a request to one replica over a pooled keep-alive client, with connect and
//! first-byte timeouts, and strips hop-by-hop headers both ways.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use serde::{Deserialize, Serialize};

use crate::{Error, error::UpstreamErrorKind, replicas::Replica};

/// A request ready to forward: the received bytes and headers, unchanged.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/v1/completions`.
    pub path_and_query: String,
    /// Headers as received (hop-by-hop ones are dropped when sending).
    pub headers: HeaderMap,
    /// The body bytes as received.
    pub body: Bytes,
}

/// The pooled HTTP client to replicas.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpConnector, Full<Bytes>>,
    first_byte: Duration,
    /// `Authorization` sent on the router's own GETs (model lists, probes, scrapes).
    own_authorization: Option<http::HeaderValue>,
}

impl Proxy {
    /// A client with the configured connect and first-byte timeouts.
    pub fn new(timeouts: &TimeoutConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(timeouts.connect_ms)));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        // The pool timer is what closes idle connections after the idle timeout; without it
        // they stay open (one per peak concurrent request) until reused.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self {
            client,
            first_byte: Duration::from_millis(timeouts.first_byte_ms),
            own_authorization: None,
        }
    }

    /// The same client, sending `authorization` on its own GETs (`auth.upstream.api_key`).
    pub fn with_authorization(mut self, authorization: Option<http::HeaderValue>) -> Self {
        self.own_authorization = authorization;
        self
    }

    /// The configured wait for response headers (`timeouts.first_byte_ms`).
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte
    }

    /// Sends `request` to `replica` and waits for the response head (not the body).
    pub async fn send(
        &self,
        replica: &Replica,
        request: &UpstreamRequest,
    ) -> Result<Response<Incoming>, Error> {
        self.send_within(replica, request, self.first_byte).await
    }

    /// As [`Proxy::send`], waiting at most `first_byte` for the response head.
    pub async fn send_within(
        &self,
        replica: &Replica,
        request: &UpstreamRequest,
        first_byte: Duration,
    ) -> Result<Response<Incoming>, Error> {
        let upstream = |kind, message: String| Error::Upstream {
            replica: replica.name().to_owned(),
            kind,
            message,
        };
        let uri = replica.uri_for(&request.path_and_query).map_err(|e| {
            upstream(
                UpstreamErrorKind::Protocol,
                format!("bad upstream URI: {e}"),
            )
        })?;
        let mut builder = Request::builder().method(request.method.clone()).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            copy_end_to_end(&request.headers, headers);
            headers.remove(header::HOST);
            // The body is already read: nothing to wait for upstream.
            headers.remove(header::EXPECT);
        }
        let outgoing = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| upstream(UpstreamErrorKind::Protocol, e.to_string()))?;
        match tokio::time::timeout(first_byte, self.client.request(outgoing)).await {
            Err(_) => Err(Error::Timeout {
                replica: replica.name().to_owned(),
                kind: UpstreamErrorKind::FirstByteTimeout,
            }),
            Ok(Err(e)) if e.is_connect() => {
                Err(upstream(UpstreamErrorKind::Connect, error_chain(&e)))
            }
            Ok(Err(e)) => Err(upstream(UpstreamErrorKind::Protocol, error_chain(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends a bodiless GET to `path` on `replica` and collects the body, within `timeout`;
    /// a failure is [`Error::ReplicaFetch`].
    pub async fn get(
        &self,
        replica: &Replica,
        path: &str,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Error> {
        use http_body_util::BodyExt;
        let fetch_err = |reason: String| Error::ReplicaFetch(reason);
        let uri = replica
            .uri_for(path)
            .map_err(|e| fetch_err(e.to_string()))?;
        let mut request = Request::get(uri);
        if let Some(value) = &self.own_authorization {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| fetch_err(e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fetch_err(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fetch_err(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| fetch_err("timed out".to_owned()))?
    }
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) never forwarded by a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Copies `from` into `to` minus hop-by-hop headers and any named in `Connection`.
pub fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        if HOP_BY_HOP.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Timeouts, all in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP connect to a replica.
    pub connect_ms: u64,
    /// From sending a non-streaming request to receiving response headers (vLLM sends them
    /// with the whole answer, so this bounds generation time).
    pub first_byte_ms: u64,
    /// From sending a streaming request to receiving response headers (vLLM sends them before
    /// generating): past it the request is re-sent elsewhere, so a stalled replica costs this.
    pub stream_first_byte_ms: u64,
    /// Longest time a client may take to send its request headers (slowloris guard); also how
    /// long an idle keep-alive connection waits for its next request (uvicorn's is 5 s).
    pub header_read_ms: u64,
    /// Longest pause between two chunks of a response body, and longest wait for a request body.
    pub idle_ms: u64,
    /// How long shutdown waits for in-flight requests to finish.
    pub shutdown_drain_ms: u64,
    /// On shutdown, how long `/readiness` answers 503 before the listener closes (lets a load
    /// balancer stop sending first).
    pub shutdown_unready_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 1000,
            first_byte_ms: 120_000,
            stream_first_byte_ms: 2_000,
            header_read_ms: 10_000,
            idle_ms: 60_000,
            shutdown_drain_ms: 10_000,
            shutdown_unready_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        from.insert("keep-alive", "timeout=5".parse().unwrap());
        from.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        from.insert("x-secret", "1".parse().unwrap());
        from.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        from.append("x-multi", "a".parse().unwrap());
        from.append("x-multi", "b".parse().unwrap());
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        let mut names: Vec<&str> = to.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-multi"]);
        assert_eq!(to.get_all("x-multi").iter().count(), 2);
    }
}
