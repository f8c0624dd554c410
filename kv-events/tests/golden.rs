//! vLLM's own outputs (`shared/kv-events/golden-*.txt`, `shared/reference/vllm-0.26.0/
//! kv-events.jsonl`), copied here so the tests stand alone: hashes, batches in both layouts and
//! both hash forms, replay frames of both versions.

use kv_events::frames::{self, ReplayReply, ReplayVersion};
use kv_events::hash::{self, DEFAULT_SEED};
use kv_events::{
    BlockHash, BlockRemoved, BlockStored, EventBatch, ExtraKey, KvEvent, Layout, Medium,
    decode_batch, encode_batch,
};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// vLLM 0.11.0: positional arrays.
const ARRAY_BATCH: &str = "93cb41d954fc402000009297ab426c6f636b53746f72656492cf26470bbec927f5bfcf480a8718e6d0b0b5cf2ceabcfae6d332eadc00201112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3010c0a347505593ac426c6f636b52656d6f76656491cf480a8718e6d0b0b5a347505500";
const ARRAY_CLEARED: &str = "91b0416c6c426c6f636b73436c6561726564";
const ARRAY_DIGEST_BATCH: &str = "93cb41d954fc402000009197ab426c6f636b53746f72656492c4204a0a393805c6d2f0ed831000d41bb65980336c4c04895d5e26470bbec927f5bfc4207db7c8652c5c4a69d8f91e08e8decadf88d48c3339d35aad480a8718e6d0b0b5c420202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332eadc00201112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3010c0a347505500";
// vLLM 0.33.0: maps with "type", default-valued fields left out.
const MAP_BATCH: &str = "93cb41d954fc4020000092de0008a474797065ab426c6f636b53746f726564ac626c6f636b5f68617368657392cf26470bbec927f5bfcf480a8718e6d0b0b5b1706172656e745f626c6f636b5f68617368cf2ceabcfae6d332eaa9746f6b656e5f696473dc00201112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30aa626c6f636b5f73697a6510a76c6f72615f6964c0a66d656469756da3475055a96c6f72615f6e616d65c083a474797065ac426c6f636b52656d6f766564ac626c6f636b5f68617368657391cf480a8718e6d0b0b5a66d656469756da347505500";
const MAP_CLEARED: &str = "81a474797065b0416c6c426c6f636b73436c6561726564";
const MAP_DIGEST_BATCH: &str = "93cb41d954fc4020000091de0008a474797065ab426c6f636b53746f726564ac626c6f636b5f68617368657392c4204a0a393805c6d2f0ed831000d41bb65980336c4c04895d5e26470bbec927f5bfc4207db7c8652c5c4a69d8f91e08e8decadf88d48c3339d35aad480a8718e6d0b0b5b1706172656e745f626c6f636b5f68617368c420202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332eaa9746f6b656e5f696473dc00201112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30aa626c6f636b5f73697a6510a76c6f72615f6964c0a66d656469756da3475055a96c6f72615f6e616d65c000";

const B0_SEED0: &str = "202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332ea";
const B1_SEED0: &str = "4a0a393805c6d2f0ed831000d41bb65980336c4c04895d5e26470bbec927f5bf";
const B2_SEED0: &str = "7db7c8652c5c4a69d8f91e08e8decadf88d48c3339d35aad480a8718e6d0b0b5";

fn tokens(from: u32, to: u32) -> Vec<u32> {
    (from..=to).collect()
}

/// The batch both golden files encode.
fn golden_batch(int_hashes: bool) -> EventBatch {
    let h = |hex_digest: &str, int: u64| {
        if int_hashes {
            BlockHash::Int(int)
        } else {
            BlockHash::Digest(unhex(hex_digest))
        }
    };
    let stored = BlockStored {
        block_hashes: vec![
            h(B1_SEED0, 2758186210834249151),
            h(B2_SEED0, 5191110061519319221),
        ],
        parent_block_hash: Some(h(B0_SEED0, 3236607068019569386)),
        token_ids: tokens(17, 48),
        block_size: 16,
        lora_id: None,
        medium: Some(Medium::Gpu),
        lora_name: None,
        ..BlockStored::default()
    };
    let mut events = vec![KvEvent::BlockStored(stored)];
    if int_hashes {
        events.push(KvEvent::BlockRemoved(BlockRemoved {
            block_hashes: vec![BlockHash::Int(5191110061519319221)],
            medium: Some(Medium::Gpu),
            group_idx: None,
        }));
    }
    EventBatch {
        ts: 1700000000.5,
        events,
        data_parallel_rank: Some(0),
    }
}

