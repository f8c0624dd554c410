//! Prints the KV events an engine publishes: `cargo run -p kv-events --example tail --
//! tcp://127.0.0.1:5557 [tcp://127.0.0.1:5558 START_SEQ]` (the optional part replays first).

use std::time::Duration;

use kv_events::{SubEvent, Subscriber, decode_batch, replay};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(endpoint) = args.first() else {
        eprintln!("usage: tail PUB_ENDPOINT [REPLAY_ENDPOINT START_SEQ]");
        std::process::exit(2);
    };
    if let (Some(ep), Some(start)) = (args.get(1), args.get(2)) {
        for (seq, payload) in replay(ep, start.parse()?, 10_000, Duration::from_secs(5)).await? {
            println!("replay seq={seq} {:?}", decode_batch(&payload)?);
        }
    }
    let mut sub = Subscriber::connect(endpoint, b"")?;
    while let Some(event) = sub.recv().await {
        match event {
            SubEvent::Message(m) => println!("seq={} {:?}", m.seq, decode_batch(&m.payload)?),
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
