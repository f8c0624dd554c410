//! Token counts: from a `tokenizer.json` when given, else from the server's usage report.

use crate::dataset::{RequestSpec, render_text};
use crate::error::{Error, Result};
use crate::record::RequestRecord;
use std::path::{Path, PathBuf};

/// Where token counts come from.
pub enum TokenCounter {
    /// The `usage` object of each response (streams ask for it with `include_usage`).
    ServerUsage,
    /// A Hugging Face `tokenizer.json`, applied to the rendered prompt and the generated text.
    Tokenizer {
        /// The loaded tokenizer.
        tokenizer: Box<tokenizers::Tokenizer>,
        /// Its file.
        path: PathBuf,
    },
}

impl TokenCounter {
    /// Loads the tokenizer at `path`, or counts from server usage without one.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::ServerUsage);
        };
        let tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self::Tokenizer {
            tokenizer: Box::new(tokenizer),
            path: path.to_path_buf(),
        })
    }

    /// Names the source for the output: "tokenizer:PATH" or "server_usage".
    pub fn source(&self) -> String {
        match self {
            Self::ServerUsage => "server_usage".into(),
            Self::Tokenizer { path, .. } => format!("tokenizer:{}", path.display()),
        }
    }

    /// True when records must keep their generated text.
    pub fn needs_text(&self) -> bool {
        matches!(self, Self::Tokenizer { .. })
    }

    /// Fills in token counts with the tokenizer (records keep server counts otherwise).
    pub fn count(&self, records: &mut [RequestRecord], requests: &[RequestSpec]) -> Result<()> {
        let Self::Tokenizer { tokenizer, path } = self else {
            return Ok(());
        };
        let len = |text: &str| -> Result<u64> {
            tokenizer
                .encode(text, false)
                .map(|e| e.len() as u64)
                .map_err(|e| Error::Tokenizer {
                    path: path.clone(),
                    reason: e.to_string(),
                })
        };
        for r in records.iter_mut() {
            if let Some(spec) = requests.get(r.index) {
                r.input_tokens = len(&render_text(&spec.messages))?;
            }
            r.output_tokens = len(&r.generated)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Message;

    /// A word-level tokenizer.json split on whitespace: every word is one token.
    pub(crate) const WORD_TOKENIZER: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
      "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn tokenizer_counts_prompt_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, WORD_TOKENIZER).unwrap();
        let counter = TokenCounter::load(Some(&path)).unwrap();
        assert!(counter.source().starts_with("tokenizer:"));
        let spec = RequestSpec {
            messages: vec![Message::new("user", "one two three")],
            output_len: 3,
            group: 0,
            priority: None,
        };
        let mut recs = vec![RequestRecord {
            generated: "hello big world".into(),
            input_tokens: 999,
            ..RequestRecord::default()
        }];
        counter.count(&mut recs, &[spec]).unwrap();
        // "User: one two three\nAssistant:" -> User : one two three Assistant : = 7 words/punct.
        assert_eq!(recs[0].input_tokens, 7);
        assert_eq!(recs[0].output_tokens, 3);
    }

    #[test]
    fn missing_tokenizer_is_a_clear_error() {
        let err = TokenCounter::load(Some(Path::new("/nope/tokenizer.json")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nope/tokenizer.json"), "{err}");
    }
}
