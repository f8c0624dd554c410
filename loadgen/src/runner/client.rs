//! Sends one request and times it: TTFT at the first content chunk, ITL between chunks, E2E.

use super::sse::SseParser;
use crate::error::Error;
use crate::record::RequestRecord;
use crate::request::Endpoint;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Response header naming the replica the router picked.
pub const ROUTED_TO_HEADER: &str = "x-routed-to";
/// Response header with the router's admission-queue wait in milliseconds.
pub(crate) const QUEUE_WAIT_HEADER: &str = "x-queue-wait-ms";

/// One request to send.
pub(crate) struct Call<'a> {
    pub(crate) client: &'a reqwest::Client,
    pub(crate) url: &'a str,
    pub(crate) body: &'a Value,
    pub(crate) endpoint: Endpoint,
    pub(crate) stream: bool,
    pub(crate) keep_text: bool,
    pub(crate) timeout: Duration,
}

/// What a response has produced so far.
#[derive(Default)]
struct Progress {
    ttft: Option<f64>,
    last: Option<f64>,
    itl: Vec<f64>,
    chunks: u64,
    text: String,
    usage: Option<(u64, u64)>,
    routed_to: Option<String>,
    queue_wait_ms: Option<f64>,
    detail: Option<String>,
}

impl Progress {
    /// Records a content chunk received `t` seconds after sending.
    fn content(&mut self, t: f64, text: &str, keep: bool) {
        if text.is_empty() {
            return;
        }
        match self.last {
            None => self.ttft = Some(t),
            Some(prev) => self.itl.push(t - prev),
        }
        self.last = Some(t);
        self.chunks += 1;
        if keep {
            self.text.push_str(text);
        }
    }

    /// Reads the content and usage of one JSON payload (a stream chunk or a whole response).
    fn payload(&mut self, t: f64, v: &Value, endpoint: Endpoint, keep: bool) {
        if let Some(choice) = v["choices"].get(0) {
            let text = match endpoint {
                Endpoint::Completions => choice["text"].as_str(),
                Endpoint::Chat => choice["delta"]["content"]
                    .as_str()
                    .or_else(|| choice["message"]["content"].as_str()),
            };
            self.content(t, text.unwrap_or(""), keep);
        }
        let u = &v["usage"];
        if let (Some(p), Some(c)) = (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()) {
            self.usage = Some((p, c));
        }
    }
}

/// The `error.message` of an OpenAI-style error body, else the body itself, cut to 200 chars.
fn error_message(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_else(|| body.trim().to_string());
    msg.chars().take(200).collect()
}

/// Short failure reason of a transport error.
fn reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

impl Call<'_> {
    /// Sends the request and measures it; never fails, failures are in the record.
    pub(crate) async fn send(&self) -> RequestRecord {
        let sent = Instant::now();
        let mut p = Progress::default();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(sent, &mut p)).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(Error::RequestFailed { reason })) => Some(reason),
            Ok(Err(other)) => Some(other.to_string()),
            Err(_) => Some("timeout".to_string()),
        };
        let error_detail = error.as_ref().and(p.detail.take());
        let e2e = sent.elapsed().as_secs_f64();
        let (input, output, has_usage) = match p.usage {
            Some((i, o)) => (i, o, true),
            None => (0, p.chunks, false),
        };
        RequestRecord {
            error,
            ttft: if self.stream { p.ttft } else { Some(e2e) },
            itl: p.itl,
            e2e,
            input_tokens: input,
            output_tokens: output,
            has_usage,
            chunks: p.chunks,
            routed_to: p.routed_to,
            queue_wait_ms: p.queue_wait_ms,
            error_detail,
            generated: p.text,
            ..RequestRecord::default()
        }
    }

    /// Sends the request and reads the answer into `p`; a failure is [`Error::RequestFailed`].
    async fn exchange(&self, sent: Instant, p: &mut Progress) -> Result<(), Error> {
        let resp = self
            .client
            .post(self.url)
            .json(self.body)
            .send()
            .await
            .map_err(|e| Error::request_failed(reason(&e)))?;
        p.routed_to = resp
            .headers()
            .get(ROUTED_TO_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        p.queue_wait_ms = resp
            .headers()
            .get(QUEUE_WAIT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            p.detail = resp.text().await.ok().map(|t| error_message(&t));
            return Err(Error::request_failed(format!("http_{status}")));
        }
        if !self.stream {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| Error::request_failed(reason(&e)))?;
            p.payload(
                sent.elapsed().as_secs_f64(),
                &v,
                self.endpoint,
                self.keep_text,
            );
            return Ok(());
        }
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::request_failed(reason(&e)))?;
            for data in parser.feed(&chunk) {
                if data == "[DONE]" {
                    return if p.ttft.is_some() {
                        Ok(())
                    } else {
                        Err(Error::request_failed("no_content"))
                    };
                }
                let t = sent.elapsed().as_secs_f64();
                let v: Value =
                    serde_json::from_str(&data).map_err(|_| Error::request_failed("bad_chunk"))?;
                if v.get("error").is_some() {
                    p.detail = Some(error_message(&data));
                    return Err(Error::request_failed("stream_error"));
                }
                p.payload(t, &v, self.endpoint, self.keep_text);
            }
        }
        Err(Error::request_failed("incomplete_stream"))
    }
}
