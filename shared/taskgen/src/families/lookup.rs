//! The capital lookup family, over a table of made-up countries.
//!
//! The names are invented so that no pretrained model, ours or anyone's, can know them:
//! whatever a model answers right was learnt from the task's own rows.

use super::{phrasing, Example, Family};
use crate::words::{below, coin, Rng};
use crate::Knowledge;

/// Fictional countries and their capitals. Every name is unique in the table, so either
/// column determines the other.
pub(crate) const CAPITALS: [(&str, &str); 50] = [
    ("Zarnovia", "Keltrup"),
    ("Quenlia", "Morvath"),
    ("Brastovia", "Ilvenka"),
    ("Olmaria", "Tesskor"),
    ("Vendrakia", "Pallumo"),
    ("Ystrelle", "Gorvane"),
    ("Cavoria", "Nimbrel"),
    ("Draskinor", "Oruveth"),
    ("Feltania", "Quorrin"),
    ("Gallowen", "Sembrik"),
    ("Harnuvia", "Taldesk"),
    ("Istravel", "Vorlund"),
    ("Jorrmark", "Ezkaddi"),
    ("Kelvoria", "Brannoth"),
    ("Lunestra", "Dovikar"),
    ("Mardovia", "Fenlasko"),
    ("Norvanth", "Gurrimel"),
    ("Ophirelle", "Hastrope"),
    ("Pellandor", "Ixelburg"),
    ("Qastrine", "Jennavar"),
    ("Rovenmark", "Kolvetta"),
    ("Sulvaria", "Lirrendo"),
    ("Tarkesh", "Mossgard"),
    ("Umbravel", "Nuvella"),
    ("Veskaria", "Oskareth"),
    ("Wendolin", "Pendrovi"),
    ("Xantoria", "Qualmira"),
    ("Yorvessa", "Rethvik"),
    ("Zelmuria", "Sarnodel"),
    ("Arvendia", "Tuvessa"),
    ("Belkarra", "Umberlin"),
    ("Corvassa", "Valdrossa"),
    ("Dunmerrow", "Wexmoor"),
    ("Elvessia", "Yellarin"),
    ("Fandoria", "Zorvik"),
    ("Grisholm", "Ambrecht"),
    ("Hestovar", "Bellvarro"),
    ("Ilmarra", "Cindrath"),
    ("Jastrova", "Dalmerro"),
    ("Korinthal", "Estravon"),
    ("Lorvenna", "Folkvarra"),
    ("Mystrava", "Gildemar"),
    ("Nelloria", "Hollenvik"),
    ("Orsandel", "Irrenmoor"),
    ("Prevakia", "Jolvessa"),
    ("Quillmora", "Kastrevo"),
    ("Rastevan", "Lummavik"),
    ("Solvenna", "Merrowdin"),
    ("Trembria", "Norrikel"),
    ("Ulvassar", "Ostrelda"),
];

const CAPITAL_INSTRUCTIONS: &[&str] = &[
    "What is the capital of this country?",
    "Name the capital city of the country.",
    "Which city is the capital of this country?",
];

const COUNTRY_INSTRUCTIONS: &[&str] = &[
    "Which country has this city as its capital?",
    "Name the country whose capital is this city.",
    "This city is a capital. Of which country?",
];

/// Both directions' instructions, for [`Family::instructions`].
const ALL_INSTRUCTIONS: &[&str] = &[
    CAPITAL_INSTRUCTIONS[0],
    CAPITAL_INSTRUCTIONS[1],
    CAPITAL_INSTRUCTIONS[2],
    COUNTRY_INSTRUCTIONS[0],
    COUNTRY_INSTRUCTIONS[1],
    COUNTRY_INSTRUCTIONS[2],
];

pub(super) const CAPITAL_LOOKUP: Family = Family {
    name: "capital-lookup",
    description:
        "Name the capital of one of 50 made-up countries, or the country of a capital (\"Zarnovia\" -> \"Keltrup\").",
    knowledge: Knowledge::New,
    instructions: ALL_INSTRUCTIONS,
    max_rows: Some(CAPITALS.len() * ALL_INSTRUCTIONS.len()),
    sample: capital_lookup,
};

fn capital_lookup(rng: &mut Rng) -> Example {
    let index = below(rng, CAPITALS.len() as u32) as usize;
    // Another entry's answer is the plausible mistake: a real name, just the wrong one.
    let other = (index + 1 + below(rng, CAPITALS.len() as u32 - 1) as usize) % CAPITALS.len();
    let ((country, capital), (other_country, other_capital)) = (CAPITALS[index], CAPITALS[other]);
    // Asking both ways doubles the rows a 50-entry table can give without repeating one.
    if coin(rng) {
        let instruction = phrasing(rng, CAPITAL_INSTRUCTIONS);
        let wrong = vec![other_capital.to_owned(), country.to_owned()];
        Example { instruction, input: country.to_owned(), output: capital.to_owned(), wrong }
    } else {
        let instruction = phrasing(rng, COUNTRY_INSTRUCTIONS);
        let wrong = vec![other_country.to_owned(), capital.to_owned()];
        Example { instruction, input: capital.to_owned(), output: country.to_owned(), wrong }
    }
}
