//! The truncation rule for prompts longer than the encoder's window.
//!
//! Rule (documented in README and docs/ARCHITECTURE.md): a prompt whose
//! tokens exceed the window keeps its first `head` and last `tail` tokens
//! (head = ceil(budget / 2), tail = the rest), where budget is the window
//! minus the two special tokens. Why head and tail: real prompts put the
//! instruction at the start ("Summarize the following: ...") or at the end
//! ("... Given the above dialogue, write a summary"), and a pasted document in
//! between; the middle tells the least about the task.
//!
//! Before tokenizing, text longer than [`MAX_CHARS_EACH_SIDE`] characters on
//! each side is cut to its first and last that many characters, so a 100k
//! character paste costs no more to tokenize than a 16k one; at >= 4 chars a
//! token for English this never changes which tokens are kept for windows
//! up to 1024 tokens.

/// Characters kept from each end of a very long prompt before tokenizing.
pub const MAX_CHARS_EACH_SIDE: usize = 8192;

/// Cuts very long text to its first and last [`MAX_CHARS_EACH_SIDE`] characters.
pub fn clip_chars(text: &str) -> std::borrow::Cow<'_, str> {
    let n = text.chars().count();
    if n <= 2 * MAX_CHARS_EACH_SIDE {
        return std::borrow::Cow::Borrowed(text);
    }
    let head_end = text
        .char_indices()
        .nth(MAX_CHARS_EACH_SIDE)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let tail_start = text
        .char_indices()
        .nth(n - MAX_CHARS_EACH_SIDE)
        .map(|(i, _)| i)
        .unwrap_or(0);
    std::borrow::Cow::Owned(format!("{} {}", &text[..head_end], &text[tail_start..]))
}

/// Applies the head-and-tail rule to token ids that start with `[CLS]` and
/// end with `[SEP]`. Returns the ids unchanged when they fit in `window`.
pub fn head_and_tail(ids: &[u32], window: usize) -> Vec<u32> {
    assert!(window >= 3, "a window must hold [CLS], one token and [SEP]");
    if ids.len() <= window {
        return ids.to_vec();
    }
    let inner = &ids[1..ids.len() - 1];
    let budget = window - 2;
    let head = budget.div_ceil(2);
    let tail = budget - head;
    let mut out = Vec::with_capacity(window);
    out.push(ids[0]);
    out.extend_from_slice(&inner[..head]);
    out.extend_from_slice(&inner[inner.len() - tail..]);
    out.push(ids[ids.len() - 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_unchanged() {
        assert_eq!(head_and_tail(&[101, 5, 6, 102], 8), vec![101, 5, 6, 102]);
        assert_eq!(head_and_tail(&[101, 5, 6, 102], 4), vec![101, 5, 6, 102]);
    }

    #[test]
    fn long_input_keeps_head_and_tail_and_special_tokens() {
        let ids: Vec<u32> = std::iter::once(101)
            .chain(1..=10)
            .chain(std::iter::once(102))
            .collect();
        // window 7: budget 5 -> head 3, tail 2
        assert_eq!(head_and_tail(&ids, 7), vec![101, 1, 2, 3, 9, 10, 102]);
        assert_eq!(head_and_tail(&ids, 6), vec![101, 1, 2, 9, 10, 102]);
    }

    #[test]
    fn clip_chars_keeps_both_ends_on_char_boundaries() {
        let text = format!(
            "{}{}{}",
            "é".repeat(MAX_CHARS_EACH_SIDE),
            "x".repeat(50_000),
            "ü".repeat(MAX_CHARS_EACH_SIDE)
        );
        let clipped = clip_chars(&text);
        assert_eq!(clipped.chars().count(), 2 * MAX_CHARS_EACH_SIDE + 1);
        assert!(clipped.starts_with('é') && clipped.ends_with('ü') && !clipped.contains('x'));
        assert!(matches!(clip_chars("short"), std::borrow::Cow::Borrowed(_)));
    }
}
