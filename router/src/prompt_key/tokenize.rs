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

    /// The shape of the GPU test model's tokenizer (`shared/gpu/make_model.py`), small: a
    /// byte-level BPE with the specials `<s>`, `</s>`, `<pad>`, `<|user|>`, `<|assistant|>`,
    /// `<|system|>` (ids 0..6) and a post-processor that adds BOS `<s>`; saved as
    /// `dir/tokenizer.json`, with `dir/tokenizer_config.json` holding the model's chat template.
    pub(crate) fn gpu_like_model(dir: &Path) -> PathBuf {
        use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
        use tokenizers::models::bpe::{BPE, BpeTrainer};
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::processors::template::TemplateProcessing;

        let specials = [
            "<s>",
            "</s>",
            "<pad>",
            "<|user|>",
            "<|assistant|>",
            "<|system|>",
        ];
        let mut tok = Tokenizer::new(BPE::default());
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(600)
            .show_progress(false)
            .special_tokens(
                specials
                    .iter()
                    .map(|s| AddedToken::from(*s, true))
                    .collect(),
            )
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let corpus = [
            "You are a helpful assistant. Answer the question briefly.",
            "What is the capital of France? Paris is the capital of France.",
            "Tell me a story about a cat and a dog who were friends.",
            "Write a Python function that adds two numbers and returns the sum.",
        ];
        tok.train(&mut trainer, corpus.iter()).unwrap();
        let template = TemplateProcessing::builder()
            .try_single("<s> $A")
            .unwrap()
            .try_pair("<s> $A <s> $B")
            .unwrap()
            .special_tokens(vec![("<s>", 0)])
            .build()
            .unwrap();
        tok.with_post_processor(Some(template));
        let path = dir.join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
            "pad_token": "<pad>", "model_max_length": 16384,
            "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"});
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
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
            keyer
                .encode("what is the capital of france", false)
                .unwrap()
                .len(),
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
