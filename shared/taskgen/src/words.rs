//! The seeded random source and the small vocabulary that families and the corpus share.
//!
//! Every draw goes through `u32` ranges: `usize` sampling could differ between 32- and
//! 64-bit builds, and the promise is byte-identical output everywhere.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// The random source of every generator.
pub(crate) type Rng = ChaCha8Rng;

/// A generator seeded with `seed` on a stream of its own per `purpose`.
///
/// Separate streams keep unrelated draws apart: the instruct and DPO rows of a family
/// share their items because picking rejected answers draws from another stream, and two
/// families with the same seed do not walk in step.
pub(crate) fn seeded(seed: u64, purpose: &str) -> Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(fnv1a(purpose));
    rng
}

/// FNV-1a: a fixed, documented hash, unlike std's, which may change between releases.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A number in `0..n`; `n` must be positive.
pub(crate) fn below(rng: &mut Rng, n: u32) -> u32 {
    rng.random_range(0..n)
}

/// A number in `low..=high`.
pub(crate) fn between(rng: &mut Rng, low: u32, high: u32) -> u32 {
    rng.random_range(low..=high)
}

/// True with probability one half.
pub(crate) fn coin(rng: &mut Rng) -> bool {
    below(rng, 2) == 1
}

/// One element of a non-empty slice.
pub(crate) fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    let len = u32::try_from(items.len()).expect("slices drawn from are small");
    items[below(rng, len) as usize]
}

/// Number words, indexed by value.
pub(crate) const NUMBER_WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Things, for sentences and as words to transform.
pub(crate) const NOUNS: &[&str] = &[
    "fox", "dog", "cat", "bird", "fish", "tree", "house", "river", "stone", "apple", "book", "boat", "hill", "cloud",
    "lamp", "door", "road", "field", "horse", "sheep", "garden", "window", "bread", "flower", "mouse", "table",
    "chair", "candle", "forest", "basket", "letter", "rabbit", "kettle", "button", "ladder", "pocket", "wagon",
    "meadow", "island", "tower",
];

/// Qualities, for sentences and as words to transform.
pub(crate) const ADJECTIVES: &[&str] = &[
    "red", "small", "big", "green", "old", "young", "happy", "quiet", "brown", "blue", "warm", "cold", "tall", "short",
    "soft", "bright", "dark", "slow", "quick", "round", "sleepy", "gentle", "yellow", "heavy", "empty",
];

/// Actions, third person singular, for sentences.
pub(crate) const VERBS: &[&str] =
    &["sees", "likes", "finds", "follows", "watches", "helps", "carries", "pulls", "meets", "hears", "wants", "holds"];

/// A real word from the shared vocabulary.
pub(crate) fn known_word(rng: &mut Rng) -> &'static str {
    if coin(rng) {
        pick(rng, NOUNS)
    } else {
        pick(rng, ADJECTIVES)
    }
}

/// A pronounceable made-up word of two or three syllables (4 to 9 letters).
///
/// Text families draw these as well as real words, so a model has to learn the
/// transformation letter by letter rather than recall a few hundred answers.
pub(crate) fn made_up_word(rng: &mut Rng) -> String {
    const ONSETS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    const CODAS: &[u8] = b"nrsl";
    let syllables = between(rng, 2, 3);
    let mut word = String::new();
    for _ in 0..syllables {
        word.push(char::from(pick(rng, ONSETS)));
        word.push(char::from(pick(rng, VOWELS)));
        if below(rng, 10) < 3 {
            word.push(char::from(pick(rng, CODAS)));
        }
    }
    word
}

/// A word for a text task: half the time a real one, otherwise made up.
pub(crate) fn task_word(rng: &mut Rng) -> String {
    if coin(rng) {
        known_word(rng).to_owned()
    } else {
        made_up_word(rng)
    }
}
