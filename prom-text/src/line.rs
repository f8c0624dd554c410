//! One line of exposition text: a sample, `# HELP`, `# TYPE`, another comment, or blank.

use crate::error::LineError;
use crate::family::MetricType;
use std::borrow::Cow;

/// One sample: a metric name, its labels, its value and an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name, e.g. `vllm:num_requests_running` or `..._bucket`.
    pub name: &'a str,
    /// Label pairs in the order they appeared, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The sample value (may be NaN or infinite).
    pub value: f64,
    /// The timestamp as written (milliseconds in 0.0.4, seconds in OpenMetrics), if any.
    pub timestamp: Option<f64>,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Whether every `(key, value)` of `want` is among this sample's labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// An empty or all-whitespace line.
    Blank,
    /// `# HELP name text`, the text unescaped.
    Help {
        /// The family named.
        name: &'a str,
        /// The help text.
        text: Cow<'a, str>,
    },
    /// `# TYPE name type`.
    Type {
        /// The family named.
        name: &'a str,
        /// Its declared type.
        kind: MetricType,
    },
    /// Any other comment (including OpenMetrics `# EOF` and `# UNIT`).
    Comment,
    /// A sample line.
    Sample(Sample<'a>),
}

/// Every well-formed sample of `text`, skipping comments and malformed lines.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// Parses one sample line; `None` for comments, blank or malformed lines.
pub fn parse_line(line: &str) -> Option<Sample<'_>> {
    match parse_any(line) {
        Ok(Line::Sample(s)) => Some(s),
        _ => None,
    }
}

/// Parses any one line, saying what is wrong with a malformed one.
pub fn parse_any(line: &str) -> Result<Line<'_>, LineError> {
    let line = line.trim_start();
    if line.trim_end().is_empty() {
        return Ok(Line::Blank);
    }
    if let Some(comment) = line.strip_prefix('#') {
        return parse_comment(comment);
    }
    parse_sample(line).map(Line::Sample)
}

fn parse_comment(comment: &str) -> Result<Line<'_>, LineError> {
    let mut cur = Cursor::new(comment);
    cur.skip_spaces();
    let keyword = cur.take_while(|b, _| b.is_ascii_alphabetic());
    if !matches!(keyword, "HELP" | "TYPE") || !cur.skip_spaces() {
        return Ok(Line::Comment);
    }
    let name = cur.take_while(is_name_byte);
    if name.is_empty() || !(cur.at_end() || cur.skip_spaces()) {
        return Ok(Line::Comment);
    }
    let rest = cur.rest().trim_end_matches(['\r', ' ', '\t']);
    if keyword == "HELP" {
        return Ok(Line::Help {
            name,
            text: unescape_help(rest),
        });
    }
    let kind = MetricType::from_keyword(rest).ok_or(LineError::Type)?;
    Ok(Line::Type { name, kind })
}

fn parse_sample(line: &str) -> Result<Sample<'_>, LineError> {
    let mut cur = Cursor::new(line);
    let name = cur.take_while(is_name_byte);
    if name.is_empty() {
        return Err(LineError::Name);
    }
    cur.skip_spaces();
    let labels = if cur.peek() == Some(b'{') {
        cur.pos += 1;
        parse_labels(&mut cur)?
    } else {
        Vec::new()
    };
    cur.skip_spaces();
    let value =
        parse_value(cur.take_while(|b, _| !b.is_ascii_whitespace())).ok_or(LineError::Value)?;
    // An optional timestamp and an OpenMetrics exemplar (`# {...} v`) may follow.
    cur.skip_spaces();
    let mut timestamp = None;
    if cur.peek().is_some_and(|b| b != b'#') {
        let stamp = cur.take_while(|b, _| !b.is_ascii_whitespace());
        timestamp = Some(parse_timestamp(stamp).ok_or(LineError::Timestamp)?);
        cur.skip_spaces();
    }
    match cur.peek() {
        None | Some(b'#') => Ok(Sample {
            name,
            labels,
            value,
            timestamp,
        }),
        Some(_) => Err(LineError::Trailing),
    }
}

pub(crate) fn is_name_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || (!first && b.is_ascii_digit())
}

pub(crate) fn is_label_name_byte(b: u8, first: bool) -> bool {
    b != b':' && is_name_byte(b, first)
}

fn parse_labels<'a>(cur: &mut Cursor<'a>) -> Result<Vec<(&'a str, Cow<'a, str>)>, LineError> {
    let mut labels = Vec::new();
    loop {
        cur.skip_spaces();
        if cur.peek().ok_or(LineError::Labels)? == b'}' {
            cur.pos += 1;
            return Ok(labels);
        }
        let key = cur.take_while(is_label_name_byte);
        if key.is_empty() {
            return Err(LineError::Labels);
        }
        cur.skip_spaces();
        cur.expect(b'=')?;
        cur.skip_spaces();
        cur.expect(b'"')?;
        let value = parse_label_value(cur)?;
        labels.push((key, value));
        cur.skip_spaces();
        match cur.peek() {
            Some(b',') => cur.pos += 1,
            Some(b'}') => {}
            _ => return Err(LineError::Labels),
        }
    }
}

