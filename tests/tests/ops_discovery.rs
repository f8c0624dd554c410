//! Discovery through real sockets: a DNS server on loopback whose A records the test rewrites
//! while traffic flows, and a fake Kubernetes API server (axum) serving a recorded-style
//! EndpointSlice list and a watch stream the test feeds.

#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use prefix_router_tests::{
    SimConfig, SimServer, completion_body, in_flight, routed_header, start_router, stop, wait_until,
};
use serde_json::{Value, json};
use tokio::{net::UdpSocket, sync::mpsc};

/// A DNS server answering every A query with the current records (NXDOMAIN when none).
async fn dns_server(records: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let query = &buf[..n];
            // The question: labels up to the root, then type and class.
            let mut end = 12;
            while query[end] != 0 {
                end += 1 + usize::from(query[end]);
            }
            let question = &query[12..end + 5];
            let ips = records.lock().unwrap().clone();
            let mut out = Vec::new();
            out.extend_from_slice(&query[..2]);
            out.extend_from_slice(&[0x81, if ips.is_empty() { 0x83 } else { 0x80 }]);
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(question);
            for ip in ips {
                out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                out.extend_from_slice(&ip.octets());
            }
            let _ = socket.send_to(&out, peer).await;
        }
    });
    addr
}

/// Three replicas on 127.0.0.2-4, all on one port (DNS gives addresses, config the port).
async fn sims_on_one_port() -> Vec<SimServer> {
    let on = |host: [u8; 4], port: u16| SimConfig {
        host: Ipv4Addr::from(host).into(),
        port,
        ..SimConfig::zero_delay()
    };
    let first = vllm_sim::start(on([127, 0, 0, 2], 0)).await.unwrap();
    let port = first.addr().port();
    let mut sims = vec![first];
    for last in [3, 4] {
        sims.push(vllm_sim::start(on([127, 0, 0, last], port)).await.unwrap());
    }
    sims
}

fn names(router: &prefix_router_tests::RouterServer) -> Vec<String> {
    let mut names: Vec<String> = router
        .replicas()
        .snapshot()
        .all()
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn dns_records_added_and_removed_while_traffic_flows() {
    let sims = sims_on_one_port().await;
    let port = sims[0].addr().port();
    let ip = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let records = Arc::new(Mutex::new(vec![ip(2), ip(3)]));
    let dns = dns_server(Arc::clone(&records)).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\npolicy: {{name: round_robin}}\n\
         health: {{interval_ms: 50, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         timeouts: {{shutdown_drain_ms: 2000}}\n\
         discovery:\n  dns:\n    name: vllm.llm.svc.cluster.local\n    port: {port}\n    interval_ms: 50\n    nameserver: {dns}\n"
    );
    let router = start_router(&yaml).await;
    let name = |last: u8| format!("127.0.0.{last}:{port}");
    wait_until(
        Duration::from_secs(10),
        "first two records joined",
        || async { names(&router) == [name(2), name(3)] },
    )
    .await;

    // Traffic flows while the records change.
    let url = router.url();
    let failures = Arc::new(AtomicUsize::new(0));
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let traffic = {
        let (failures, served) = (Arc::clone(&failures), Arc::clone(&served));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !*stop_rx.borrow_and_update() {
                let response = client
                    .post(format!("{url}/v1/completions"))
                    .json(&completion_body("dns", 1, false))
                    .send()
                    .await
                    .unwrap();
                if response.status() == 200 {
                    let to = routed_header(&response);
                    served.lock().unwrap().push(to);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    wait_until(Duration::from_secs(10), "traffic on both", || async {
        let s = served.lock().unwrap();
        s.contains(&name(2)) && s.contains(&name(3))
    })
    .await;

    *records.lock().unwrap() = vec![ip(3), ip(4)];
    wait_until(
        Duration::from_secs(10),
        "127.0.0.2 out, 127.0.0.4 in",
        || async { names(&router) == [name(3), name(4)] },
    )
    .await;
    served.lock().unwrap().clear();
    wait_until(
        Duration::from_secs(10),
        "traffic reaches the new record",
        || async { served.lock().unwrap().contains(&name(4)) },
    )
    .await;
    assert!(
        !served.lock().unwrap().contains(&name(2)),
        "no traffic to a removed record"
    );

    stop_tx.send(true).unwrap();
    traffic.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed while records changed"
    );
    // NXDOMAIN: no replicas from DNS.
    records.lock().unwrap().clear();
    wait_until(Duration::from_secs(10), "all drained", || async {
        names(&router).is_empty()
    })
    .await;
    stop(sims, router).await;
}

/// The fake API server's state: the list it serves and the watch stream the test feeds.
#[derive(Clone)]
struct FakeApi {
    list: Arc<Mutex<Value>>,
    watch: Arc<Mutex<Option<mpsc::Receiver<Value>>>>,
    unauthorized: Arc<AtomicUsize>,
}

async fn endpointslices(
    State(api): State<FakeApi>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sa-token") {
        api.unauthorized.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let has = |k: &str, v: &str| query.iter().any(|(qk, qv)| qk == k && qv == v);
    assert!(
        has("labelSelector", "kubernetes.io/service-name=vllm"),
        "{query:?}"
    );
    if !has("watch", "1") {
        return axum::Json(api.list.lock().unwrap().clone()).into_response();
    }
    let receiver = api.watch.lock().unwrap().take();
    let Some(receiver) = receiver else {
        return StatusCode::GONE.into_response();
    };
    // One watch line per event the test sends; the stream stays open until the test ends.
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(format!("{event}\n")), receiver))
    });
    Body::from_stream(stream).into_response()
}

