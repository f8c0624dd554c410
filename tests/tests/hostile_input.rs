//! Bad and hostile clients: slowloris headers, oversized headers, a 64 MB body, conflicting
//! framing, absolute-form URIs and spoofed routing headers, non-UTF-8 and deeply nested JSON,
//! unknown fields, HTTP/2 prior knowledge, clients leaving mid-stream, and upstream details.
//! None may panic, hang, reach an unconfigured address or leave load counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prefix_router_tests::{
    SimConfig, completion_body, dead_url, metric_sum, model, post_json, router_yaml, start_router,
    start_sims, stop, wait_in_flight_zero, wait_until,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Generous guard against a hang; never a speed target.
const HANG: Duration = Duration::from_secs(30);

/// Reads until the peer closes or resets (whatever arrived before a reset is kept).
async fn read_all(socket: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `request` as is on a fresh connection and returns everything the router answers.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request).await.expect("write request");
    tokio::time::timeout(HANG, read_all(&mut socket))
        .await
        .expect("the router answers and closes, never hangs")
}

async fn sim_requests(sim: &vllm_sim::SimServer) -> f64 {
    let text = reqwest::get(format!("{}/metrics", sim.url()))
        .await
        .expect("sim metrics")
        .text()
        .await
        .expect("text");
    metric_sum(&text, "vllm:request_success_total", &[])
}