#[test]
fn both_layouts_and_both_hash_forms_decode_and_reencode_byte_for_byte() {
    for (hex_batch, layout, ints) in [
        (ARRAY_BATCH, Layout::Array, true),
        (ARRAY_DIGEST_BATCH, Layout::Array, false),
        (MAP_BATCH, Layout::Map, true),
        (MAP_DIGEST_BATCH, Layout::Map, false),
    ] {
        let bytes = unhex(hex_batch);
        let batch = decode_batch(&bytes).expect("golden batch decodes");
        assert_eq!(batch, golden_batch(ints), "{layout:?} ints={ints}");
        assert_eq!(
            hex(&encode_batch(&batch, layout)),
            hex_batch,
            "{layout:?} ints={ints}"
        );
    }
}

#[test]
fn all_blocks_cleared_alone_in_both_layouts() {
    for (event_hex, layout) in [(ARRAY_CLEARED, Layout::Array), (MAP_CLEARED, Layout::Map)] {
        // The golden is the event alone; wrap it in a batch.
        let mut bytes = unhex("93cb41d954fc4020000091");
        bytes.extend(unhex(event_hex));
        bytes.push(0);
        let batch = decode_batch(&bytes).expect("decodes");
        assert_eq!(batch.events, vec![KvEvent::AllBlocksCleared]);
        assert_eq!(encode_batch(&batch, layout), bytes);
    }
}

#[test]
fn digest_and_int_forms_give_the_same_key() {
    let by_int = decode_batch(&unhex(MAP_BATCH)).expect("decodes");
    let by_digest = decode_batch(&unhex(MAP_DIGEST_BATCH)).expect("decodes");
    let keys = |b: &EventBatch| match &b.events[0] {
        KvEvent::BlockStored(s) => s
            .block_hashes
            .iter()
            .map(BlockHash::key)
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys(&by_int), keys(&by_digest));
}

#[test]
fn sha256_cbor_matches_vllm_for_both_seeds() {
    let toks = tokens(1, 48);
    let cases = [
        (
            "0",
            "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e",
            [B0_SEED0, B1_SEED0, B2_SEED0],
            [
                3236607068019569386u64,
                2758186210834249151,
                5191110061519319221,
            ],
        ),
        (
            DEFAULT_SEED,
            "9bd96a485ad84efdafb72ee48a1d7a69bcead0f8f0433173941b276b9581eef0",
            [
                "cd7c51bc5a8fc8643f383a2b9e01522fba7473c669e9270c7b0bf7bf7fd01682",
                "2533ea50426b36e9e4d68296cac6bce8cf602e46957d0fe40b368b33d87bf3bf",
                "c7e6bd05b0485123bde5709175e3f6d9accbc05c10c9742a96f37f6bfe25db82",
            ],
            [
                8866452693264111234,
                807986237951177663,
                10877177626832001922,
            ],
        ),
    ];
    for (seed, none, blocks, ints) in cases {
        assert_eq!(hex(&hash::none_hash(seed)), none, "seed {seed}");
        let got = hash::hash_prompt(&toks, 16, seed, None);
        assert_eq!(
            got.iter().map(|d| hex(d)).collect::<Vec<_>>(),
            blocks,
            "seed {seed}"
        );
        assert_eq!(
            got.iter().map(hash::event_int).collect::<Vec<_>>(),
            ints,
            "seed {seed}"
        );
    }
    assert_eq!(
        hex(&hash::block_cbor(
            &hash::none_hash("0"),
            &tokens(1, 16),
            None
        )),
        "8358204e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e900102030405060708090a0b0c0d0e0f10f6"
    );
}

#[test]
fn cache_salt_extra_keys_match_both_versions() {
    let toks = tokens(1, 48);
    let salt = |k: ExtraKey| vec![k];
    // 0.11: extra_keys = ('salt1',); 0.33: (('cache_salt', 'salt1'),). On the first block only.
    let old = hash::hash_prompt(&toks, 16, "0", Some(&salt(ExtraKey::Str("salt1".into()))));
    let new_key = ExtraKey::List(vec![
        ExtraKey::Str("cache_salt".into()),
        ExtraKey::Str("salt1".into()),
    ]);
    let new = hash::hash_prompt(&toks, 16, "0", Some(&salt(new_key)));
    assert_eq!(
        old.iter().map(|d| hex(d)).collect::<Vec<_>>(),
        [
            "6f467c05e00cb526e54d648a31c0b1f09454b712ead772a53e9dafad2ffa8144",
            "b55f6dbf4abdc7a045c01b54ad7e4fea72cd1f86bf0ee0a5f3db289d8f9b9bed",
            "9291e46db24d66b3104e8ad3230532aa725c64aaad1cbab05625be853b7773e7",
        ]
    );
    assert_eq!(
        new.iter().map(|d| hex(d)).collect::<Vec<_>>(),
        [
            "382282969df80bada533d215ff4092876cb4da9e5878d0bc5692edf2ecf58108",
            "37a39934a9cb80a58331e12e1ac326be1055dffbf5de22b29836b650e0b23f2d",
            "2618861c36627853a360aa6791ef90e4d1533f94a1c9a241d10f34e633335d34",
        ]
    );
}

