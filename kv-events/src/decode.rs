//! Decoding an event batch from msgpack: both event layouts (positional arrays up to vLLM 0.23,
//! maps with `"type"` from 0.24), absent fields at their defaults, unknown fields skipped.

use crate::error::KvEventsError;
use crate::msgpack::{Item, Reader};
use crate::types::{BlockHash, BlockRemoved, BlockStored, EventBatch, ExtraKey, KvEvent, Medium};

fn bad(what: String) -> KvEventsError {
    KvEventsError::Decode(what)
}

/// Decodes one message payload: `[ts, events, data_parallel_rank]`.
pub fn decode_batch(payload: &[u8]) -> Result<EventBatch, KvEventsError> {
    let mut r = Reader::new(payload);
    let n = r.array()?;
    if n < 2 {
        return Err(bad(format!("batch has {n} fields, expected 2 or 3")));
    }
    let ts = match r.next()? {
        Item::Float(f) => f,
        Item::Uint(v) => v as f64,
        Item::Int(v) => v as f64,
        other => return Err(bad(format!("batch ts is {other:?}"))),
    };
    let count = r.array()?;
    let mut events = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        events.push(decode_event(&mut r)?);
    }
    let data_parallel_rank = if n >= 3 { opt_u32(&mut r)? } else { None };
    for _ in 3..n {
        r.skip()?;
    }
    Ok(EventBatch {
        ts,
        events,
        data_parallel_rank,
    })
}

/// Decodes one event in either layout.
fn decode_event(r: &mut Reader<'_>) -> Result<KvEvent, KvEventsError> {
    match r.next()? {
        Item::Array(n) => decode_array_event(r, n),
        Item::Map(n) => decode_map_event(r, n),
        other => Err(bad(format!(
            "event is {other:?}, expected an array or a map"
        ))),
    }
}

const STORED_FIELDS: [&str; 11] = [
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
    "extra_keys",
    "group_idx",
    "kv_cache_spec_kind",
    "kv_cache_spec_sliding_window",
];
const REMOVED_FIELDS: [&str; 3] = ["block_hashes", "medium", "group_idx"];

enum Partial {
    Stored(BlockStored),
    Removed(BlockRemoved),
    Cleared,
}

impl Partial {
    fn new(tag: &str) -> Result<Self, KvEventsError> {
        match tag {
            "BlockStored" => Ok(Partial::Stored(BlockStored::default())),
            "BlockRemoved" => Ok(Partial::Removed(BlockRemoved::default())),
            "AllBlocksCleared" => Ok(Partial::Cleared),
            other => Err(bad(format!("unknown event type {other:?}"))),
        }
    }

    /// Reads the value of field `name` into the event (unknown names are skipped).
    fn field(&mut self, name: &str, r: &mut Reader<'_>) -> Result<(), KvEventsError> {
        match self {
            Partial::Stored(e) => match name {
                "block_hashes" => e.block_hashes = hashes(r)?,
                "parent_block_hash" => e.parent_block_hash = opt_hash(r)?,
                "token_ids" => e.token_ids = tokens(r)?,
                "block_size" => e.block_size = opt_u32(r)?.unwrap_or(0),
                "lora_id" => e.lora_id = opt_int(r)?,
                "medium" => e.medium = opt_medium(r)?,
                "lora_name" => e.lora_name = opt_string(r)?,
                "extra_keys" => e.extra_keys = extra_keys(r)?,
                "group_idx" => e.group_idx = opt_u32(r)?,
                "kv_cache_spec_kind" => e.kv_cache_spec_kind = opt_string(r)?,
                "kv_cache_spec_sliding_window" => e.kv_cache_spec_sliding_window = opt_u32(r)?,
                _ => r.skip()?,
            },
            Partial::Removed(e) => match name {
                "block_hashes" => e.block_hashes = hashes(r)?,
                "medium" => e.medium = opt_medium(r)?,
                "group_idx" => e.group_idx = opt_u32(r)?,
                _ => r.skip()?,
            },
            Partial::Cleared => r.skip()?,
        }
        Ok(())
    }

    fn positional(&self) -> &'static [&'static str] {
        match self {
            Partial::Stored(_) => &STORED_FIELDS,
            Partial::Removed(_) => &REMOVED_FIELDS,
            Partial::Cleared => &[],
        }
    }

    fn finish(self) -> KvEvent {
        match self {
            Partial::Stored(e) => KvEvent::BlockStored(e),
            Partial::Removed(e) => KvEvent::BlockRemoved(e),
            Partial::Cleared => KvEvent::AllBlocksCleared,
        }
    }
}

fn decode_array_event(r: &mut Reader<'_>, n: usize) -> Result<KvEvent, KvEventsError> {
    if n == 0 {
        return Err(bad("empty event array".into()));
    }
    let mut event = Partial::new(r.string()?)?;
    let names = event.positional();
    for i in 0..n - 1 {
        match names.get(i) {
            Some(name) => event.field(name, r)?,
            // Fields of versions newer than this decoder: ignored.
            None => r.skip()?,
        }
    }
    Ok(event.finish())
}

