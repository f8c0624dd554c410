//! `ingest`: documents warmed straight on the replicas by a batch job (past the router), then
//! queried through one router.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};

use crate::bench::{Bench, Oracle, Outcome, REPLICAS, Tally, join_all, mode, post, tokens};

/// Tokens of one document.
const DOC: u32 = 2048;
/// Tokens of one question about a document.
const QUESTION: u32 = 64;
/// Users asking at the same time.
const USERS: usize = 12;

/// One run of `docs` documents, `per_doc` questions each, `think` ms after a document is in.
pub(crate) async fn run(
    precise: bool,
    docs: u32,
    per_doc: u32,
    blocks: usize,
    think: u64,
) -> Outcome {
    let b = Bench::start(1, precise, blocks).await;
    let router = b.router_urls()[0].clone();
    let sim_urls = b.sim_urls();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let users = Arc::new(Semaphore::new(USERS));
    let started = Instant::now();
    let mut workers = Vec::new();
    for r in 0..REPLICAS as u32 {
        let (client, sim, router, tally, oracle, users) = (
            b.client.clone(),
            sim_urls[r as usize].clone(),
            router.clone(),
            tally.clone(),
            oracle.clone(),
            users.clone(),
        );
        // The batch job's worker for replica r: documents r, r+4, ... one at a time; users
        // ask about a document once it is in, while the next one is being ingested.
        workers.push(tokio::spawn(async move {
            let mut asking: VecDeque<tokio::task::JoinHandle<()>> = VecDeque::new();
            for d in (r..docs).step_by(REPLICAS) {
                while asking.len() > per_doc as usize {
                    if let Some(t) = asking.pop_front() {
                        t.await.expect("bench task panicked");
                    }
                }
                let doc = tokens(1_000_000 + d, DOC);
                post(&client, &sim, &doc).await;
                oracle.lock().await.observe(&doc);
                for q in 0..per_doc {
                    let mut prompt = doc.clone();
                    prompt.extend(tokens(2_000_000 + d * 16 + q, QUESTION));
                    let (client, router, tally, oracle, users) = (
                        client.clone(),
                        router.clone(),
                        tally.clone(),
                        oracle.clone(),
                        users.clone(),
                    );
                    asking.push_back(tokio::spawn(async move {
                        if think > 0 {
                            tokio::time::sleep(Duration::from_millis(think)).await;
                        }
                        let _user = users.acquire_owned().await.expect("semaphore never closed");
                        let best = oracle.lock().await.observe(&prompt);
                        let got = post(&client, &router, &prompt).await;
                        tally.lock().await.add(got, best);
                    }));
                }
            }
            join_all(asking).await;
        }));
    }
    join_all(workers).await;
    let wall = started.elapsed().as_secs_f64();
    let label = format!(
        "{:>11} ingest docs={docs} queries/doc={per_doc} blocks={blocks}",
        mode(precise)
    );
    let out = tally.lock().await.print(&label, wall);
    b.stop().await;
    out
}
