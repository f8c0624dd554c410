//! The `loadgen` binary: help, flag errors, and Ctrl-C still writing results.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vllm_sim::{FaultConfig, SimConfig};

const BIN: &str = env!("CARGO_BIN_EXE_loadgen");

#[test]
fn help_explains_flags_and_subcommands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--base-url",
        "--max-concurrency",
        "--request-rate",
        "--endpoint",
        "--dataset-name",
        "--num-prompts",
        "--max-conversations",
        "--min-messages",
        "--burstiness",
        "--with-warmup",
        "--disable-ignore-eos",
        "--disable-stream",
        "--priority-mix",
        "--slo-ttft-ms",
        "--slo-tpot-ms",
        "--replica-urls",
        "--tokenizer",
        "--prefill-baseline",
        "--output-file",
        "sweep",
        "report",
        "demo",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn bad_input_exits_nonzero_with_a_message() {
    let out = Command::new(BIN)
        .args(["--request-rate", "fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--request-rate"));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("nope.csv");
    let out = Command::new(BIN).arg("report").arg(&csv).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.csv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_sending_and_still_writes_results() {
    // The replica holds every request: only Ctrl-C and the drain timeout end the run.
    let sim = vllm_sim::start(SimConfig {
        faults: FaultConfig {
            stall: true,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let child = Command::new(BIN)
        .args([
            "--base-url",
            &sim.url(),
            "--num-prompts",
            "500",
            "--request-rate",
            "20",
        ])
        .args(["--drain-timeout-secs", "1", "--model", "m", "--output-file"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the replica holds some of the run's requests (polled, generous deadline).
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.faults().held() == 0 {
        assert!(Instant::now() < deadline, "no request reached the replica");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The drain timeout (1 s) ends it; the deadline only catches a run that never stops.
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("loadgen stops after Ctrl-C")
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Interrupted:"));
    let line = std::fs::read_to_string(&out).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["interrupted"], true);
    let failed = v["client"]["failed"].as_u64().unwrap();
    assert!(failed > 0 && failed < 500, "sent {failed}");
    assert_eq!(
        v["client"]["failed_by_reason"]["interrupted"].as_u64(),
        Some(failed)
    );
    assert!(dir.path().join("r.csv").exists());
    sim.shutdown().await;
}
