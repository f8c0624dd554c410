//! KV-cache events as vLLM publishes them (`--kv-events-config`): every block the prefix cache
//! stores or evicts, and cache resets, as `BlockStored` / `BlockRemoved` / `AllBlocksCleared`
//! batches (one per engine step) on a ZMQ PUB socket, with `sha256_cbor` block hashes from the
//! default seed and an optional replay socket. Fault knobs drop a fraction of the messages on
//! the wire (they stay replayable) and restart the sequence as an engine restart would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use kv_events::hash::{self, BlockDigest, DEFAULT_SEED};
use kv_events::idmap::IdMap;
use kv_events::{
    BlockHash, BlockRemoved, BlockStored, EventBatch, KvEvent, Layout, Medium, Publisher,
    PublisherConfig, ReplayVersion, encode_batch,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::error::SimError;

/// Event layout flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KvEncoding {
    /// Positional arrays (vLLM up to 0.23).
    Array,
    /// Maps with `"type"` (vLLM 0.24+).
    #[default]
    Map,
}

/// Block hash form flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KvHashForm {
    /// Unsigned 64-bit (vLLM's default).
    #[default]
    Int,
    /// 32-byte digests (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0`).
    Bytes,
}

/// Replay reply layout flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KvReplayVersion {
    /// `[b"", seq, payload]` (up to vLLM 0.25).
    Legacy,
    /// `[b"", topic, seq, payload]` (vLLM 0.26+).
    #[default]
    Topic,
}

/// KV-cache event flags (off unless `--kv-events-port` is given).
#[derive(Debug, Clone, Args, PartialEq)]
pub struct KvEventsConfig {
    /// Publish KV-cache events on this PUB port (0 = ephemeral); replica i uses port + i.
    #[arg(long)]
    pub kv_events_port: Option<u16>,
    /// Serve replays on this ROUTER port (0 = ephemeral); replica i uses port + i.
    #[arg(long)]
    pub kv_events_replay_port: Option<u16>,
    /// Event layout.
    #[arg(long, value_enum, default_value_t = KvEncoding::Map)]
    pub kv_events_encoding: KvEncoding,
    /// Block hash form.
    #[arg(long, value_enum, default_value_t = KvHashForm::Int)]
    pub kv_events_hash: KvHashForm,
    /// Replay reply layout.
    #[arg(long, value_enum, default_value_t = KvReplayVersion::Topic)]
    pub kv_events_replay_version: KvReplayVersion,
    /// Topic frame of every message.
    #[arg(long, default_value = "")]
    pub kv_events_topic: String,
    /// Batches kept for replay.
    #[arg(long, default_value_t = 10_000)]
    pub kv_events_buffer_steps: usize,
    /// Fault: fraction (0..=1) of messages lost on the wire (still replayable).
    #[arg(long, default_value_t = 0.0)]
    pub kv_events_drop_fraction: f64,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        *crate::SimConfig::default().kv_events
    }
}

impl KvEventsConfig {
    /// Checks the flags.
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.kv_events_drop_fraction) {
            return Err(SimError::Config(format!(
                "kv_events_drop_fraction must be within 0..=1, got {}",
                self.kv_events_drop_fraction
            )));
        }
        Ok(())
    }
}

/// Runtime knobs shared by the HTTP side and the engine.
#[derive(Debug)]
pub struct KvControl {
    drop_bits: AtomicU64,
    next_seq: AtomicU64,
    subscribed: Arc<AtomicUsize>,
    /// PUB endpoint, `tcp://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Replay endpoint, if any.
    pub replay_endpoint: Option<String>,
}

impl KvControl {
    /// Sets the fraction of messages dropped on the wire (clamped to 0..=1).
    pub fn set_drop_fraction(&self, f: f64) {
        let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
        self.drop_bits.store(f.to_bits(), Ordering::Relaxed);
    }

    /// The fraction of messages dropped on the wire.
    pub fn drop_fraction(&self) -> f64 {
        f64::from_bits(self.drop_bits.load(Ordering::Relaxed))
    }

    /// Subscribers whose subscription has arrived (what is published before is lost to them).
    pub fn subscribers(&self) -> usize {
        self.subscribed.load(Ordering::Acquire)
    }

    /// The sequence number the next batch will carry (so `next_seq - 1` is the last sent).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire)
    }
}

/// The engine-side publisher of one replica: owned by its scheduler.
pub(crate) struct KvPublisher {
    publisher: Publisher,
    control: Arc<KvControl>,
    layout: Layout,
    form: KvHashForm,
    block_size: u32,
    none: BlockDigest,
    /// Digest of every block the cache holds, by the engine's own hash.
    digests: IdMap<BlockDigest>,
    pending: Vec<KvEvent>,
    /// Engine hash of the last block appended to the pending `BlockStored`, to extend it.
    last_stored: Option<u64>,
    seq: u64,
    rng: SmallRng,
}

impl std::fmt::Debug for KvPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvPublisher")
            .field("endpoint", &self.control.endpoint)
            .field("seq", &self.seq)
            .finish()
    }
}

fn endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

