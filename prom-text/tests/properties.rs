//! Property tests: no input makes the parser panic, and generated samples survive a
//! write-then-parse round trip.

use prom_text::{Sample, parse_any, parse_line, parse_strict, samples};
use proptest::prelude::*;
use std::borrow::Cow;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        (-1e6f64..1e6),
        (0u32..10_000).prop_map(f64::from),
    ]
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = samples(&text).count();
        let _ = parse_strict(&text);
    }

    #[test]
    fn metric_like_text_never_panics(text in "[a-z:_{}=\",\\\\ 0-9.eE+\\-#\nIfNa\r\t]{0,200}") {
        let _ = samples(&text).count();
        let _ = parse_strict(&text);
        for line in text.lines() {
            let _ = parse_any(line);
        }
    }

    #[test]
    fn generated_samples_round_trip(
        name in name(),
        labels in proptest::collection::vec((label_name(), "\\PC{0,12}"), 0..5),
        value in float(),
        timestamp in proptest::option::of(-1e15f64..1e15),
    ) {
        let sample = Sample {
            name: &name,
            labels: labels.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str()))).collect(),
            value,
            timestamp,
        };
        let line = sample.to_string();
        let back = parse_line(&line);
        prop_assert!(back.is_some(), "{line:?} did not parse");
        let back = back.unwrap_or_else(|| sample.clone());
        prop_assert_eq!(back.name, sample.name);
        prop_assert_eq!(&back.labels, &sample.labels);
        prop_assert!(same(back.value, value), "{line:?}: {} != {value}", back.value);
        prop_assert_eq!(back.timestamp, timestamp);
    }
}
