//! Publisher, reconnecting subscriber and replay over real loopback sockets.

use std::time::Duration;

use kv_events::{Publisher, PublisherConfig, ReplayVersion, SubEvent, Subscriber, replay};

const LONG: Duration = Duration::from_secs(20);

async fn next_message(sub: &mut Subscriber) -> (u64, Vec<u8>) {
    loop {
        match tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("a message in time")
        {
            // `sync` may have sent more probes than the one it waited for.
            Some(SubEvent::Message(m)) if m.seq == SYNC_SEQ => continue,
            Some(SubEvent::Message(m)) => return (m.seq, m.payload),
            Some(_) => continue,
            None => panic!("subscriber ended"),
        }
    }
}

async fn connected(sub: &mut Subscriber) {
    loop {
        match tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("connects in time")
        {
            Some(SubEvent::Connected) => return,
            Some(_) => continue,
            None => panic!("subscriber ended"),
        }
    }
}

/// Sequence number of `sync`'s probe messages, which `next_message` skips.
const SYNC_SEQ: u64 = u64::MAX - 1;

/// Publishes until the subscriber has one message (its subscription reached the publisher).
async fn sync(publisher: &Publisher, sub: &mut Subscriber) {
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = ticker.tick() => publisher.publish(SYNC_SEQ, b"sync".to_vec(), true),
            ev = sub.recv() => if let Some(SubEvent::Message(_)) = ev { return },
        }
    }
}

#[tokio::test]
async fn live_messages_flow_and_a_lost_one_is_replayed() {
    for version in [ReplayVersion::WithTopic, ReplayVersion::Legacy] {
        let publisher = Publisher::bind(PublisherConfig {
            endpoint: "tcp://127.0.0.1:0".into(),
            replay_endpoint: Some("tcp://127.0.0.1:0".into()),
            topic: b"kv@r0".to_vec(),
            buffer_steps: 3,
            replay_version: version,
            ..PublisherConfig::default()
        })
        .await
        .expect("bind");
        let endpoint = format!("tcp://{}", publisher.local_addr());
        let replay_ep = format!("tcp://{}", publisher.replay_addr().expect("replay bound"));
        let mut sub = Subscriber::connect(&endpoint, b"kv").expect("endpoint parses");
        connected(&mut sub).await;
        sync(&publisher, &mut sub).await;
        publisher.publish(0, b"zero".to_vec(), true);
        publisher.publish(1, b"one".to_vec(), false);
        publisher.publish(2, b"two".to_vec(), true);
        assert_eq!(next_message(&mut sub).await, (0, b"zero".to_vec()));
        assert_eq!(
            next_message(&mut sub).await,
            (2, b"two".to_vec()),
            "seq 1 was lost"
        );
        let got = replay(&replay_ep, 1, 10, LONG)
            .await
            .expect("replay answers");
        assert_eq!(
            got,
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())],
            "{version:?}"
        );
        // The buffer is bounded: 3 batches, the oldest went first.
        publisher.publish(3, b"three".to_vec(), true);
        let got = replay(&replay_ep, 0, 10, LONG)
            .await
            .expect("replay answers");
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            replay(&replay_ep, 0, 1, LONG).await.expect("replay").len(),
            1,
            "bounded by the caller"
        );
    }
}

#[tokio::test]
async fn subscriber_only_gets_its_topic_and_reconnects_after_a_restart() {
    let publisher = Publisher::bind(PublisherConfig::default())
        .await
        .expect("bind");
    let addr = publisher.local_addr();
    let endpoint = format!("tcp://{addr}");
    let mut other = Subscriber::connect(&endpoint, b"something-else").expect("parses");
    let mut sub = Subscriber::connect(&endpoint, b"").expect("parses");
    connected(&mut other).await;
    connected(&mut sub).await;
    sync(&publisher, &mut sub).await;
    publisher.publish(0, b"a".to_vec(), true);
    assert_eq!(next_message(&mut sub).await.0, 0);
    // The topic is empty: a subscription to another prefix gets nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), async {
            loop {
                if let Some(SubEvent::Message(_)) = other.recv().await {
                    return;
                }
            }
        })
        .await
        .is_err()
    );
    drop(publisher);
    loop {
        match tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("notices the drop")
        {
            Some(SubEvent::Disconnected(_)) => break,
            Some(_) => continue,
            None => panic!("ended"),
        }
    }
    let again = Publisher::bind(PublisherConfig {
        endpoint: endpoint.clone(),
        ..PublisherConfig::default()
    })
    .await
    .expect("rebind the same port");
    connected(&mut sub).await;
    sync(&again, &mut sub).await;
    again.publish(0, b"restarted".to_vec(), true);
    assert_eq!(next_message(&mut sub).await, (0, b"restarted".to_vec()));
}

#[tokio::test]
async fn bad_endpoints_are_errors() {
    assert!(Subscriber::connect("ipc:///tmp/x", b"").is_err());
    assert!(Subscriber::connect("tcp://127.0.0.1", b"").is_err());
    assert!(
        replay("tcp://127.0.0.1:notaport", 0, 1, LONG)
            .await
            .is_err()
    );
}
