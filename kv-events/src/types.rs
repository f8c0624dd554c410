//! Wire types of vLLM's KV-cache events (`vllm/distributed/kv_events.py`), every version.

/// A block hash as an event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlockHash {
    /// An unsigned 64-bit value (the default: the digest's last 8 bytes, big-endian).
    Int(u64),
    /// A binary digest (32 bytes for sha256 / sha256_cbor), with
    /// `VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0`.
    Digest(Vec<u8>),
}

impl BlockHash {
    /// A 64-bit key for maps: the value itself, or a digest's last 8 bytes read big-endian
    /// (so both forms of the same block give the same key).
    pub fn key(&self) -> u64 {
        match self {
            BlockHash::Int(v) => *v,
            BlockHash::Digest(d) => d
                .iter()
                .rev()
                .take(8)
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        }
    }
}

/// A per-block extra key (LoRA, cache salt, multimodal ids), as msgpack carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraKey {
    /// None.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A tuple or list.
    List(Vec<ExtraKey>),
}

/// Where a block lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// GPU memory (the default tier).
    Gpu,
    /// CPU memory (offloaded: cheaper than a miss, dearer than a GPU hit).
    Cpu,
    /// Any other tier (disk, object store, ...).
    Other(String),
}

impl Medium {
    /// Parses vLLM's medium string.
    pub fn parse(s: &str) -> Self {
        match s {
            "GPU" => Medium::Gpu,
            "CPU" => Medium::Cpu,
            other => Medium::Other(other.to_string()),
        }
    }

    /// vLLM's string for this tier.
    pub fn as_str(&self) -> &str {
        match self {
            Medium::Gpu => "GPU",
            Medium::Cpu => "CPU",
            Medium::Other(s) => s,
        }
    }
}

/// New blocks entered the prefix cache.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockStored {
    /// One hash per block, in order.
    pub block_hashes: Vec<BlockHash>,
    /// The hash of the block before the first one (`None` for a prompt's first block).
    pub parent_block_hash: Option<BlockHash>,
    /// The tokens of all the blocks, concatenated (`block_size` per block).
    pub token_ids: Vec<u32>,
    /// Tokens per block.
    pub block_size: u32,
    /// LoRA adapter id (deprecated).
    pub lora_id: Option<i64>,
    /// Storage tier.
    pub medium: Option<Medium>,
    /// LoRA adapter name (0.14+).
    pub lora_name: Option<String>,
    /// Per-block extra keys (0.18+), e.g. a cache salt.
    pub extra_keys: Option<Vec<Option<ExtraKey>>>,
    /// KV cache group (0.20+).
    pub group_idx: Option<u32>,
    /// Attention kind of the group (0.22+).
    pub kv_cache_spec_kind: Option<String>,
    /// Sliding window of the group (0.22+).
    pub kv_cache_spec_sliding_window: Option<u32>,
}

/// Blocks left the prefix cache.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockRemoved {
    /// Hashes of the removed blocks.
    pub block_hashes: Vec<BlockHash>,
    /// Storage tier.
    pub medium: Option<Medium>,
    /// KV cache group (0.20+).
    pub group_idx: Option<u32>,
}

/// One KV-cache event.
#[derive(Debug, Clone, PartialEq)]
pub enum KvEvent {
    /// Blocks stored.
    BlockStored(BlockStored),
    /// Blocks removed.
    BlockRemoved(BlockRemoved),
    /// The whole prefix cache was cleared.
    AllBlocksCleared,
}

/// The payload of one message: the events of one scheduler step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventBatch {
    /// Wall-clock time in seconds.
    pub ts: f64,
    /// The events, in order.
    pub events: Vec<KvEvent>,
    /// Data-parallel rank of the engine.
    pub data_parallel_rank: Option<u32>,
}

/// How events are encoded: positional arrays (vLLM up to 0.23) or maps with `"type"` (0.24+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `[tag, field, ...]`.
    Array,
    /// `{"type": tag, field: value, ...}` with default-valued optional fields left out.
    #[default]
    Map,
}
