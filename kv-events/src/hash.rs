//! vLLM's `sha256_cbor` prefix-cache block hashing (`--prefix-caching-hash-algo sha256_cbor`):
//! `sha256(canonical CBOR of [parent digest, [token ids], extra keys or null])`, chained from
//! `NONE_HASH = sha256(CBOR(seed))`. The seed is `PYTHONHASHSEED` when set; from vLLM 0.29
//! without it, the fixed string [`DEFAULT_SEED`] (before 0.29 an unset seed was random per
//! process, so no outsider could reproduce the hashes).

use sha2::{Digest, Sha256};

use crate::types::ExtraKey;

/// A 32-byte block digest.
pub type BlockDigest = [u8; 32];

/// vLLM's seed string when `PYTHONHASHSEED` is unset (0.29+).
pub const DEFAULT_SEED: &str = "vllm-none-hash";

fn head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        out.push(m | v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[m | 24, v as u8]);
    } else if v <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn cbor_key(out: &mut Vec<u8>, k: &ExtraKey) {
    match k {
        ExtraKey::Nil => out.push(0xf6),
        ExtraKey::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        ExtraKey::Int(v) if *v >= 0 => head(out, 0, *v as u64),
        ExtraKey::Int(v) => head(out, 1, !(*v as u64)),
        ExtraKey::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        ExtraKey::Str(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        ExtraKey::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        ExtraKey::List(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                cbor_key(out, item);
            }
        }
    }
}

/// The canonical CBOR that vLLM hashes for one block (exposed for tests against golden bytes).
pub fn block_cbor(
    parent: &BlockDigest,
    tokens: &[u32],
    extra_keys: Option<&[ExtraKey]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + tokens.len() * 3);
    head(&mut out, 4, 3);
    head(&mut out, 2, 32);
    out.extend_from_slice(parent);
    head(&mut out, 4, tokens.len() as u64);
    for &t in tokens {
        head(&mut out, 0, u64::from(t));
    }
    match extra_keys {
        Some(keys) => {
            head(&mut out, 4, keys.len() as u64);
            for k in keys {
                cbor_key(&mut out, k);
            }
        }
        None => out.push(0xf6),
    }
    out
}

/// `NONE_HASH` for a seed string: the parent digest of every prompt's first block.
pub fn none_hash(seed: &str) -> BlockDigest {
    let mut cbor = Vec::with_capacity(seed.len() + 9);
    cbor_key(&mut cbor, &ExtraKey::Str(seed.to_string()));
    Sha256::digest(&cbor).into()
}

/// The digest of one block given its parent's digest, its tokens and its extra keys.
pub fn block_hash(
    parent: &BlockDigest,
    tokens: &[u32],
    extra_keys: Option<&[ExtraKey]>,
) -> BlockDigest {
    Sha256::digest(block_cbor(parent, tokens, extra_keys)).into()
}

/// The value an event carries for a digest by default: its last 8 bytes, big-endian.
pub fn event_int(digest: &BlockDigest) -> u64 {
    let mut last = [0u8; 8];
    last.copy_from_slice(&digest[24..]);
    u64::from_be_bytes(last)
}

/// Digests of the full blocks of `tokens`, chained from `NONE_HASH` of `seed`; `first_extra`
/// are the extra keys of the first block (a cache salt goes there), later blocks have none.
pub fn hash_prompt(
    tokens: &[u32],
    block_size: usize,
    seed: &str,
    first_extra: Option<&[ExtraKey]>,
) -> Vec<BlockDigest> {
    let block_size = block_size.max(1);
    let mut parent = none_hash(seed);
    let mut out = Vec::with_capacity(tokens.len() / block_size);
    for (i, block) in tokens.chunks_exact(block_size).enumerate() {
        let extra = if i == 0 { first_extra } else { None };
        parent = block_hash(&parent, block, extra);
        out.push(parent);
    }
    out
}
