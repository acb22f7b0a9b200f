//! AMQP topic matching: words separated by `.`, `*` matches exactly one word,
//! `#` matches zero or more words.

/// True when `routing_key` matches the topic `pattern`.
pub(crate) fn matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    match_words(&pattern, &key)
}

fn match_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => {
            // `#` swallows 0..=len words; try the shortest first.
            (0..=key.len()).any(|skip| match_words(rest, &key[skip..]))
        }
        Some((&"*", rest)) => !key.is_empty() && match_words(rest, &key[1..]),
        Some((word, rest)) => key.first() == Some(word) && match_words(rest, &key[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn topic_patterns() {
        let cases = [
            ("ACCT.OPENED", "ACCT.OPENED", true),
            ("ACCT.OPENED", "ACCT.CLOSED", false),
            ("ACCT.*", "ACCT.OPENED", true),
            ("ACCT.*", "ACCT", false),
            ("ACCT.*", "ACCT.OPENED.EU", false),
            ("ACCT.#", "ACCT", true),
            ("ACCT.#", "ACCT.OPENED.EU", true),
            ("#", "", true),
            ("#", "anything.at.all", true),
            ("*.OPENED", "ACCT.OPENED", true),
            ("*.OPENED", "OPENED", false),
            ("#.EU", "ACCT.OPENED.EU", true),
            ("#.EU", "EU", true),
            ("ACCT.#.EU", "ACCT.EU", true),
            ("ACCT.#.EU", "ACCT.X.Y.EU", true),
            ("ACCT.#.EU", "ACCT.X.Y.US", false),
            ("*", "", true),
            ("*.*", "a", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