#[tokio::test]
async fn slowloris_headers_are_cut_off_by_the_header_read_timeout() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let extra = "timeouts:\n  header_read_ms: 300\n  shutdown_drain_ms: 2000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let socket = TcpStream::connect(router.addr()).await.expect("connect");
    let (mut read, mut write) = socket.into_split();
    let writer_done = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&writer_done);
    // A header line every 100 ms for 30 s: far past any header deadline.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(b"POST /v1/completions HTTP/1.1\r\n").await;
        for i in 0..300 {
            if write
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        done.store(true, Ordering::SeqCst);
    });
    let answer = tokio::time::timeout(Duration::from_secs(60), read_all(&mut read))
        .await
        .expect("connection closed");
    assert!(
        !writer_done.load(Ordering::SeqCst),
        "closed while the client was still trickling headers; got {answer:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    writer.abort();
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let big = "a".repeat(100 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let answer = raw(router.addr(), request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

/// Sends `head` and a 64 MB body, as a naive client does (all of it, then read the answer);
/// returns whether the whole body could be sent (no reset), and the answer.
async fn send_huge(addr: std::net::SocketAddr, head: String, chunked: bool) -> (bool, String) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let send = async {
        let chunk = vec![b' '; 64 * 1024];
        socket.write_all(head.as_bytes()).await?;
        for _ in 0..1024 {
            if chunked {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                socket.write_all(&framed).await?;
            } else {
                socket.write_all(&chunk).await?;
            }
        }
        if chunked {
            socket.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let sent = tokio::time::timeout(HANG, send)
        .await
        .expect("the router reads, never stalls the client");
    let answer = tokio::time::timeout(HANG, read_all(&mut socket))
        .await
        .expect("an answer, not a hang");
    (sent.is_ok(), answer)
}

#[tokio::test]
async fn a_64_mb_body_gets_a_413_the_client_can_read() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let declared = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    let chunked = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                   transfer-encoding: chunked\r\n\r\n"
        .to_owned();
    for (head, is_chunked) in [(declared, false), (chunked, true)] {
        let (sent, answer) = send_huge(router.addr(), head, is_chunked).await;
        assert!(
            sent,
            "the refused body is read and discarded, not reset mid-send"
        );
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.contains("\"type\":\"invalid_request_error\""),
            "{answer}"
        );
    }
    assert_eq!(sim_requests(&sims[0]).await, 0.0);
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_smuggle_nothing() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    // A body that is empty when chunked, and whose CL-framed reading hides a second request.
    let smuggled = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n\
         POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{}",
        completion_body("smuggled", 2, false).to_string().len(),
        completion_body("smuggled", 2, false)
    );
    let answer = raw(router.addr(), smuggled.as_bytes()).await;
    let first = answer.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("HTTP/1.1 400"),
        "the ambiguous request is refused: {answer}"
    );
    // Whatever follows is answered as its own request by the router, never spliced into the
    // first one's body upstream: the replica saw at most that one well-framed request.
    assert!(sim_requests(&sims[0]).await <= 1.0);
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn absolute_form_uris_and_spoofed_headers_never_choose_the_upstream() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let outsider = &sims[1];
    // Only the first replica is configured.
    let router = start_router(&router_yaml(&sims[..1], "round_robin", "")).await;
    let body = completion_body("where to?", 2, false).to_string();
    let other = outsider.addr();
    let request = format!(
        "POST http://{other}/v1/completions HTTP/1.1\r\nhost: {other}\r\n\
         x-forwarded-host: {other}\r\nx-forwarded-for: 10.0.0.1\r\nx-routed-to: {other}\r\n\
         forwarded: host={other}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(router.addr(), request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_lowercase().contains("x-routed-to: r0"),
        "{answer}"
    );
    assert_eq!(
        sim_requests(outsider).await,
        0.0,
        "the outsider got nothing"
    );
    assert_eq!(sim_requests(&sims[0]).await, 1.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn bad_bodies_are_400s_and_unknown_fields_pass_through() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "cost", "")).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());
    let chat_url = format!("{}/v1/chat/completions", router.url());
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let deep_object = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":{}1{}}}]}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (&url, b"{\"prompt\": \"\xff\xfe\"}".to_vec()),
        (&url, b"\xff\xfe\xfd".to_vec()),
        (&url, format!("{{\"prompt\": {deep}}}").into_bytes()),
        (&chat_url, deep_object.into_bytes()),
        (&url, b"{\"prompt\": 5}".to_vec()),
        (&chat_url, b"{\"messages\": []}".to_vec()),
    ];
    for (target, body) in cases {
        let r = client
            .post(target)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 400, "{target}");
        let json: serde_json::Value = r.json().await.expect("JSON error body");
        assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
    }
    let mut with_extras = completion_body("extras", 2, false);
    with_extras["vendor_extension"] = serde_json::json!({ "nested": [1, 2, { "k": null }] });
    let r = post_json(&client, &url, &with_extras).await;
    assert_eq!(r.status(), 200, "unknown fields are forwarded untouched");
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    use http_body_util::{BodyExt, Full};
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    for stream in [false, true] {
        let body = completion_body("over h2", 3, stream).to_string();
        let request = hyper::Request::post(format!("{}/v1/completions", router.url()))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let response = client.request(request).await.expect("h2 answer");
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let text = response
            .into_body()
            .collect()
            .await
            .expect("whole body")
            .to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("choices"), "{text}");
    }
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    // Real (non-zero) decode times: the generation outlives the client by far.
    let sims = start_sims(1, SimConfig::default()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "model": model(), "prompt": "a long story", "max_tokens": 4000,
        "ignore_eos": true, "stream": true
    });
    let mut response = post_json(&client, format!("{}/v1/completions", router.url()), &body).await;
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("first chunk")
        .expect("some bytes");
    assert!(!first.is_empty());
    drop(response);
    drop(client);
    wait_in_flight_zero(&router, &["r0"]).await;
    let sim_url = sims[0].url();
    wait_until(
        Duration::from_secs(10),
        "the replica stopped generating",
        || async {
            let text = reqwest::get(format!("{sim_url}/metrics"))
                .await
                .expect("sim metrics")
                .text()
                .await
                .expect("text");
            metric_sum(&text, "vllm:num_requests_running", &[]) == 0.0
        },
    )
    .await;
    router.shutdown().await;
    sims.into_iter().next().expect("one").shutdown().await;
}

#[tokio::test]
async fn upstream_details_and_addresses_stay_private_unless_configured() {
    let dead = dead_url();
    let address = dead.trim_start_matches("http://").to_owned();
    for expose in [false, true] {
        // No replica name: the default name is its address.
        let yaml = format!(
            "listen: 127.0.0.1:0\nreplicas:\n  - url: {dead}\n\
             health:\n  enabled: false\nerrors:\n  expose_upstream_details: {expose}\n"
        );
        let router = start_router(&yaml).await;
        let r = post_json(
            &reqwest::Client::new(),
            format!("{}/v1/completions", router.url()),
            &completion_body("hi", 2, false),
        )
        .await;
        assert_eq!(r.status(), 502);
        let text = r.text().await.expect("body");
        assert_eq!(text.contains(&address), expose, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(json["error"]["type"], "upstream_error", "{json}");
        router.shutdown().await;
    }
}
