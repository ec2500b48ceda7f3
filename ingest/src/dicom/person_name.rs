//! Person names (VR PN): the text as stored, and the words QIDO-RS fuzzy matching compares.
//!
//! A PN value has up to three component groups separated by `=` (alphabetic, ideographic,
//! phonetic), each with up to five components separated by `^` (family, given, middle,
//! prefix, suffix). Fuzzy matching (PS3.18 8.3.4.6, "fuzzymatching=true") is left to the
//! implementation; ours matches a query word against the start of any name word, so the
//! words are kept case-folded and split on `^`, `=` and spaces, whatever group they are in.

/// A person name as stored in the instance, and its searchable words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName {
    /// The value in DICOM's form, e.g. `Doe^John^^Dr` (trailing padding removed).
    pub text: String,
    /// The lowercased non-empty words of every component of every group, in order,
    /// without repeats, e.g. `["doe", "john", "dr"]`.
    pub words: Vec<String>,
}

impl PersonName {
    /// Reads one PN value. `None` when it holds no name at all.
    pub fn parse(value: &str) -> Option<PersonName> {
        // Trailing empty groups (`Wang^XiaoDong=王^小東=`) carry nothing.
        let text = value
            .trim_end_matches([' ', '\0', '='])
            .trim_start_matches(' ');
        let mut words: Vec<String> = Vec::new();
        for word in text.split(['=', '^', ' ']).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            if !words.contains(&word) {
                words.push(word);
            }
        }
        if text.trim_matches(['^', '=', ' ']).is_empty() {
            return None;
        }
        Some(PersonName {
            text: text.to_string(),
            words,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_components_and_spaces_become_words() {
        let name = PersonName::parse("Yamada^Tarou=山田^太郎=やまだ^たろう ").unwrap();
        assert_eq!(name.text, "Yamada^Tarou=山田^太郎=やまだ^たろう");
        assert_eq!(
            name.words,
            ["yamada", "tarou", "山田", "太郎", "やまだ", "たろう"]
        );
        let name = PersonName::parse("van der Berg^Anne Marie^^Dr").unwrap();
        assert_eq!(name.words, ["van", "der", "berg", "anne", "marie", "dr"]);
    }

    #[test]
    fn an_empty_name_is_none() {
        assert_eq!(PersonName::parse("^^ "), None);
        assert_eq!(PersonName::parse(""), None);
    }
}
