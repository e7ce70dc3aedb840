//! The pretraining corpus: lines of simple English-like text from templates.
//!
//! Besides plain sentences, counting and alphabet runs, it demonstrates every half-known
//! family (arithmetic, reversing, upper case, comparing, parity) in wordings unlike the
//! task rows' instructions, and nothing of the new families: no made-up country names, no
//! dates, Roman numerals, JSON, sorted or shifted letters, or vowel counts. Tests hold it
//! to that.

use crate::words::{below, between, coin, known_word, pick, seeded, Rng, ADJECTIVES, NOUNS, NUMBER_WORDS, VERBS};

/// `bytes` bytes of ASCII text, lines ending in `\n` (the last one cut where the length
/// runs out), the same for the same seed on every platform. A shorter corpus of a seed
/// is a prefix of a longer one.
pub fn corpus(seed: u64, bytes: usize) -> String {
    let mut rng = seeded(seed, "corpus");
    let mut text = String::with_capacity(bytes + 128);
    while text.len() < bytes {
        text.push_str(&line(&mut rng));
        text.push('\n');
    }
    // All ASCII, so every byte is a char boundary.
    text.truncate(bytes);
    text
}

/// Makes one line of some kind.
type LineMaker = fn(&mut Rng) -> String;

/// The kinds of line, with their weights out of 100.
const LINES: [(u32, LineMaker); 9] = [
    (30, sentence),
    (6, counting),
    (6, alphabet_run),
    (14, arithmetic),
    (9, reversal),
    (9, upper_case),
    (9, comparison),
    (8, parity),
    (9, sentence_pair),
];

fn line(rng: &mut Rng) -> String {
    let total: u32 = LINES.iter().map(|(weight, _)| weight).sum();
    let mut roll = below(rng, total);
    for (weight, make) in LINES {
        if roll < weight {
            return make(rng);
        }
        roll -= weight;
    }
    unreachable!("the roll is below the total weight")
}

fn sentence(rng: &mut Rng) -> String {
    let (a1, n1, verb, a2, n2) =
        (pick(rng, ADJECTIVES), pick(rng, NOUNS), pick(rng, VERBS), pick(rng, ADJECTIVES), pick(rng, NOUNS));
    match below(rng, 4) {
        0 => format!("the {a1} {n1} {verb} a {a2} {n2}."),
        1 => format!("a {n1} is {a1}."),
        2 => format!("the {n1} and the {n2} are {a1}."),
        _ => format!("the {n1} {verb} the {n2}."),
    }
}

/// Two short sentences about the same thing, so the text has some continuity.
fn sentence_pair(rng: &mut Rng) -> String {
    let (noun, a1, a2, verb, other) =
        (pick(rng, NOUNS), pick(rng, ADJECTIVES), pick(rng, ADJECTIVES), pick(rng, VERBS), pick(rng, NOUNS));
    format!("there is a {a1} {noun}. the {noun} {verb} a {a2} {other}.")
}

fn counting(rng: &mut Rng) -> String {
    let length = between(rng, 3, 7);
    let numbers: Vec<String> = if coin(rng) {
        let start = below(rng, 21 - length) as usize;
        NUMBER_WORDS[start..start + length as usize].iter().map(|w| (*w).to_owned()).collect()
    } else {
        let start = below(rng, 95);
        (start..start + length).map(|n| n.to_string()).collect()
    };
    numbers.join(" ")
}

fn alphabet_run(rng: &mut Rng) -> String {
    let length = between(rng, 4, 8);
    let start = below(rng, 27 - length) as u8;
    let letters: Vec<String> = (start..start + length as u8).map(|i| char::from(b'a' + i).to_string()).collect();
    letters.join(" ")
}

fn arithmetic(rng: &mut Rng) -> String {
    let subtract = coin(rng);
    if coin(rng) {
        // In words, small numbers only: the number words stop at twenty.
        let a = below(rng, 11);
        let b = below(rng, 11);
        let words = |n: u32| NUMBER_WORDS[n as usize];
        if subtract {
            let (a, b) = (a.max(b), a.min(b));
            format!("{} minus {} is {}.", words(a), words(b), words(a - b))
        } else {
            format!("{} plus {} is {}.", words(a), words(b), words(a + b))
        }
    } else {
        let a = below(rng, 100);
        let b = below(rng, 100);
        if subtract {
            let (a, b) = (a.max(b), a.min(b));
            format!("{a} - {b} = {}", a - b)
        } else {
            format!("{a} + {b} = {}", a + b)
        }
    }
}

fn reversal(rng: &mut Rng) -> String {
    let word = known_word(rng);
    let reversed: String = word.chars().rev().collect();
    if coin(rng) {
        format!("the reverse of {word} is {reversed}.")
    } else {
        format!("{word} read backwards is {reversed}.")
    }
}

fn upper_case(rng: &mut Rng) -> String {
    let text =
        if coin(rng) { format!("{} {}", pick(rng, ADJECTIVES), pick(rng, NOUNS)) } else { known_word(rng).into() };
    let loud = text.to_ascii_uppercase();
    if coin(rng) {
        format!("in big letters, {text} is {loud}.")
    } else {
        format!("shout {text} and you get {loud}.")
    }
}

fn comparison(rng: &mut Rng) -> String {
    let a = below(rng, 1000);
    let b = (a + between(rng, 1, 999)) % 1000;
    let (big, small) = (a.max(b), a.min(b));
    match below(rng, 3) {
        0 => format!("{big} is more than {small}."),
        1 => format!("of {a} and {b}, the bigger one is {big}."),
        _ => {
            let small = below(rng, 20);
            let big = between(rng, small + 1, 20);
            format!("{} is more than {}.", NUMBER_WORDS[big as usize], NUMBER_WORDS[small as usize])
        }
    }
}

fn parity(rng: &mut Rng) -> String {
    let n = below(rng, 10_000);
    let kind = if n.is_multiple_of(2) { "even" } else { "odd" };
    if coin(rng) {
        format!("{n} is an {kind} number.")
    } else if n <= 20 {
        format!("{} is {kind}.", NUMBER_WORDS[n as usize])
    } else {
        format!("{n} is {kind}.")
    }
}
