//! A lenient parser for the Prometheus text exposition format (version 0.0.4 and OpenMetrics).
//!
//! Only sample lines matter to the router: `name{label="value",...} value [timestamp]`.
//! Comments, blank lines and malformed lines are skipped; nothing here can panic on any input.

use std::borrow::Cow;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name, e.g. `vllm:num_requests_running`.
    pub name: &'a str,
    /// Label pairs in the order they appeared, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The sample value (may be NaN or infinite).
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// Every well-formed sample of `text`, skipping comments and malformed lines.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// Parses one line; `None` for comments, blank or malformed lines.
pub fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut cur = Cursor { s: line, pos: 0 };
    let name = cur.take_while(is_name_byte);
    if name.is_empty() {
        return None;
    }
    cur.skip_spaces();
    let labels = if cur.peek() == Some(b'{') {
        cur.pos += 1;
        parse_labels(&mut cur)?
    } else {
        Vec::new()
    };
    cur.skip_spaces();
    let value = parse_value(cur.take_while(|b, _| !b.is_ascii_whitespace()))?;
    // An optional timestamp and an OpenMetrics exemplar (`# {...} v`) may follow.
    cur.skip_spaces();
    if cur.peek().is_some_and(|b| b != b'#') {
        let stamp = cur.take_while(|b, _| !b.is_ascii_whitespace());
        stamp.parse::<f64>().ok()?;
        cur.skip_spaces();
    }
    match cur.peek() {
        None | Some(b'#') => Some(Sample {
            name,
            labels,
            value,
        }),
        Some(_) => None,
    }
}

fn is_name_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || (!first && b.is_ascii_digit())
}

fn parse_labels<'a>(cur: &mut Cursor<'a>) -> Option<Vec<(&'a str, Cow<'a, str>)>> {
    let mut labels = Vec::new();
    loop {
        cur.skip_spaces();
        if cur.peek()? == b'}' {
            cur.pos += 1;
            return Some(labels);
        }
        let key = cur.take_while(|b, first| is_name_byte(b, first) && b != b':');
        if key.is_empty() {
            return None;
        }
        cur.skip_spaces();
        if cur.peek()? != b'=' {
            return None;
        }
        cur.pos += 1;
        cur.skip_spaces();
        if cur.peek()? != b'"' {
            return None;
        }
        cur.pos += 1;
        let value = parse_label_value(cur)?;
        labels.push((key, value));
        cur.skip_spaces();
        match cur.peek()? {
            b',' => cur.pos += 1,
            b'}' => {}
            _ => return None,
        }
    }
}

/// Reads a label value after its opening quote, through the closing quote.
fn parse_label_value<'a>(cur: &mut Cursor<'a>) -> Option<Cow<'a, str>> {
    let start = cur.pos;
    let bytes = cur.s.as_bytes();
    let mut owned: Option<String> = None;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                cur.pos = i + 1;
                return Some(match owned {
                    Some(s) => Cow::Owned(s),
                    None => Cow::Borrowed(cur.s.get(start..i)?),
                });
            }
            b'\\' => {
                let buf = owned.get_or_insert_with(|| cur.s.get(start..i).unwrap_or("").to_owned());
                let next = *bytes.get(i + 1)?;
                buf.push(match next {
                    b'n' => '\n',
                    b'\\' => '\\',
                    b'"' => '"',
                    _ => return None,
                });
                i += 2;
            }
            _ => {
                // Copy whole UTF-8 characters so multi-byte values survive unescaping.
                let ch_len = cur.s.get(i..)?.chars().next()?.len_utf8();
                if let Some(buf) = owned.as_mut() {
                    buf.push_str(cur.s.get(i..i + ch_len)?);
                }
                i += ch_len;
            }
        }
    }
    None
}

fn parse_value(token: &str) -> Option<f64> {
    match token {
        "" => None,
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Advances over ASCII bytes accepted by `keep(byte, is_first)` and returns them.
    fn take_while(&mut self, keep: impl Fn(u8, bool) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !b.is_ascii() || !keep(b, self.pos == start) {
                break;
            }
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_labels_values_and_timestamps() {
        let s =
            parse_line(r#"vllm:num_requests_running{model_name="m",engine="0"} 3 1700000000000"#)
                .unwrap();
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(s.label("model_name"), Some("m"));
        assert_eq!(s.label("engine"), Some("0"));
        assert_eq!(s.value, 3.0);
        let s = parse_line("plain_metric 1.5e3").unwrap();
        assert!(s.labels.is_empty());
        assert_eq!(s.value, 1500.0);
        let s = parse_line(r#"m{a="x",} +Inf"#).unwrap();
        assert!(s.value.is_infinite());
        assert!(parse_line("m NaN").unwrap().value.is_nan());
        assert_eq!(parse_line("m 2 # {trace_id=\"a\"} 1").unwrap().value, 2.0);
        assert_eq!(
            parse_line("m 2 17 # {trace_id=\"a\"} 1\r").unwrap().value,
            2.0
        );
        assert_eq!(parse_line("m 3\r").unwrap().value, 3.0);
        assert_eq!(parse_line("m{} -Inf").unwrap().value, f64::NEG_INFINITY);
    }

    #[test]
    fn unescapes_label_values() {
        let s = parse_line(r#"m{path="a\"b\\c\nd",u="héllo"} 1"#).unwrap();
        assert_eq!(s.label("path"), Some("a\"b\\c\nd"));
        assert_eq!(s.label("u"), Some("héllo"));
    }

    #[test]
    fn skips_comments_and_garbage() {
        for line in [
            "# HELP x y",
            "# TYPE x gauge",
            "",
            "   ",
            "{a=\"b\"} 1",
            "m{a=b} 1",
            "m{a=\"b\" 1",
            "m 1 2 3",
            "m",
            "m abc",
            "m{a=\"\\q\"} 1",
            "9m 1",
        ] {
            assert!(parse_line(line).is_none(), "{line:?} should be rejected");
        }
        let text = "# HELP a b\na 1\nbad line here\nb{x=\"y\"} 2\n# EOF\n";
        let names: Vec<_> = samples(text).map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = samples(&text).count();
        }

        #[test]
        fn metric_like_text_never_panics(text in "[a-z:_{}=\",\\\\ 0-9.eE+\\-#\n]{0,200}") {
            let _ = samples(&text).count();
        }
    }
}
