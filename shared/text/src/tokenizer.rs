//! Tokenizers: any HF `tokenizer.json`, and the byte-level one of our own models.

use std::path::Path;

use crate::TextError;

/// The end-of-text token of the byte-level tokenizer, and its id (after the 256 bytes).
pub const BYTE_LEVEL_EOS: &str = "<|endoftext|>";
/// The padding token of the byte-level tokenizer (id 257).
pub const BYTE_LEVEL_PAD: &str = "<|pad|>";

/// End-of-text tokens of common HF tokenizers, in the order they are looked for.
const EOS_CANDIDATES: [&str; 5] = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>", "<eos>"];
const EOS_LIST: &str = "<|endoftext|>, </s>, <|end_of_text|>, <|eot_id|>, <eos>";
const PAD_CANDIDATES: [&str; 3] = ["<|pad|>", "<pad>", "[PAD]"];

/// A tokenizer with the two special ids training needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos: u32,
    pad: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab", &self.vocab_size()).field("eos", &self.eos).finish()
    }
}

impl Tokenizer {
    /// The byte-level tokenizer of the project's own models: one token per byte (GPT-2's
    /// byte-to-character mapping, no merges), then `<|endoftext|>` = 256 and `<|pad|>` = 257.
    /// Any UTF-8 text round-trips; there is no unknown token.
    pub fn byte_level() -> Self {
        Self::from_json(&byte_level_json()).expect("the byte-level tokenizer definition is valid")
    }

    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let json = std::fs::read_to_string(path)
            .map_err(|source| TextError::Io { path: path.display().to_string(), source })?;
        Self::from_json(&json)
    }

    /// Parses `tokenizer.json` text; the end-of-text token must be one of the known names.
    pub fn from_json(json: &str) -> Result<Self, TextError> {
        let inner: tokenizers::Tokenizer = json.parse().map_err(|e| TextError::Tokenizer(format!("{e}")))?;
        let eos = EOS_CANDIDATES.iter().find_map(|t| inner.token_to_id(t)).ok_or(TextError::NoEndOfText(EOS_LIST))?;
        let pad = PAD_CANDIDATES.iter().find_map(|t| inner.token_to_id(t)).unwrap_or(eos);
        Ok(Self { inner, eos, pad })
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> String {
        self.inner.to_string(true).expect("a loaded tokenizer serialises")
    }

    /// Token ids of `text`, with no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let encoding = self.inner.encode(text, false).map_err(|e| TextError::Tokenizer(format!("{e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        self.inner.decode(ids, true).map_err(|e| TextError::Tokenizer(format!("{e}")))
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The number of token ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// GPT-2's reversible byte-to-character map: printable bytes map to themselves, the rest
/// to characters from U+0100 on, so that every token is a visible string.
fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, 33..=126 | 161..=172 | 174..=255);
        map[byte as usize] = if printable {
            char::from(byte)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
            next += 1;
            c
        };
    }
    map
}

fn byte_level_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        byte_to_char().iter().enumerate().map(|(id, c)| (c.to_string(), serde_json::json!(id))).collect();
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let byte_level =
        serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(256, BYTE_LEVEL_EOS), special(257, BYTE_LEVEL_PAD)],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn byte_level_is_one_token_per_byte_with_specials_after() {
        let t = Tokenizer::byte_level();
        assert_eq!(t.vocab_size(), 258);
        assert_eq!((t.eos_id(), t.pad_id()), (256, 257));
        assert_eq!(t.encode("Hi é").expect("encode"), vec![72, 105, 32, 0xC3, 0xA9]);
        assert_eq!(t.encode("a<|endoftext|>").expect("encode"), vec![97, 256]);
    }

    #[test]
    fn byte_level_survives_its_own_tokenizer_json() {
        let t = Tokenizer::byte_level();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, t.to_json()).expect("write");
        let again = Tokenizer::from_file(&path).expect("read back");
        assert_eq!(again.encode("round trip\n\t").expect("encode"), t.encode("round trip\n\t").expect("encode"));
    }

    #[test]
    fn a_tokenizer_without_end_of_text_is_refused() {
        let json = byte_level_json().replace(BYTE_LEVEL_EOS, "<|something|>");
        assert!(matches!(Tokenizer::from_json(&json), Err(TextError::NoEndOfText(_))));
        assert!(matches!(Tokenizer::from_json("{}"), Err(TextError::Tokenizer(_))));
    }

    proptest! {
        #[test]
        fn any_text_round_trips(text in "\\PC{0,40}") {
            let t = Tokenizer::byte_level();
            let ids = t.encode(&text).expect("encode");
            prop_assert_eq!(ids.len(), text.len());
            prop_assert_eq!(t.decode(&ids).expect("decode"), text);
        }
    }
}
