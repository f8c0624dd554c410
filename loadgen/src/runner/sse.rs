//! Incremental parsing of a server-sent event stream into `data:` payloads.

/// Splits a byte stream into SSE `data:` payloads, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds bytes; returns the `data:` payloads of every line completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_across_chunk_boundaries() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: {\"a\"").is_empty());
        assert_eq!(p.feed(b":1}\n\ndata: [DO"), vec!["{\"a\":1}"]);
        assert_eq!(p.feed(b"NE]\r\n\r\n: comment\n"), vec!["[DONE]"]);
        assert_eq!(p.feed(b"event: x\ndata:tight\n"), vec!["tight"]);
    }
}
