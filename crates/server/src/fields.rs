//! Bounds on the string fields of requests, and how errors quote what a
//! client sent: never more than [`QUOTE_CHARS`] characters, so an error
//! about a 4 MB name stays far below the gRPC metadata limit (a message
//! over it reaches the client as RESOURCE_EXHAUSTED, hiding the real error).

use crate::error::ServerError;

/// Longest `tenant`, `model`, `allowed_models` entry, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `decision_id` (ours are 36-character UUIDs).
pub const MAX_DECISION_ID_BYTES: usize = 128;
/// Most entries in `constraints.allowed_models`.
pub const MAX_ALLOWED_MODELS: usize = 256;
/// Characters of a client's string an error message repeats.
pub const QUOTE_CHARS: usize = 64;

/// `s` as an error message quotes it: backquoted, cut to
/// [`QUOTE_CHARS`] characters with its full length noted.
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => format!("`{s}`"),
        Some((cut, _)) => format!("`{}…` ({} bytes)", &s[..cut], s.len()),
    }
}

/// Refuses a name over `max` bytes, naming the field.
pub fn check_len(field: &str, s: &str, max: usize) -> Result<(), ServerError> {
    if s.len() > max {
        return Err(ServerError::invalid(
            field,
            format!("is {} bytes, over the maximum of {max}", s.len()),
        ));
    }
    Ok(())
}

/// Whether `c` renders as nothing: format characters such as zero-width
/// spaces and joiners, direction marks, the BOM, the soft hyphen, and
/// variation selectors. A prompt made only of these (and white space) has
/// nothing for the encoder to read.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_long_strings_on_a_char_boundary() {
        assert_eq!(quote("gpt"), "`gpt`");
        let long = "é".repeat(1000);
        let q = quote(&long);
        assert!(q.chars().count() < QUOTE_CHARS + 20, "{q}");
        assert!(q.ends_with("(2000 bytes)"), "{q}");
    }

    #[test]
    fn zero_width_and_format_characters_are_invisible_letters_are_not() {
        assert!("\u{200B}\u{200C}\u{200D}\u{FEFF} \u{2060}\t"
            .chars()
            .all(is_invisible));
        assert!(!"a\u{200B}".chars().all(is_invisible));
        assert!(!"日本".chars().all(is_invisible));
    }
}
