//! Every fault knob, through the library handle, the admin endpoint and startup config.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::{Value, json};
use vllm_sim::{FaultConfig, SimConfig, StartupMode};

fn body() -> Value {
    json!({"prompt": "fault test", "max_tokens": 3})
}

#[tokio::test]
async fn fail_fraction_and_status() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    s.faults().set_fail(1.0, 503);
    let (status, v) = post(&c, &url, &body()).await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["code"], 503);
    s.faults().set_fail(1.0, 500);
    let (status, v) = post(&c, &url, &body()).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["type"], "InternalServerError");
    // Half: a seeded draw, so roughly half of 200 fail.
    s.faults().set_fail(0.5, 500);
    let mut failed = 0;
    for _ in 0..200 {
        if post(&c, &url, &body()).await.0 == 500 {
            failed += 1;
        }
    }
    assert!((60..=140).contains(&failed), "{failed} of 200 failed");
    s.faults().clear();
    assert_eq!(post(&c, &url, &body()).await.0, 200);
    // Health and metrics are not affected by request faults.
    s.faults().set_fail(1.0, 500);
    assert_eq!(
        c.get(format!("{}/health", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn stall_holds_requests_until_cleared() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    s.faults().set_stall(true);
    let spawn = || {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { post(&c, &url, &body()).await })
    };
    // A held request that its client abandons stops being held.
    let abandoned = spawn();
    wait_until("one request held", || async { s.faults().held() == 1 }).await;
    abandoned.abort();
    wait_until("the abandoned request released", || async {
        s.faults().held() == 0
    })
    .await;
    let held = [spawn(), spawn()];
    wait_until("two requests held", || async { s.faults().held() == 2 }).await;
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "stalled requests must not be answered"
    );
    s.faults().set_stall(false);
    for h in held {
        let (status, v) = h.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    assert_eq!(s.faults().held(), 0);
}

#[tokio::test]
async fn cut_stream_midway() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    s.faults().set_cut_stream_after(Some(2));
    let r = stream(
        &c,
        &url,
        &json!({"prompt": "x", "max_tokens": 10, "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.error, "the body must end with an error, not cleanly");
    assert!(!r.raw.contains("[DONE]"));
    assert_eq!(r.raw.matches("data: ").count(), 2, "{}", r.raw);
    s.faults().set_cut_stream_after(None);
    let r = stream(
        &c,
        &url,
        &json!({"prompt": "x", "max_tokens": 10, "stream": true}),
    )
    .await;
    assert!(!r.error && r.raw.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn refuse_connections_and_recover() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    assert_eq!(post(&c, &url, &body()).await.0, 200);
    s.faults().set_refuse_connections(true);
    // Open connections are closed in the background: wait for the first refusal.
    wait_until("a refused request", || async {
        c.post(&url).json(&body()).send().await.is_err()
    })
    .await;
    // Both the pooled keep-alive connection and new ones are closed.
    for _ in 0..3 {
        let r = c.post(&url).json(&body()).send().await;
        assert!(
            r.is_err(),
            "refused connection must fail, got {:?}",
            r.map(|r| r.status())
        );
    }
    s.faults().set_refuse_connections(false);
    assert_eq!(post(&c, &url, &body()).await.0, 200);
}

#[tokio::test]
async fn admin_endpoint_sets_and_clears_faults() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let admin = format!("{}/admin/faults", s.url());
    let url = format!("{}/v1/completions", s.url());
    let (status, state) = post(
        &c,
        &admin,
        &json!({"fail_fraction": 1.0, "fail_status": 503}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(state["fail_fraction"], 1.0);
    assert_eq!(post(&c, &url, &body()).await.0, 503);
    let v: Value = c.get(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["fail_status"], 503);
    assert_eq!(
        post(&c, &admin, &json!({"clear": true, "cut_stream_after": 1}))
            .await
            .0,
        200
    );
    assert_eq!(post(&c, &url, &body()).await.0, 200);
    let r = stream(
        &c,
        &url,
        &json!({"prompt": "x", "max_tokens": 5, "stream": true}),
    )
    .await;
    assert!(r.error);
    // Bad updates are 400s and change nothing.
    assert_eq!(
        post(&c, &admin, &json!({"fail_fraction": 2.0})).await.0,
        400
    );
    assert_eq!(
        post(&c, &admin, &json!({"no_such_knob": true})).await.0,
        400
    );
    assert_eq!(s.faults().state().fail_fraction, 0.0);
    // Refusing for a while through the admin endpoint recovers by itself.
    assert_eq!(
        post(
            &c,
            &admin,
            &json!({"clear": true, "refuse_connections": true, "refuse_for_ms": 300})
        )
        .await
        .0,
        200
    );
    assert!(s.faults().state().refuse_connections, "refusing now");
    wait_until("refusal over by itself", || async {
        !s.faults().state().refuse_connections
    })
    .await;
    assert_eq!(post(&c, &url, &body()).await.0, 200);
}

#[tokio::test]
async fn slow_start_answers_503_until_ready() {
    let cfg = SimConfig {
        faults: FaultConfig {
            // Long enough for the first requests below to come before it ends.
            startup_delay_ms: 2000,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    let health = format!("{}/health", s.url());
    assert_eq!(c.get(&health).send().await.unwrap().status(), 503);
    let (status, v) = post(&c, &format!("{}/v1/completions", s.url()), &body()).await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "ServiceUnavailableError");
    wait_until("ready after the startup delay", || async {
        c.get(&health).send().await.unwrap().status() == 200
    })
    .await;
    assert_eq!(
        post(&c, &format!("{}/v1/completions", s.url()), &body())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn slow_start_listens_late() {
    let cfg = SimConfig {
        faults: FaultConfig {
            startup_delay_ms: 2000,
            startup_mode: StartupMode::ListenLate,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    let health = format!("{}/health", s.url());
    let early = c.get(&health).send().await;
    assert!(early.unwrap_err().is_connect(), "nothing listens yet");
    wait_until("listening after the startup delay", || async {
        c.get(&health).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn faults_from_startup_config() {
    let cfg = SimConfig {
        faults: FaultConfig {
            fail_fraction: 1.0,
            fail_status: 503,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    assert_eq!(
        post(&c, &format!("{}/v1/completions", s.url()), &body())
            .await
            .0,
        503
    );
    assert!(
        vllm_sim::start(SimConfig {
            faults: FaultConfig {
                fail_fraction: 1.5,
                ..FaultConfig::default()
            },
            ..SimConfig::zero_delay()
        })
        .await
        .is_err()
    );
}

#[tokio::test]
async fn shutdown_drains_and_closes() {
    let s = start(SimConfig {
        decode_base_ms: 5.0,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let inflight = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(
            async move { post(&c, &url, &json!({"prompt": "x", "max_tokens": 100})).await },
        )
    };
    // 100 steps of 5 ms: the request is still generating when the shutdown starts.
    wait_until("the request is running", || async {
        queue_gauges(&c, &s).await.0 == 1.0
    })
    .await;
    let addr = s.addr();
    s.shutdown().await;
    assert_eq!(inflight.await.unwrap().0, 200, "in-flight request drained");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn client_disconnect_aborts_and_frees() {
    let s = start(SimConfig {
        decode_base_ms: 5.0,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    for stream in [true, false] {
        let body = json!({"prompt": prompt("gone", 40), "max_tokens": 1000, "stream": stream});
        let (c2, url) = (c.clone(), url.clone());
        // 1000 steps of 5 ms: the client leaves long before the end.
        let request = tokio::spawn(async move {
            let mut r = c2.post(&url).json(&body).send().await.unwrap();
            while let Ok(Some(_)) = r.chunk().await {}
        });
        wait_until("the request is running", || async {
            queue_gauges(&c, &s).await.0 == 1.0
        })
        .await;
        request.abort();
        wait_until("the engine aborted it", || async {
            queue_gauges(&c, &s).await == (0.0, 0.0)
        })
        .await;
    }
    let m = metrics_text(&c, &s).await;
    let l = [("model_name", "vllm-sim")];
    assert_eq!(
        sample(&m, "vllm:num_requests_running", &l),
        Some(0.0),
        "{m}"
    );
    assert_eq!(sample(&m, "vllm:kv_cache_usage_perc", &l), Some(0.0));
    let aborted = [("model_name", "vllm-sim"), ("finished_reason", "abort")];
    assert_eq!(
        sample(&m, "vllm:request_success_total", &aborted),
        Some(2.0)
    );
}
