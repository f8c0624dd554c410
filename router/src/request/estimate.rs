//! The prompt-token estimate, in one place: token ids count as they are, text counts as its
//! bytes over a bytes-per-token ratio, rounded up. Each key mode only chooses the ratio:
//! byte mode its configured `bytes_per_token`; token mode the ratio measured on the first
//! prompt it tokenized (further text prompts of a batch are not tokenized);
//! [`DEFAULT_BYTES_PER_TOKEN`] before any mode applies or when nothing was measured.

use super::RestPrompts;
use crate::request::Prompt;

/// Bytes per token assumed when nothing better is known (also byte mode's default).
pub const DEFAULT_BYTES_PER_TOKEN: f64 = 4.0;

/// Estimated tokens of every prompt of a request: `prompt` plus the `rest` of a batch.
pub fn estimate_tokens(prompt: &Prompt, rest: &RestPrompts, bytes_per_token: f64) -> usize {
    let first = match prompt {
        Prompt::Empty => 0,
        Prompt::Text(text) => text_tokens(text.len(), bytes_per_token),
        Prompt::Tokens(ids) => ids.len(),
    };
    first + text_tokens(rest.bytes, bytes_per_token) + rest.tokens
}

/// Tokens of `bytes` of text at `bytes_per_token` (clamped to at least 0.1), rounded up.
pub(super) fn text_tokens(bytes: usize, bytes_per_token: f64) -> usize {
    let per_token = if bytes_per_token.is_finite() {
        bytes_per_token.max(0.1)
    } else {
        DEFAULT_BYTES_PER_TOKEN
    };
    (bytes as f64 / per_token).ceil() as usize
}

/// Bytes per token measured on a text of `bytes` bytes that tokenized to `tokens` ids, or
/// the default for an empty tokenization.
pub(crate) fn measured_bytes_per_token(bytes: usize, tokens: usize) -> f64 {
    if tokens == 0 || bytes == 0 {
        DEFAULT_BYTES_PER_TOKEN
    } else {
        bytes as f64 / tokens as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rounds_up_and_ids_count_exactly() {
        let none = RestPrompts::default();
        assert_eq!(estimate_tokens(&Prompt::Empty, &none, 4.0), 0);
        assert_eq!(
            estimate_tokens(&Prompt::Text("abcdefghi".into()), &none, 4.0),
            3
        );
        assert_eq!(
            estimate_tokens(&Prompt::Text("abcdefgh".into()), &none, 2.0),
            4
        );
        assert_eq!(
            estimate_tokens(&Prompt::Tokens(vec![1, 2, 3]), &none, 9.0),
            3
        );
        let rest = RestPrompts {
            bytes: 7,
            tokens: 5,
        };
        assert_eq!(
            estimate_tokens(&Prompt::Tokens(vec![1]), &rest, 4.0),
            1 + 2 + 5
        );
        assert_eq!(
            estimate_tokens(&Prompt::Text("ab".into()), &rest, 1.0),
            2 + 7 + 5
        );
    }

    #[test]
    fn degenerate_ratios_stay_finite() {
        assert_eq!(text_tokens(10, 0.0), 100);
        assert_eq!(text_tokens(10, -3.0), 100);
        assert_eq!(text_tokens(10, f64::NAN), 3);
        assert_eq!(text_tokens(10, f64::INFINITY), 3);
        assert_eq!(text_tokens(0, 4.0), 0);
        assert_eq!(measured_bytes_per_token(12, 4), 3.0);
        assert_eq!(measured_bytes_per_token(12, 0), DEFAULT_BYTES_PER_TOKEN);
    }
}