fn decode_map_event(r: &mut Reader<'_>, n: usize) -> Result<KvEvent, KvEventsError> {
    // vLLM writes "type" first; accept it anywhere by reading fields into a holder per tag.
    let mut event: Option<Partial> = None;
    let mut early = 0usize;
    let start_fields = r.position();
    for _ in 0..n {
        if r.string()? == "type" {
            event = Some(Partial::new(r.string()?)?);
            break;
        }
        early += 1;
        r.skip()?;
    }
    let Some(mut event) = event else {
        return Err(bad("event map without a \"type\"".into()));
    };
    if early > 0 {
        // Rare: fields before "type". Re-read them now that the tag is known.
        let resume = r.position();
        r.set_pos(start_fields);
        for _ in 0..early {
            let key = r.string()?;
            event.field(key, r)?;
        }
        r.set_pos(resume);
    }
    for _ in early + 1..n {
        let key = r.string()?;
        event.field(key, r)?;
    }
    Ok(event.finish())
}

fn hash(item: Item<'_>) -> Result<BlockHash, KvEventsError> {
    match item {
        Item::Uint(v) => Ok(BlockHash::Int(v)),
        // Python ints are unbounded; a negative one can only come from a signed encoder.
        Item::Int(v) => Ok(BlockHash::Int(v as u64)),
        Item::Bin(b) => Ok(BlockHash::Digest(b.to_vec())),
        other => Err(bad(format!("block hash is {other:?}"))),
    }
}

/// `n` elements, each read by `item` (the capacity is capped by what is left to read, so a
/// forged length cannot allocate much).
fn elements<T>(
    r: &mut Reader<'_>,
    n: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, KvEventsError>,
) -> Result<Vec<T>, KvEventsError> {
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        out.push(item(r)?);
    }
    Ok(out)
}

/// An array read by `item`, or `None` for nil.
fn opt_array<T>(
    r: &mut Reader<'_>,
    item: impl FnMut(&mut Reader<'_>) -> Result<T, KvEventsError>,
) -> Result<Option<Vec<T>>, KvEventsError> {
    if r.nil() {
        return Ok(None);
    }
    let n = r.array()?;
    elements(r, n, item).map(Some)
}

fn hashes(r: &mut Reader<'_>) -> Result<Vec<BlockHash>, KvEventsError> {
    Ok(opt_array(r, |r| hash(r.next()?))?.unwrap_or_default())
}

fn opt_hash(r: &mut Reader<'_>) -> Result<Option<BlockHash>, KvEventsError> {
    if r.nil() {
        return Ok(None);
    }
    hash(r.next()?).map(Some)
}

fn tokens(r: &mut Reader<'_>) -> Result<Vec<u32>, KvEventsError> {
    let ids = opt_array(r, |r| {
        let v = r.uint()?;
        u32::try_from(v).map_err(|_| bad(format!("token id {v} above u32")))
    })?;
    Ok(ids.unwrap_or_default())
}

fn opt_u32(r: &mut Reader<'_>) -> Result<Option<u32>, KvEventsError> {
    if r.nil() {
        return Ok(None);
    }
    let v = r.uint()?;
    u32::try_from(v)
        .map(Some)
        .map_err(|_| bad(format!("{v} above u32")))
}

fn opt_int(r: &mut Reader<'_>) -> Result<Option<i64>, KvEventsError> {
    match r.next()? {
        Item::Nil => Ok(None),
        Item::Uint(v) => Ok(Some(v as i64)),
        Item::Int(v) => Ok(Some(v)),
        other => Err(bad(format!("expected an integer, got {other:?}"))),
    }
}

fn opt_string(r: &mut Reader<'_>) -> Result<Option<String>, KvEventsError> {
    if r.nil() {
        return Ok(None);
    }
    r.string().map(|s| Some(s.to_string()))
}

fn opt_medium(r: &mut Reader<'_>) -> Result<Option<Medium>, KvEventsError> {
    if r.nil() {
        return Ok(None);
    }
    r.string().map(|s| Some(Medium::parse(s)))
}

fn extra_keys(r: &mut Reader<'_>) -> Result<Option<Vec<Option<ExtraKey>>>, KvEventsError> {
    opt_array(r, |r| {
        Ok(match extra_key(r)? {
            ExtraKey::Nil => None,
            k => Some(k),
        })
    })
}

fn extra_key(r: &mut Reader<'_>) -> Result<ExtraKey, KvEventsError> {
    Ok(match r.next()? {
        Item::Nil => ExtraKey::Nil,
        Item::Bool(b) => ExtraKey::Bool(b),
        Item::Uint(v) => ExtraKey::Int(v as i64),
        Item::Int(v) => ExtraKey::Int(v),
        Item::Float(f) => ExtraKey::Float(f),
        Item::Str(s) => ExtraKey::Str(s.to_string()),
        Item::Bin(b) => ExtraKey::Bytes(b.to_vec()),
        Item::Array(n) => ExtraKey::List(elements(r, n, extra_key)?),
        Item::Map(_) | Item::Ext => return Err(bad("unsupported extra key (map or ext)".into())),
    })
}