/// The first message captured from a real vLLM 0.26.0 server, re-encoded as it was on the
/// wire: a map without `locality` / `kv_cache_spec_sliding_window`, hashes above 2^63.
#[test]
fn real_vllm_0_26_message_decodes() {
    let hashes: [u64; 7] = [
        14615396547253306010,
        7485926789601967775,
        12715635228600886271,
        1286999700116473738,
        7835622441968213481,
        487995574949425519,
        4062282292480025718,
    ];
    let stored = BlockStored {
        block_hashes: hashes.iter().map(|&h| BlockHash::Int(h)).collect(),
        parent_block_hash: None,
        token_ids: (0..112).map(|i| 1000 + i).collect(),
        block_size: 16,
        medium: Some(Medium::Gpu),
        extra_keys: Some(vec![None; 7]),
        group_idx: Some(0),
        kv_cache_spec_kind: Some("full_attention".into()),
        ..BlockStored::default()
    };
    let batch = EventBatch {
        ts: 1796036768.0417986,
        events: vec![KvEvent::BlockStored(stored)],
        data_parallel_rank: Some(0),
    };
    let bytes = encode_batch(&batch, Layout::Map);
    assert_eq!(decode_batch(&bytes).expect("decodes"), batch);
    // A later field from a newer version, unknown here, in either layout, is skipped.
    let mut newer = unhex("93cb41d954fc4020000091");
    newer.extend(unhex(
        "82a474797065ac426c6f636b52656d6f766564a86c6f63616c697479a3666f6f",
    ));
    newer.push(0);
    let got = decode_batch(&newer).expect("decodes");
    assert_eq!(
        got.events,
        vec![KvEvent::BlockRemoved(BlockRemoved::default())],
        "absent fields take their defaults, unknown ones are ignored"
    );
    assert!(
        decode_batch(&[0x93, 0xcb]).is_err(),
        "truncated input is an error, not a panic"
    );
}

#[test]
fn replay_frames_of_both_versions() {
    assert_eq!(
        frames::replay_request(5),
        vec![vec![], 5u64.to_be_bytes().to_vec()]
    );
    assert_eq!(
        frames::parse_replay_request(&frames::replay_request(5)).expect("ok"),
        5
    );
    let payload = unhex(MAP_BATCH);
    // 0.26+: [b"", topic, seq, payload], end [b"", b"", ff*8, b""].
    let new = frames::replay_reply(ReplayVersion::WithTopic, b"kv", Some((7, &payload)));
    assert_eq!(
        new,
        vec![
            vec![],
            b"kv".to_vec(),
            7u64.to_be_bytes().to_vec(),
            payload.clone()
        ]
    );
    let new_end = frames::replay_reply(ReplayVersion::WithTopic, b"kv", None);
    assert_eq!(new_end, vec![vec![], vec![], vec![0xff; 8], vec![]]);
    // Up to 0.25: [b"", seq, payload], end [b"", ff*8, b""].
    let old = frames::replay_reply(ReplayVersion::Legacy, b"kv", Some((7, &payload)));
    assert_eq!(
        old,
        vec![vec![], 7u64.to_be_bytes().to_vec(), payload.clone()]
    );
    let old_end = frames::replay_reply(ReplayVersion::Legacy, b"kv", None);
    assert_eq!(old_end, vec![vec![], vec![0xff; 8], vec![]]);
    for reply in [new, old] {
        assert_eq!(
            frames::parse_replay_reply(reply).expect("parses"),
            ReplayReply::Batch {
                seq: 7,
                payload: payload.clone()
            }
        );
    }
    for end in [new_end, old_end] {
        assert_eq!(
            frames::parse_replay_reply(end).expect("parses"),
            ReplayReply::End
        );
    }
}