/// Reads a label value after its opening quote, through the closing quote.
fn parse_label_value<'a>(cur: &mut Cursor<'a>) -> Result<Cow<'a, str>, LineError> {
    let rest = cur.rest();
    let mut owned: Option<String> = None;
    let mut chars = rest.char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '"' => {
                cur.pos += i + 1;
                return Ok(owned.map_or(Cow::Borrowed(&rest[..i]), Cow::Owned));
            }
            '\\' => {
                let buf = owned.get_or_insert_with(|| rest[..i].to_owned());
                buf.push(match chars.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, '\\')) => '\\',
                    Some((_, '"')) => '"',
                    Some(_) => return Err(LineError::Escape),
                    None => return Err(LineError::Labels),
                });
            }
            c => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(c);
                }
            }
        }
    }
    Err(LineError::Labels)
}

/// `# HELP` text escapes only `\\` and `\n`; any other backslash is kept as written.
fn unescape_help(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn parse_value(token: &str) -> Option<f64> {
    match token {
        "" => None,
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        // Rust also accepts "infinity" and friends; the format does not.
        t if t
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
        {
            None
        }
        t => t.parse().ok(),
    }
}

fn parse_timestamp(token: &str) -> Option<f64> {
    parse_value(token).filter(|t| t.is_finite())
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn expect(&mut self, byte: u8) -> Result<(), LineError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(LineError::Labels)
        }
    }

    /// Skips spaces, tabs and carriage returns; whether it skipped any.
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
        self.pos > start
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

    #[test]
    fn parses_labels_values_and_timestamps() {
        let s =
            parse_line(r#"vllm:num_requests_running{model_name="m",engine="0"} 3 1700000000000"#)
                .unwrap();
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(s.label("model_name"), Some("m"));
        assert_eq!(s.label("engine"), Some("0"));
        assert_eq!(s.value, 3.0);
        assert_eq!(s.timestamp, Some(1.7e12));
        let s = parse_line("plain_metric 1.5e3").unwrap();
        assert!(s.labels.is_empty());
        assert_eq!((s.value, s.timestamp), (1500.0, None));
        assert!(parse_line(r#"m{a="x",} +Inf"#).unwrap().value.is_infinite());
        assert!(parse_line("m NaN").unwrap().value.is_nan());
        assert_eq!(parse_line("m 2 # {trace_id=\"a\"} 1").unwrap().value, 2.0);
        let s = parse_line("m 2 17.5 # {trace_id=\"a\"} 1\r").unwrap();
        assert_eq!((s.value, s.timestamp), (2.0, Some(17.5)));
        assert_eq!(parse_line("m 3\r").unwrap().value, 3.0);
        assert_eq!(parse_line("m{} -Inf").unwrap().value, f64::NEG_INFINITY);
        assert_eq!(parse_line("  m\t4").unwrap().value, 4.0);
    }

    #[test]
    fn unescapes_label_values() {
        let s = parse_line(r#"m{path="a\"b\\c\nd",u="héllo",e=""} 1"#).unwrap();
        assert_eq!(s.label("path"), Some("a\"b\\c\nd"));
        assert_eq!(s.label("u"), Some("héllo"));
        assert_eq!(s.label("e"), Some(""));
        assert!(s.has_labels(&[("u", "héllo"), ("e", "")]));
        assert!(!s.has_labels(&[("u", "hello")]));
    }

    #[test]
    fn comments_help_and_type() {
        assert_eq!(parse_any("").unwrap(), Line::Blank);
        assert_eq!(parse_any("  \r").unwrap(), Line::Blank);
        assert_eq!(parse_any("# EOF").unwrap(), Line::Comment);
        assert_eq!(parse_any("#HELPx y").unwrap(), Line::Comment);
        assert_eq!(
            parse_any(r"# HELP m a \\ b\nc \q").unwrap(),
            Line::Help {
                name: "m",
                text: "a \\ b\nc \\q".into()
            }
        );
        assert_eq!(
            parse_any("# TYPE vllm:x histogram\r").unwrap(),
            Line::Type {
                name: "vllm:x",
                kind: MetricType::Histogram
            }
        );
        assert_eq!(parse_any("# TYPE m bogus"), Err(LineError::Type));
        assert_eq!(parse_any("# TYPE m"), Err(LineError::Type));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for (line, why) in [
            ("{a=\"b\"} 1", LineError::Name),
            ("9m 1", LineError::Name),
            ("m{a=b} 1", LineError::Labels),
            ("m{a=\"b\" 1", LineError::Labels),
            ("m{a:b=\"c\"} 1", LineError::Labels),
            ("m{a=\"b", LineError::Labels),
            ("m{a=\"\\q\"} 1", LineError::Escape),
            ("m 1 2 3", LineError::Trailing),
            ("m", LineError::Value),
            ("m abc", LineError::Value),
            ("m infinity", LineError::Value),
            ("m 1 x", LineError::Timestamp),
            ("m 1 NaN", LineError::Timestamp),
        ] {
            assert_eq!(parse_any(line), Err(why), "{line:?}");
            assert!(parse_line(line).is_none());
        }
        let text = "# HELP a b\na 1\nbad line here\nb{x=\"y\"} 2\n# EOF\n";
        let names: Vec<_> = samples(text).map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
