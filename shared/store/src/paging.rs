//! Keyset paging tokens: a page ends at a row's (time, id), and the next page starts after
//! it. One format for every paged query, opaque to clients (`<unix ms>:<id>`).

/// The token for a page that ended at the row (`at_ms`, `id`).
pub fn page_token(at_ms: i64, id: &str) -> String {
    format!("{at_ms}:{id}")
}

/// Reads a token made by [`page_token`]; `None` if it is not one.
pub fn parse_page_token(token: &str) -> Option<(i64, String)> {
    let (at, id) = token.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token reads back as what made it; anything else is refused.
    #[test]
    fn tokens_round_trip() {
        assert_eq!(parse_page_token(&page_token(42, "a:b")), Some((42, "a:b".to_owned())));
        assert_eq!(parse_page_token("garbage"), None);
        assert_eq!(parse_page_token("x:1"), None);
    }
}