impl KvPublisher {
    /// Binds the sockets when `--kv-events-port` is set.
    pub(crate) async fn bind(
        cfg: &KvEventsConfig,
        block_size: usize,
        seed: u64,
    ) -> Result<Option<Self>, SimError> {
        let Some(port) = cfg.kv_events_port else {
            return Ok(None);
        };
        let publisher = Publisher::bind(PublisherConfig {
            endpoint: endpoint(port),
            replay_endpoint: cfg.kv_events_replay_port.map(endpoint),
            topic: cfg.kv_events_topic.as_bytes().to_vec(),
            buffer_steps: cfg.kv_events_buffer_steps,
            hwm: 100_000,
            replay_version: match cfg.kv_events_replay_version {
                KvReplayVersion::Legacy => ReplayVersion::Legacy,
                KvReplayVersion::Topic => ReplayVersion::WithTopic,
            },
        })
        .await
        .map_err(|e| SimError::Config(format!("kv events: {e}")))?;
        let control = Arc::new(KvControl {
            drop_bits: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            subscribed: publisher.subscribed(),
            endpoint: endpoint(publisher.local_addr().port()),
            replay_endpoint: publisher.replay_addr().map(|a| endpoint(a.port())),
        });
        control.set_drop_fraction(cfg.kv_events_drop_fraction);
        Ok(Some(Self {
            publisher,
            control,
            layout: match cfg.kv_events_encoding {
                KvEncoding::Array => Layout::Array,
                KvEncoding::Map => Layout::Map,
            },
            form: cfg.kv_events_hash,
            block_size: block_size as u32,
            none: hash::none_hash(DEFAULT_SEED),
            digests: IdMap::default(),
            pending: Vec::new(),
            last_stored: None,
            seq: 0,
            rng: SmallRng::seed_from_u64(seed ^ 0x6b76_6576),
        }))
    }

    /// The shared knobs and endpoints.
    pub(crate) fn control(&self) -> Arc<KvControl> {
        self.control.clone()
    }

    fn wire(&self, d: &BlockDigest) -> BlockHash {
        match self.form {
            KvHashForm::Int => BlockHash::Int(hash::event_int(d)),
            KvHashForm::Bytes => BlockHash::Digest(d.to_vec()),
        }
    }

    /// Digest of block `i` of a sequence (engine hashes `hashes`, tokens `tokens`): chained
    /// from the nearest block whose digest is known.
    fn digest_of(&self, hashes: &[u64], tokens: &[u32], i: usize) -> BlockDigest {
        let bs = self.block_size as usize;
        let mut known = i + 1;
        let mut digest = self.none;
        while known > 0 {
            if let Some(d) = self.digests.get(&hashes[known - 1]) {
                digest = *d;
                break;
            }
            known -= 1;
        }
        for k in known..=i {
            digest = hash::block_hash(&digest, &tokens[k * bs..(k + 1) * bs], None);
        }
        digest
    }

    /// Block `i` of a sequence entered the cache.
    pub(crate) fn stored(&mut self, hashes: &[u64], tokens: &[u32], i: usize) {
        let digest = self.digest_of(hashes, tokens, i);
        self.digests.insert(hashes[i], digest);
        let bs = self.block_size as usize;
        let block_tokens = &tokens[i * bs..(i + 1) * bs];
        let parent = i.checked_sub(1).map(|p| hashes[p]);
        let extend = parent.is_some() && parent == self.last_stored;
        let wire = self.wire(&digest);
        match self.pending.last_mut() {
            Some(KvEvent::BlockStored(e)) if extend => {
                e.block_hashes.push(wire);
                e.token_ids.extend_from_slice(block_tokens);
            }
            _ => {
                let parent_block_hash =
                    parent.map(|_| self.wire(&self.digest_of(hashes, tokens, i - 1)));
                self.pending.push(KvEvent::BlockStored(BlockStored {
                    block_hashes: vec![wire],
                    parent_block_hash,
                    token_ids: block_tokens.to_vec(),
                    block_size: self.block_size,
                    medium: Some(Medium::Gpu),
                    ..BlockStored::default()
                }));
            }
        }
        self.last_stored = Some(hashes[i]);
    }

    /// Blocks with these engine hashes left the cache.
    pub(crate) fn removed(&mut self, evicted: &[u64]) {
        let digests: Vec<BlockDigest> = evicted
            .iter()
            .filter_map(|h| self.digests.remove(h))
            .collect();
        let hashes: Vec<BlockHash> = digests.iter().map(|d| self.wire(d)).collect();
        if hashes.is_empty() {
            return;
        }
        self.last_stored = None;
        self.pending.push(KvEvent::BlockRemoved(BlockRemoved {
            block_hashes: hashes,
            medium: Some(Medium::Gpu),
            group_idx: None,
        }));
    }

    /// The whole cache was reset.
    pub(crate) fn cleared(&mut self) {
        self.digests.clear();
        self.last_stored = None;
        self.pending.push(KvEvent::AllBlocksCleared);
    }

    /// Publishes the pending events as one batch (one engine step), if any.
    pub(crate) fn flush(&mut self) {
        self.last_stored = None;
        if self.pending.is_empty() {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let batch = EventBatch {
            ts,
            events: std::mem::take(&mut self.pending),
            data_parallel_rank: Some(0),
        };
        let payload = encode_batch(&batch, self.layout);
        let drop = self.control.drop_fraction();
        let deliver = drop <= 0.0 || self.rng.random::<f64>() >= drop;
        self.publisher.publish(self.seq, payload, deliver);
        self.seq += 1;
        self.control.next_seq.store(self.seq, Ordering::Release);
    }

    /// An engine restart: sequence back to 0, nothing buffered, nothing known (the engine
    /// empties its cache without an event, as a new process would).
    pub(crate) fn restart(&mut self) {
        self.digests.clear();
        self.pending.clear();
        self.last_stored = None;
        self.seq = 0;
        self.control.next_seq.store(0, Ordering::Release);
        self.publisher.clear_buffer();
    }
}
