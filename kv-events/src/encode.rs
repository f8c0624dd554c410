//! Encoding an event batch to msgpack the way vLLM does (for the simulator and for tests):
//! byte-identical to vLLM's own output for the golden batches.

use crate::msgpack::Writer;
use crate::types::{BlockHash, BlockRemoved, BlockStored, EventBatch, ExtraKey, KvEvent, Layout};

/// Encodes `batch` with events in `layout`.
pub fn encode_batch(batch: &EventBatch, layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.events.len() * 64);
    let mut w = Writer(&mut out);
    w.array(3);
    w.float(batch.ts);
    w.array(batch.events.len());
    for event in &batch.events {
        match event {
            KvEvent::BlockStored(e) => stored(&mut w, e, layout),
            KvEvent::BlockRemoved(e) => removed(&mut w, e, layout),
            KvEvent::AllBlocksCleared => tag(&mut w, layout, "AllBlocksCleared", 0),
        }
    }
    match batch.data_parallel_rank {
        Some(rank) => w.uint(u64::from(rank)),
        None => w.nil(),
    }
    out
}

/// Writes the container header and the tag; `fields` more values (pairs for maps) follow.
/// msgspec sizes a map header by the struct's declared field count, not by the fields it
/// writes: `BlockStored` (16 declared in 0.33) always gets a map16 header.
fn tag(w: &mut Writer<'_>, layout: Layout, name: &str, fields: usize) {
    match layout {
        Layout::Array => w.array(fields + 1),
        Layout::Map if name == "BlockStored" => {
            w.0.push(0xde);
            w.0.extend_from_slice(&((fields + 1) as u16).to_be_bytes());
            w.str("type");
        }
        Layout::Map => {
            w.map(fields + 1);
            w.str("type");
        }
    }
    w.str(name);
}

/// Writes a field name in map layout (nothing in array layout).
fn key(w: &mut Writer<'_>, layout: Layout, name: &str) {
    if layout == Layout::Map {
        w.str(name);
    }
}

fn hash(w: &mut Writer<'_>, h: &BlockHash) {
    match h {
        BlockHash::Int(v) => w.uint(*v),
        BlockHash::Digest(d) => w.bin(d),
    }
}

fn hashes(w: &mut Writer<'_>, hs: &[BlockHash]) {
    w.array(hs.len());
    for h in hs {
        hash(w, h);
    }
}

fn opt_str(w: &mut Writer<'_>, s: Option<&str>) {
    match s {
        Some(s) => w.str(s),
        None => w.nil(),
    }
}

fn extra_key(w: &mut Writer<'_>, k: &ExtraKey) {
    match k {
        ExtraKey::Nil => w.nil(),
        ExtraKey::Bool(b) => w.0.push(if *b { 0xc3 } else { 0xc2 }),
        ExtraKey::Int(v) => w.int(*v),
        ExtraKey::Float(f) => w.float(*f),
        ExtraKey::Str(s) => w.str(s),
        ExtraKey::Bytes(b) => w.bin(b),
        ExtraKey::List(items) => {
            w.array(items.len());
            for item in items {
                extra_key(w, item);
            }
        }
    }
}

/// The optional fields of `BlockStored` after the always-present ones, in wire order.
fn stored_optionals(e: &BlockStored) -> [bool; 4] {
    [
        e.extra_keys.is_some(),
        e.group_idx.is_some(),
        e.kv_cache_spec_kind.is_some(),
        e.kv_cache_spec_sliding_window.is_some(),
    ]
}

fn write_stored_optional(w: &mut Writer<'_>, e: &BlockStored, i: usize) {
    match i {
        0 => match &e.extra_keys {
            Some(keys) => {
                w.array(keys.len());
                for k in keys {
                    extra_key(w, k.as_ref().unwrap_or(&ExtraKey::Nil));
                }
            }
            None => w.nil(),
        },
        1 => match e.group_idx {
            Some(g) => w.uint(u64::from(g)),
            None => w.nil(),
        },
        2 => opt_str(w, e.kv_cache_spec_kind.as_deref()),
        _ => match e.kv_cache_spec_sliding_window {
            Some(s) => w.uint(u64::from(s)),
            None => w.nil(),
        },
    }
}

const OPTIONAL_NAMES: [&str; 4] = [
    "extra_keys",
    "group_idx",
    "kv_cache_spec_kind",
    "kv_cache_spec_sliding_window",
];

fn stored(w: &mut Writer<'_>, e: &BlockStored, layout: Layout) {
    let present = stored_optionals(e);
    // Arrays carry fields up to the last one set (older versions had fewer fields, and a
    // lora_name is written whenever a later field is); maps leave unset optional fields out.
    let (base, optional): (usize, Vec<usize>) = match layout {
        Layout::Array => {
            let last = present.iter().rposition(|&p| p);
            let with_name = e.lora_name.is_some() || last.is_some();
            (
                6 + usize::from(with_name),
                last.map(|l| (0..=l).collect()).unwrap_or_default(),
            )
        }
        Layout::Map => (7, (0..4).filter(|&i| present[i]).collect()),
    };
    tag(w, layout, "BlockStored", base + optional.len());
    key(w, layout, "block_hashes");
    hashes(w, &e.block_hashes);
    key(w, layout, "parent_block_hash");
    match &e.parent_block_hash {
        Some(h) => hash(w, h),
        None => w.nil(),
    }
    key(w, layout, "token_ids");
    w.array(e.token_ids.len());
    for &t in &e.token_ids {
        w.uint(u64::from(t));
    }
    key(w, layout, "block_size");
    w.uint(u64::from(e.block_size));
    key(w, layout, "lora_id");
    match e.lora_id {
        Some(id) => w.int(id),
        None => w.nil(),
    }
    key(w, layout, "medium");
    opt_str(w, e.medium.as_ref().map(|m| m.as_str()));
    if base == 7 {
        key(w, layout, "lora_name");
        opt_str(w, e.lora_name.as_deref());
    }
    for i in optional {
        key(w, layout, OPTIONAL_NAMES[i]);
        write_stored_optional(w, e, i);
    }
}

fn removed(w: &mut Writer<'_>, e: &BlockRemoved, layout: Layout) {
    let fields = 2 + usize::from(e.group_idx.is_some());
    tag(w, layout, "BlockRemoved", fields);
    key(w, layout, "block_hashes");
    hashes(w, &e.block_hashes);
    key(w, layout, "medium");
    opt_str(w, e.medium.as_ref().map(|m| m.as_str()));
    if let Some(g) = e.group_idx {
        key(w, layout, "group_idx");
        w.uint(u64::from(g));
    }
}
