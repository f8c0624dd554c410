//! Token mode: prompts tokenized with the model's `tokenizer.json`.
//!
//! Tokenizing is CPU work of up to tens of milliseconds for long prompts, so callers on the async
//! runtime run [`TokenKeyer::encode`] on a blocking thread (see [`super::PromptKeys::prepare`]).

use std::path::{Path, PathBuf};

use crate::Error;

/// A loaded tokenizer.
pub struct TokenKeyer {
    tokenizer: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TokenKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeyer")
            .field("path", &self.path)
            .finish()
    }
}

impl TokenKeyer {
    /// Loads `tokenizer.json` from `path`.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Config {
            origin: path.display().to_string(),
            key: "prefix.tokenizer".to_owned(),
            reason: format!("cannot load tokenizer: {e}"),
        })?;
        Ok(Self {
            tokenizer,
            path: path.to_owned(),
        })
    }

    /// Token ids of `text`; `add_special_tokens` runs the tokenizer's post-processor (BOS and
    /// the like), as vLLM does for completions. Blocking CPU work.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|enc| enc.get_ids().to_vec())
            .map_err(|e| Error::Tokenize {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{AddedToken, Tokenizer};

    /// Trains a word-level tokenizer (whitespace split, `[UNK]` for unknown words) on a tiny
    /// corpus and saves it as `dir/tokenizer.json`.
    pub(crate) fn tiny_tokenizer(dir: &Path) -> PathBuf {
        let model = WordLevel::builder()
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tok = Tokenizer::new(model);
        tok.with_pre_tokenizer(Some(Whitespace {}));
        let mut trainer: TrainerWrapper = WordLevelTrainer::builder()
            .show_progress(false)
            .special_tokens(vec![AddedToken::from("[UNK]", true)])
            .build()
            .unwrap()
            .into();
        let corpus = [
            "you are a helpful assistant answer the question",
            "what is the capital of france paris is the capital",
            "tell me a story about a cat and a dog",
            "<|im_start|> <|im_end|> system user assistant",
        ];
        tok.train(&mut trainer, corpus.iter()).unwrap();
        let path = dir.join("tokenizer.json");
        tok.save(&path, false).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::tiny_tokenizer;
    use super::*;

    #[test]
    fn encodes_words() {
        let dir = tempfile::tempdir().unwrap();
        let keyer = TokenKeyer::from_file(&tiny_tokenizer(dir.path())).unwrap();
        assert_eq!(
            keyer.encode("what is the capital of france", false).unwrap().len(),
            6
        );
        assert_eq!(
            keyer.encode("zebra", false).unwrap().len(),
            1,
            "unknown word -> [UNK]"
        );
    }

    #[test]
    fn load_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let e = TokenKeyer::from_file(&dir.path().join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope.json") && e.contains("prefix.tokenizer"),
            "{e}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert!(TokenKeyer::from_file(&bad).is_err());
    }
}