fn slice(name: &str, pod: &str, port: u16, ready: bool, terminating: bool, rv: &str) -> Value {
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": { "name": name, "resourceVersion": rv, "labels": { "kubernetes.io/service-name": "vllm" } },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": ["127.0.0.1"],
            "conditions": { "ready": ready, "serving": ready || terminating, "terminating": terminating },
            "targetRef": { "kind": "Pod", "name": pod, "namespace": "llm" }
        }],
        "ports": [{ "name": "metrics", "port": 1, "protocol": "TCP" }, { "name": "http", "port": port, "protocol": "TCP" }]
    })
}

#[tokio::test]
async fn kubernetes_endpointslices_join_when_ready_and_drain_when_terminating() {
    let sims = prefix_router_tests::start_sims(2, SimConfig::zero_delay()).await;
    let (pa, pb) = (sims[0].addr().port(), sims[1].addr().port());
    let (events, receiver) = mpsc::channel(16);
    let api = FakeApi {
        list: Arc::new(Mutex::new(json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": { "resourceVersion": "10" },
            "items": [slice("vllm-a", "vllm-0", pa, true, false, "9"), slice("vllm-b", "vllm-1", pb, false, false, "10")]
        }))),
        watch: Arc::new(Mutex::new(Some(receiver))),
        unauthorized: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/llm/endpointslices",
            get(endpointslices),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sa-token\n").unwrap();

    let yaml = format!(
        "listen: 127.0.0.1:0\npolicy: {{name: round_robin}}\n\
         health: {{interval_ms: 50, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         timeouts: {{shutdown_drain_ms: 2000}}\n\
         discovery:\n  kubernetes:\n    service: vllm\n    namespace: llm\n    port_name: http\n    api_server: http://{api_addr}\n    token_file: {}\n    retry_ms: 100\n",
        token.display()
    );
    let router = start_router(&yaml).await;
    wait_until(Duration::from_secs(10), "the ready pod joined", || async {
        names(&router) == ["vllm-0"]
    })
    .await;

    events
        .send(json!({ "type": "MODIFIED", "object": slice("vllm-b", "vllm-1", pb, true, false, "11") }))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "vllm-1 ready and joined",
        || async { names(&router) == ["vllm-0", "vllm-1"] },
    )
    .await;

    // A request in flight on vllm-0 when it starts terminating.
    sims[0].faults().set_stall(true);
    let url = router.url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let held = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                let response = client
                    .post(format!("{url}/v1/completions"))
                    .json(&completion_body("held", 1, false))
                    .send()
                    .await
                    .unwrap();
                // Round robin: retry until one lands on the stalled pod.
                if response.headers()["x-routed-to"] == "vllm-0" {
                    return response.status().as_u16();
                }
            }
        })
    };
    wait_until(
        Duration::from_secs(10),
        "request held on vllm-0",
        || async { in_flight(&router, "vllm-0").await == 1.0 },
    )
    .await;
    events
        .send(json!({ "type": "MODIFIED", "object": slice("vllm-a", "vllm-0", pa, false, true, "12") }))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "vllm-0 draining", || async {
        router
            .replicas()
            .snapshot()
            .by_name("vllm-0")
            .is_some_and(|r| r.serving.is_draining())
    })
    .await;
    for _ in 0..3 {
        let response = client
            .post(format!("{url}/v1/completions"))
            .json(&completion_body("new", 1, false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-routed-to"], "vllm-1");
    }
    sims[0].faults().set_stall(false);
    assert_eq!(held.await.unwrap(), 200, "the in-flight request finished");
    wait_until(Duration::from_secs(10), "vllm-0 removed", || async {
        names(&router) == ["vllm-1"]
    })
    .await;
    events
        .send(json!({ "type": "DELETED", "object": slice("vllm-b", "vllm-1", pb, true, false, "13") }))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "slice deleted: no replicas",
        || async { names(&router).is_empty() },
    )
    .await;
    assert_eq!(
        api.unauthorized.load(Ordering::Relaxed),
        0,
        "the token was sent"
    );
    stop(sims, router).await;
}
