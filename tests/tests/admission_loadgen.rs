//! loadgen's priority benchmark path: a sweep over queue policies and caps through the
//! in-process router writes one CSV row per point with the router's queue wait per class.

use loadgen::CancellationToken;
use loadgen::arrivals::RequestRate;
use loadgen::bench::BenchConfig;
use loadgen::dataset::DatasetConfig;
use loadgen::output::{decode_nested, read_csv};
use loadgen::sweep::{AdmissionSettings, Replicas, SweepPlan, run_sweep, schedulers};
use vllm_sim::{SchedulingPolicy, SimConfig};

#[tokio::test]
async fn sweep_compares_queue_policies_under_caps_per_priority_class() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("priority.csv");
    let mut sim = SimConfig::zero_delay();
    sim.scheduling_policy = SchedulingPolicy::Priority;
    sim.decode_base_ms = 2.0;
    let plan = SweepPlan {
        policies: vec!["round_robin".into()],
        schedulers: schedulers(&["fcfs".into(), "priority".into()], &["static".into()]),
        admission: AdmissionSettings {
            cap_requests: 2,
            weights: Vec::new(),
            max_wait_ms: None,
        },
        rates: vec![RequestRate::Infinite],
        bench: BenchConfig {
            dataset: DatasetConfig {
                num_prompts: 24,
                max_output_len: 10,
                priority_mix: Some("0:0.5,1:0.5".parse().unwrap()),
                ..DatasetConfig::default()
            },
            progress: false,
            ..BenchConfig::default()
        },
        router_base: None,
        replicas: Replicas::Simulated {
            config: Box::new(sim),
            count: 2,
        },
        jsonl: None,
        csv: Some(csv.clone()),
    };
    let results = run_sweep(&plan, CancellationToken::new()).await.unwrap();
    assert_eq!(results.len(), 2);
    let rows = read_csv(&csv).unwrap();
    let points: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["queue_policy"].as_str(), r["caps"].as_str()))
        .collect();
    assert_eq!(points, [("fcfs", "static"), ("priority", "static")]);
    for (row, summary) in rows.iter().zip(&results) {
        assert_eq!(row["completed"], "24", "{row:?}");
        // 24 requests at once onto 2 replicas x 2 slots: most of them waited in the router.
        let waited: f64 = row["queue_wait_ms_max"].parse().unwrap();
        assert!(waited > 0.0, "{row:?}");
        let classes = decode_nested(&row["per_priority"]);
        let names: Vec<&str> = classes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["0", "1"]);
        for (_, fields) in &classes {
            assert!(fields["request_throughput"] > 0.0);
            assert!(fields.contains_key("queue_wait_p99"));
        }
        assert_eq!(summary.per_priority.len(), 2);
    }
}
